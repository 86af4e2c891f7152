"""Held-out cases of the sampled protocol, shared by validation and evaluation.

A case is one held-out (user, item) row of the target domain with its own
``num_negatives`` items drawn once (seeded) from the items that user never
interacted with in any split, as the DisenCDR and CDRIB evaluations do.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from graphtrain.data.dataset import Dataset
from graphtrain.eval.metrics import Scorer, sample_negatives, sampled_metrics
from graphtrain.models.artifact import seen_csr

SPLITS = ("train", "valid", "test")
NUM_NEGATIVES = 999  # per held-out row, as DisenCDR and CDRIB
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SampledCases:
    users: np.ndarray
    items: np.ndarray
    negatives: np.ndarray  # [cases, num_negatives]
    # Users of the held-out rows left out because the user has interacted with every
    # item of the domain: no negative can be drawn for them.
    skipped_users: np.ndarray = field(default_factory=lambda: np.array([], dtype=np.int64))

    @classmethod
    def of(cls, dataset: Dataset, domain: str, split: str, num_negatives: int = NUM_NEGATIVES, seed: int = 0) -> "SampledCases":
        users, items = dataset.split_edges(split, domain)
        every = [dataset.split_edges(s, domain) for s in SPLITS]
        seen = seen_csr(np.concatenate([u for u, _ in every]), np.concatenate([i for _, i in every]), dataset.num_users)
        negatives, drawn = sample_negatives(users, seen, dataset.num_items(domain), num_negatives, seed)
        if not drawn.all():
            log.warning(
                "%s %s: %d held-out rows skipped: their users have interacted with every one of the %d items",
                domain, split, int((~drawn).sum()), dataset.num_items(domain),
            )
        return cls(users[drawn], items[drawn], negatives[drawn], skipped_users=users[~drawn])

    def __len__(self) -> int:
        return len(self.users)

    def subset(self, mask: np.ndarray) -> "SampledCases":
        return SampledCases(self.users[mask], self.items[mask], self.negatives[mask], self.skipped_users)

    def metrics(self, scorer: Scorer, ks=(10, 20), seed: int = 0) -> dict[str, float]:
        return sampled_metrics(scorer, self.users, self.items, self.negatives, ks, seed)
