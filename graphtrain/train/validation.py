"""Validation during training: the target domain's ``valid`` rows on the sampled
protocol, scored from full-graph representations after every epoch, and the early
stopping and learning-rate rules that read it."""

from __future__ import annotations

import math
from typing import Optional

from graphtrain.config import TrainConfig
from graphtrain.data.dataset import Dataset
from graphtrain.models.gnn import MigrationGNN
from graphtrain.models.inference import embed
from graphtrain.ranking.cases import SampledCases
from graphtrain.ranking.scorers import embedding_scorer

METRIC = "valid_ndcg@10"


class Validation:
    """Valid NDCG@10 / HR@10 of a model; negatives are drawn once, so epochs compare."""

    def __init__(self, dataset: Dataset, domain: str, seed: int, max_users: Optional[int] = None):
        self.dataset = dataset
        self.domain = domain
        self.cases = SampledCases.of(dataset, domain, "valid", seed=seed, max_users=max_users)

    @classmethod
    def of(cls, dataset: Dataset, domain: str, seed: int, max_users: Optional[int] = None) -> Optional["Validation"]:
        """None when the dataset has no valid rows in ``domain``; the valid rows of
        at most ``max_users`` users (a seeded sample) otherwise."""
        users, _ = dataset.split_edges("valid", domain)
        return cls(dataset, domain, seed, max_users) if len(users) else None

    def __call__(self, model: MigrationGNN) -> dict[str, float]:
        reps = embed(model, self.dataset)
        scorer = embedding_scorer(reps["users"][self.domain].cpu().numpy(), reps["items"][self.domain].cpu().numpy())
        result = self.cases.metrics(scorer, ks=(10,))
        return {METRIC: result["ndcg@10"], "valid_hr@10": result["hr@10"]}


def best_epoch(history: list[dict]) -> Optional[int]:
    """The epoch with the highest valid NDCG@10 (the earliest on ties); None if unvalidated."""
    scored = [(m[METRIC], -m["epoch"]) for m in history if METRIC in m]
    return -max(scored)[1] if scored else None


def should_stop(history: list[dict], patience: int) -> bool:
    best = best_epoch(history)
    return patience > 0 and best is not None and history[-1]["epoch"] - best >= patience


def learning_rate_at(config: TrainConfig, epoch: int) -> float:
    if config.lr_schedule == "constant":
        return config.learning_rate
    return config.learning_rate * 0.5 * (1.0 + math.cos(math.pi * epoch / config.epochs))
