"""Recommendations from an exported model artifact (no Ray, no HTTP: plain Python).

Every answer carries the ``reason`` it was made for, true for the model answering:

- ``warm``: the user has history in the requested domain (trained, or folded in);
- ``transfer``: the domain is the model's target, the model has a transfer head, and
  the user has source-domain history but none in the target: their vector goes
  through the transfer head (the cold-start case graphtrain is for);
- ``popular``: anything else (an unknown user, no transfer head, another domain
  without history): the domain's most popular items.

Interactions posted at serving time are folded in (:mod:`graphtrain.inference.foldin`):
the user's vectors are recomputed from their new neighbourhood at once, and a user
nobody trained becomes known. A user's items (trained and folded in) are not
recommended back unless asked (``exclude_seen=False``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from graphtrain import storage
from graphtrain.inference.artifact import ModelArtifact
from graphtrain.inference.foldin import FoldIn, Neighbourhood, alpha_of, known_neighbourhoods
from graphtrain.serve.index import DEFAULT_ANN, AnnSettings, ItemIndex

WARM, TRANSFER, POPULAR = "warm", "transfer", "popular"
REASONS = (WARM, TRANSFER, POPULAR)
EXPLAIN_TOP = 10


class UnknownDomainError(ValueError):
    pass


class UnknownItemError(ValueError):
    pass


class UnknownUserError(ValueError):
    pass


class FoldInUnavailable(ValueError):
    """The artifact predates fold-in (re-export it)."""


@dataclass(frozen=True)
class Scored:
    item_id: str
    score: float


@dataclass(frozen=True)
class Recommendation:
    user_id: str
    domain: str
    reason: str
    model_version: str
    items: list[Scored]


@dataclass
class _Folded:
    """Interactions folded in for one user: ``{domain: {item_idx: weight}}`` (the
    latest weight of a repeated item wins, as ingest's ``--dedupe latest``)."""

    items: dict[str, dict[int, float]] = field(default_factory=dict)


class Recommender:
    def __init__(
        self, artifact: ModelArtifact, approximate_above: int = 200_000, ann: AnnSettings = DEFAULT_ANN,
        index_cache: str | None = None,
    ):
        self.artifact = artifact
        manifest = artifact.manifest
        self.version = manifest["version"]
        self.target_domain = manifest["target_domain"]
        self.source_domain = manifest.get("source_domain")
        model = manifest.get("model", {})
        self.has_transfer = bool(model.get("transfer", True))
        self.item_bias = bool(model.get("item_bias", False))
        self.user_index = dict(zip(artifact.users["user_id"].astype(str), artifact.users["user_idx"].astype(int)))
        self.item_ids, self.item_index = {}, {}
        for d, part in artifact.items.groupby("domain"):
            ids = part.sort_values("item_idx")["item_id"].astype(str).to_numpy()
            self.item_ids[d] = ids
            self.item_index[d] = {item: i for i, item in enumerate(ids)}
        self.popular = {d: np.argsort(-artifact.popularity(d), kind="stable") for d in artifact.domains}
        cache = None if index_cache is None else storage.join(index_cache, str(manifest.get("version", "unversioned")))
        self.indexes = {
            d: ItemIndex(artifact.item_vectors(d), approximate_above, ann, None if cache is None else storage.join(cache, d))
            for d in artifact.domains
        }
        self._similar_indexes: dict[str, ItemIndex] = {}
        self._approximate_above, self._ann = approximate_above, ann
        self.fold_in = FoldIn(artifact) if FoldIn.available(artifact) else None
        self.folded: dict[str, _Folded] = {}
        self._vectors: dict[tuple[str, str], np.ndarray] = {}  # folded users' vectors, per (user, domain)

    @classmethod
    def load(cls, uri: str, **kwargs) -> "Recommender":
        """``index_cache`` defaults to ``ann-cache/`` beside the model."""
        kwargs.setdefault("index_cache", storage.sibling(uri, "ann-cache"))
        return cls(ModelArtifact.load(uri), **kwargs)

    @property
    def domains(self) -> list[str]:
        return sorted(self.item_ids)

    def manifest_summary(self) -> dict:
        m = self.artifact.manifest
        return {
            "version": self.version, "domains": self.domains, "source_domain": self.source_domain,
            "target_domain": self.target_domain, "transfer": self.has_transfer, "fold_in": self.fold_in is not None,
            "trained_at": m.get("trained_at", self.version), "epoch": m.get("epoch"), "metrics": m.get("metrics", {}),
            "index": {d: self.indexes[d].method for d in self.domains},
        }

    # -- lookups --------------------------------------------------------------------
    def check_domain(self, domain: str | None) -> str:
        domain = domain or self.target_domain
        if domain not in self.item_ids:
            raise UnknownDomainError(f"domain {domain!r} is not served; known domains: {self.domains}")
        return domain

    def item_idx(self, domain: str, item_id: str) -> int:
        idx = self.item_index[domain].get(str(item_id))
        if idx is None:
            raise UnknownItemError(f"item {item_id!r} is not in this model's {domain!r} catalogue; check the id and domain")
        return idx

    def _trained(self, user_id: str, domain: str) -> np.ndarray:
        user_idx = self.user_index.get(user_id)
        return self.artifact.seen(domain, user_idx) if user_idx is not None else np.empty(0, dtype=np.int64)

    def history(self, user_id: str, domain: str) -> np.ndarray:
        """Item indices the user has in ``domain``: trained and folded in."""
        trained = self._trained(user_id, domain)
        folded = self.folded.get(user_id)
        if folded is None or not folded.items.get(domain):
            return trained
        return np.union1d(trained, np.fromiter(folded.items[domain], dtype=np.int64))

    def reason(self, user_id: str, domain: str) -> str:
        known = user_id in self.user_index or user_id in self.folded
        if not known:
            return POPULAR
        if len(self.history(user_id, domain)):
            return WARM
        if (
            self.has_transfer and domain == self.target_domain and self.source_domain is not None
            and len(self.history(user_id, self.source_domain))
        ):
            return TRANSFER
        return POPULAR

    # -- fold-in ----------------------------------------------------------------------
    def fold(self, rec: dict) -> None:
        """Fold one interaction record in (``interactions.record``)."""
        if self.fold_in is None:
            raise FoldInUnavailable(
                f"model {self.version} has no fold-in arrays (exported before fold-in existed); re-export it with "
                "`graphtrain export`"
            )
        domain = self.check_domain(rec["domain"])
        idx = self.item_idx(domain, rec["item_id"])
        user_id = str(rec["user_id"])
        self.folded.setdefault(user_id, _Folded()).items.setdefault(domain, {})[idx] = float(rec.get("weight", 1.0))
        for d in self.domains:
            self._vectors.pop((user_id, d), None)

    def fold_all(self, records: list[dict]) -> list[str]:
        """Fold every record that this model can hold; returns why the others could not
        be (an item or domain this model does not know: logged, not fatal, as a
        reload to an older model must still start)."""
        problems = []
        for rec in records:
            try:
                self.fold(rec)
            except (UnknownDomainError, UnknownItemError) as err:
                problems.append(str(err))
        return problems

    def neighbourhoods(self, user_id: str) -> dict[str, Neighbourhood]:
        """The user's whole neighbourhood, trained edges and folded ones (a folded
        repeat of a trained item replaces its weight)."""
        user_idx = self.user_index.get(user_id)
        if user_idx is not None:
            hoods = known_neighbourhoods(self.artifact, self.fold_in, user_idx)
        else:
            hoods = {d: Neighbourhood.of([], []) for d in self.domains}
        folded = self.folded.get(user_id)
        if folded is None:
            return hoods
        mode = self.fold_in.edge_weights
        for d, added in folded.items.items():
            items, alpha = hoods[d].items, hoods[d].alpha
            new = np.fromiter(added, dtype=np.int64)
            keep = ~np.isin(items, new)
            hoods[d] = Neighbourhood.of(
                np.concatenate([items[keep], new]), np.concatenate([alpha[keep], alpha_of(list(added.values()), mode)])
            )
        return hoods

    def user_vector(self, user_id: str, domain: str) -> np.ndarray:
        """The vector scored against ``domain``'s items (the user must be known)."""
        if user_id not in self.folded:
            return np.asarray(self.artifact.user_vector(domain, self.user_index[user_id]), dtype=np.float32)
        key = (user_id, domain)
        if key not in self._vectors:
            h0 = self.fold_in.user_input_of(self.user_index.get(user_id))
            self._vectors[key] = self.fold_in.scoring_vectors(h0, self.neighbourhoods(user_id), domain)
        return self._vectors[key]

    # -- answers ------------------------------------------------------------------------
    def recommend(self, user_id: str, k: int = 10, domain: str | None = None, exclude_seen: bool = True) -> Recommendation:
        return self.recommend_many([(user_id, k, domain, exclude_seen)])[0]

    def recommend_many(self, requests: list[tuple[str, int, str | None, bool]]) -> list[Recommendation]:
        """Answers for (user_id, k, domain, exclude_seen) requests, in order; scored
        users of one domain are searched together (one matrix product)."""
        answers: list[Recommendation | None] = [None] * len(requests)
        scored: dict[str, list[int]] = {}
        for n, (user_id, k, domain, exclude_seen) in enumerate(requests):
            user_id, domain = str(user_id), self.check_domain(domain)
            requests[n] = (user_id, k, domain, exclude_seen)
            reason = self.reason(user_id, domain)
            if reason == POPULAR:
                answers[n] = self._popular(user_id, k, domain, exclude_seen)
            else:
                scored.setdefault(domain, []).append(n)
        for domain, batch in scored.items():
            queries = np.stack([self.user_vector(requests[n][0], domain) for n in batch])
            exclude = [self.history(requests[n][0], domain) if requests[n][3] else np.empty(0, np.int64) for n in batch]
            k_max = max(requests[n][1] for n in batch)
            found_idx, found_scores = self.indexes[domain].search(queries, k_max, exclude)
            for n, idx, scores in zip(batch, found_idx, found_scores):
                user_id, k, _, _ = requests[n]
                answers[n] = self._answer(user_id, domain, self.reason(user_id, domain), idx[:k], scores[:k])
        return answers

    def _popular(self, user_id: str, k: int, domain: str, exclude_seen: bool) -> Recommendation:
        order = self.popular[domain]
        if exclude_seen and (user_id in self.user_index or user_id in self.folded):
            seen = self.history(user_id, domain)
            order = order[: k + len(seen)]
            order = order[~np.isin(order, seen)]
        order = order[:k]
        return self._answer(user_id, domain, POPULAR, order, self.artifact.popularity(domain)[order])

    def _answer(self, user_id, domain, reason, idx, scores) -> Recommendation:
        ids = self.item_ids[domain]
        return Recommendation(
            user_id=user_id, domain=domain, reason=reason, model_version=self.version,
            items=[Scored(str(ids[i]), float(s)) for i, s in zip(idx, scores)],
        )

    def explain(self, user_id: str, item_id: str, domain: str | None = None, top: int = EXPLAIN_TOP) -> dict:
        """The user's interactions that contributed most to ``item_id``'s score, with
        their shares of the total absolute contribution (see
        :meth:`graphtrain.inference.foldin.FoldIn.contributions` for what is exact)."""
        domain = self.check_domain(domain)
        idx = self.item_idx(domain, item_id)
        user_id = str(user_id)
        if user_id not in self.user_index and user_id not in self.folded:
            raise UnknownUserError(f"user {user_id!r} is neither trained nor folded in; POST /interactions to add them")
        if self.fold_in is None:
            raise FoldInUnavailable(f"model {self.version} has no fold-in arrays; re-export it to explain scores")
        item_vector = np.asarray(self.indexes[domain].vectors[idx], dtype=np.float32)
        h0 = self.fold_in.user_input_of(self.user_index.get(user_id))
        score, parts = self.fold_in.contributions(h0, self.neighbourhoods(user_id), domain, item_vector)
        total = sum(abs(c) for _, _, c in parts) or 1.0
        parts.sort(key=lambda p: -p[2])
        return {
            "user_id": user_id, "item_id": str(item_id), "domain": domain, "score": score,
            "reason": self.reason(user_id, domain), "model_version": self.version,
            "contributions": [
                {"item_id": str(self.item_ids[d][i]), "domain": d, "weight": c / total, "contribution": c}
                for d, i, c in parts[:top]
            ],
        }

    def similar(self, item_id: str, domain: str | None = None, k: int = 10) -> dict:
        """Items of the same domain closest to ``item_id`` by cosine of their vectors
        (the popularity-bias column left out)."""
        domain = self.check_domain(domain)
        idx = self.item_idx(domain, item_id)
        index = self._similar_indexes.get(domain)
        if index is None:
            vectors = np.asarray(self.artifact.item_vectors(domain), dtype=np.float32)
            if self.item_bias:
                vectors = vectors[:, :-1]
            vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
            index = self._similar_indexes[domain] = ItemIndex(vectors, self._approximate_above, self._ann)
        found, scores = index.search(index.vectors[idx : idx + 1], k, [np.array([idx])])
        ids = self.item_ids[domain]
        return {
            "item_id": str(item_id), "domain": domain, "model_version": self.version,
            "items": [{"item_id": str(ids[i]), "score": float(s)} for i, s in zip(found[0], scores[0])],
        }
