"""Request and response models of the HTTP API (they are what ``/docs`` shows)."""

from __future__ import annotations

import math
from typing import Literal, Optional

from pydantic import BaseModel, Field, field_validator

Reason = Literal["warm", "transfer", "popular"]


class ScoredItem(BaseModel):
    item_id: str
    score: float = Field(description="u·i (+ item bias) for scored answers; the training count for popular ones")


class RecommendResponse(BaseModel):
    user_id: str
    domain: str
    reason: Reason = Field(description="warm: history in the domain; transfer: source history only, scored through "
                                       "the transfer head; popular: unknown user, or no transfer for this domain")
    model_version: str
    items: list[ScoredItem]


class BatchRequest(BaseModel):
    user_ids: list[str] = Field(min_length=1, max_length=1000, description="answered in this order")
    k: int = Field(10, ge=1)
    domain: Optional[str] = Field(None, description="default: the model's target domain")
    exclude_seen: bool = True


class BatchResponse(BaseModel):
    results: list[RecommendResponse]


class InteractionRequest(BaseModel):
    user_id: str = Field(min_length=1)
    item_id: str = Field(min_length=1)
    domain: str = Field(min_length=1)
    weight: float = Field(1.0, gt=0, description="rating, dwell time or count (the edge weight)")
    timestamp: Optional[int] = Field(None, description="seconds since the epoch; default: now")

    @field_validator("weight")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("weight must be a finite number")
        return value


class InteractionResponse(BaseModel):
    user_id: str
    item_id: str
    domain: str
    logged: int = Field(description="folded-in interactions in the app's log after this one")
    reason: Reason = Field(description="the reason a target-domain /recommend for this user now gets")


class Contribution(BaseModel):
    item_id: str
    domain: str
    weight: float = Field(description="share of the sum of absolute contributions (signed)")
    contribution: float = Field(description="score lost when this interaction's message is switched off")


class ExplainResponse(BaseModel):
    user_id: str
    item_id: str
    domain: str
    score: float
    reason: Reason
    model_version: str
    contributions: list[Contribution]


class SimilarResponse(BaseModel):
    item_id: str
    domain: str
    model_version: str
    items: list[ScoredItem]


class HealthResponse(BaseModel):
    status: Literal["ok"]
    model_version: str


class VersionResponse(BaseModel):
    version: str
    trained_at: str
    domains: list[str]
    source_domain: Optional[str]
    target_domain: str
    transfer: bool
    fold_in: bool
    epoch: Optional[int]
    metrics: dict
    index: dict[str, str]
    registry_version: Optional[int] = Field(None, description="the registry version served (serve --registry), else null")
    model_uri: Optional[str] = Field(None, description="where the served model artifact was loaded from")


class DomainInfo(BaseModel):
    name: str
    items: int
    role: Literal["source", "target", "other"]


class DomainsResponse(BaseModel):
    domains: list[DomainInfo]
