"""Held-out cases of the sampled protocol, shared by validation and evaluation.

A case is one held-out (user, item) row of the target domain with its own
``num_negatives`` items drawn (seeded) from the items that user never interacted
with in any split, as the DisenCDR and CDRIB evaluations do.

Negatives are drawn per chunk of ``CASE_CHUNK`` cases when the chunk is scored, each
a hash of (seed, user, held-out item), so memory holds one chunk's negatives, never
cases x num_negatives, and a case draws the same whatever batch or task scores it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace

import numpy as np

from graphtrain.data.dataset import Dataset
from graphtrain.ranking.metrics import Scorer, sample_negatives, sampled_metrics, seen_csr

SPLITS = ("train", "valid", "test")
NUM_NEGATIVES = 999  # per held-out row, as DisenCDR and CDRIB
CASE_CHUNK = 4096
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SampledCases:
    users: np.ndarray  # sorted: a chunk's cases share few users
    items: np.ndarray
    seen: tuple[np.ndarray, np.ndarray]  # CSR over all users of every split's items
    num_items: int
    num_negatives: int
    seed: int
    # Users of the held-out rows left out because the user has interacted with every
    # item of the domain: no negative can be drawn for them.
    skipped_users: np.ndarray = field(default_factory=lambda: np.array([], dtype=np.int64))

    @classmethod
    def of(
        cls, dataset: Dataset, domain: str, split: str, num_negatives: int = NUM_NEGATIVES, seed: int = 0,
        max_users: int | None = None,
    ) -> "SampledCases":
        """The held-out rows of ``split`` in ``domain``; with ``max_users``, those of a
        seeded sample of that many users (bounded validation on large graphs)."""
        users, items = dataset.split_edges(split, domain)
        if max_users is not None and len(users):
            distinct = np.unique(users)
            if len(distinct) > max_users:
                chosen = np.random.default_rng([seed, 7]).choice(distinct, size=max_users, replace=False)
                keep = np.isin(users, chosen)
                users, items = users[keep], items[keep]
        every = [dataset.split_edges(s, domain) for s in SPLITS]
        seen = seen_csr(np.concatenate([u for u, _ in every]), np.concatenate([i for _, i in every]), dataset.num_users)
        n_items = dataset.num_items(domain)
        distinct_seen = np.diff(seen[0]) - _repeats(*seen)
        drawable = distinct_seen[users] < n_items
        if not drawable.all():
            log.warning(
                "%s %s: %d held-out rows skipped: their users have interacted with every one of the %d items",
                domain, split, int((~drawable).sum()), n_items,
            )
        order = np.argsort(users[drawable], kind="stable")
        return cls(
            users[drawable][order], items[drawable][order], seen, n_items, num_negatives, seed,
            skipped_users=users[~drawable],
        )

    def __len__(self) -> int:
        return len(self.users)

    @property
    def case_keys(self) -> np.ndarray:
        """One key per case, (user, item): its negatives and tie-breaks hash it."""
        return self.users.astype(np.int64) * self.num_items + self.items

    def subset(self, mask: np.ndarray) -> "SampledCases":
        return replace(self, users=self.users[mask], items=self.items[mask])

    def negatives(self, chunk: int) -> np.ndarray:
        """[cases of chunk ``chunk``, num_negatives] items none of whose users saw."""
        rows = slice(chunk * CASE_CHUNK, (chunk + 1) * CASE_CHUNK)
        drawn, _ = sample_negatives(self.users[rows], self.seen, self.num_items, self.num_negatives, self.seed,
                                    case_keys=self.case_keys[rows])
        return drawn  # every user here has an unseen item: `of` left the others out

    def metrics(self, scorer: Scorer, ks=(10, 20), seed: int = 0) -> dict[str, float]:
        """Sampled-protocol metrics, averaged over every case."""
        totals: dict[str, float] = {}
        for chunk in range(-(-len(self) // CASE_CHUNK)):
            rows = slice(chunk * CASE_CHUNK, (chunk + 1) * CASE_CHUNK)
            users = self.users[rows]
            part = sampled_metrics(scorer, users, self.items[rows], self.negatives(chunk), ks, seed=seed,
                                   case_keys=self.case_keys[rows])
            for name, value in part.items():
                totals[name] = totals.get(name, 0.0) + value * len(users)
        n = max(len(self), 1)
        return {name: value / n for name, value in totals.items()} if totals else _empty(ks)


def _empty(ks) -> dict[str, float]:
    return {**{f"{m}@{k}": 0.0 for k in ks for m in ("hr", "ndcg")}, "mrr": 0.0}


def _repeats(indptr: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """Per user, how many of its CSR entries repeat an item (sorted per user)."""
    if len(indices) < 2:
        return np.zeros(len(indptr) - 1, dtype=np.int64)
    owner = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
    repeat = np.r_[False, (indices[1:] == indices[:-1]) & (owner[1:] == owner[:-1])]
    return np.bincount(owner[repeat], minlength=len(indptr) - 1)
