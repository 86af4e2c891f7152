"""Recommendations from an exported model artifact (no Ray, no HTTP: plain Python).

Three strategies, chosen per request:
- ``personalised``: the user has training history in the requested domain;
- ``transfer``: the user is known but new to the domain (cold start): their
  representation for that domain comes through the transfer head from their history
  in other domains;
- ``popularity``: the user is unknown; most popular items of the domain.
A user's training items are never recommended back to them.
"""

from __future__ import annotations

import numpy as np

from graphtrain.inference.artifact import ModelArtifact


class UnknownDomainError(ValueError):
    pass


class Recommender:
    def __init__(self, artifact: ModelArtifact):
        self.artifact = artifact
        self.version = artifact.manifest["version"]
        self.target_domain = artifact.manifest["target_domain"]
        self.user_index = dict(zip(artifact.users["user_id"].astype(str), artifact.users["user_idx"].astype(int)))
        self.item_ids = {
            d: part.sort_values("item_idx")["item_id"].astype(str).to_numpy()
            for d, part in artifact.items.groupby("domain")
        }
        self.popular = {d: np.argsort(-artifact.popularity(d), kind="stable") for d in artifact.domains}

    @classmethod
    def load(cls, uri: str) -> "Recommender":
        return cls(ModelArtifact.load(uri))

    def recommend(self, user_id: str, k: int = 10, domain: str | None = None) -> dict:
        domain = domain or self.target_domain
        if domain not in self.item_ids:
            raise UnknownDomainError(f"domain {domain!r} is not served; known domains: {sorted(self.item_ids)}")
        user_idx = self.user_index.get(str(user_id))
        if user_idx is None:
            order = self.popular[domain][:k]
            scores = self.artifact.popularity(domain)[order]
            strategy = "popularity"
        else:
            seen = self.artifact.seen(domain, user_idx)
            strategy = "personalised" if len(seen) else "transfer"
            scores_all = self.artifact.item_vectors(domain) @ self.artifact.user_vectors(domain)[user_idx]
            scores_all[seen] = -np.inf
            k_eff = min(k, len(scores_all) - len(seen))
            top = np.argpartition(-scores_all, k_eff - 1)[:k_eff] if k_eff > 0 else np.array([], dtype=np.int64)
            order = top[np.argsort(-scores_all[top], kind="stable")]
            scores = scores_all[order]
        return {
            "user_id": str(user_id),
            "domain": domain,
            "strategy": strategy,
            "model_version": self.version,
            "items": [{"item_id": self.item_ids[domain][i], "score": float(s)} for i, s in zip(order, scores)],
        }
