"""The training edges a worker iterates, and how they are shared out.

A worker reads only what it trains on: with a partition artifact, the train edges
of its own partition's users (``graph.train_shards``), plus a little of another
partition's where the sizes must even out. :func:`plan_shares` decides that from the
per-partition edge counts alone, so every rank computes the same plan without
exchanging a single edge, and no rank holds more than a partition's edges at once.

The shares are fixed for a run (each partition's edges in a permutation seeded by
(seed, partition)); every epoch shuffles a rank's share again. Shares have equal
length, so DDP workers take the same number of steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from graphtrain.data.dataset import Dataset
from graphtrain.graph.sampling import EdgeBatch

# One rank's share: (partition, lo, hi) ranges of positions in partitions' permutations.
Share = list[tuple[int, int, int]]


@dataclass(frozen=True)
class TrainEdges:
    """Training edges, with the domain as an index into ``domains``."""

    domains: list[str]
    domain: np.ndarray
    users: np.ndarray
    items: np.ndarray
    edge_ids: np.ndarray  # position among the domain's train edges (the dataset's edge id)

    @classmethod
    def from_dataset(cls, dataset: Dataset) -> "TrainEdges":
        parts = []
        for d_idx, domain in enumerate(dataset.domains):
            users, items = dataset.split_edges("train", domain)
            parts.append((np.full(len(users), d_idx), users, items, np.arange(len(users))))
        return cls(dataset.domains, *(np.concatenate(column) for column in zip(*parts)))

    @classmethod
    def from_columns(cls, domains: list[str], columns: dict[str, np.ndarray]) -> "TrainEdges":
        return cls(list(domains), columns["domain"].astype(np.int64), columns["user_idx"].astype(np.int64),
                   columns["item_idx"].astype(np.int64), columns["edge_id"].astype(np.int64))

    def __len__(self) -> int:
        return len(self.users)

    def take(self, rows: np.ndarray) -> "TrainEdges":
        return TrainEdges(self.domains, self.domain[rows], self.users[rows], self.items[rows], self.edge_ids[rows])

    @staticmethod
    def concat(domains: list[str], pieces: list["TrainEdges"]) -> "TrainEdges":
        if not pieces:
            empty = np.zeros(0, np.int64)
            return TrainEdges(list(domains), empty, empty, empty, empty)
        return TrainEdges(list(domains), *(np.concatenate([getattr(p, f) for p in pieces])
                                           for f in ("domain", "users", "items", "edge_ids")))

    def batch(self) -> EdgeBatch:
        return EdgeBatch(self.domain, self.users, self.items, self.edge_ids)

    def epoch(self, size: int, epoch: int, seed: int, rank: int) -> EdgeBatch:
        """This share shuffled for ``epoch``, padded to ``size`` by repeating its own edges."""
        if not len(self) and size:
            raise ValueError("a train worker was given no edges: use fewer workers than there are train edges")
        order = np.random.default_rng([seed, epoch, rank]).permutation(len(self))
        if len(order) < size:
            order = np.concatenate([order, order[: size - len(order)]])
        return self.take(order).batch()


def plan_shares(counts: list[int], rank_partitions: list[Optional[int]]) -> tuple[list[Share], int]:
    """Each rank's share of the edges of partitions with ``counts`` edges, and the
    share size (every rank gets the same, ``ceil(total / ranks)``).

    Ranks sampling partition q in-process (``rank_partitions[r] == q``) split q's
    edges into contiguous blocks of its permutation, up to the share size; the rest
    (a full rank's surplus, and partitions without a rank) fills the short ranks in
    rank order. Integer ranges only: O(partitions + ranks)."""
    world = len(rank_partitions)
    size = -(-sum(counts) // world)
    shares: list[Share] = [[] for _ in range(world)]
    filled = [0] * world
    pool: list[list[int]] = []
    for q, n in enumerate(counts):
        ranks = [r for r, p in enumerate(rank_partitions) if p == q]
        if not ranks:
            pool.append([q, 0, n])
            continue
        bounds = [n * k // len(ranks) for k in range(len(ranks) + 1)]
        for k, r in enumerate(ranks):
            lo, hi = bounds[k], bounds[k + 1]
            keep = min(hi - lo, size)
            if keep:
                shares[r].append((q, lo, lo + keep))
            filled[r] += keep
            if lo + keep < hi:
                pool.append([q, lo + keep, hi])
    pool = [p for p in pool if p[1] < p[2]]
    for r in range(world):
        while filled[r] < size and pool:
            q, lo, hi = pool[0]
            take = min(size - filled[r], hi - lo)
            shares[r].append((q, lo, lo + take))
            filled[r] += take
            if lo + take == hi:
                pool.pop(0)
            else:
                pool[0][1] = lo + take
    return shares, size


def load_share(share: Share, load: Callable[[int], TrainEdges], domains: list[str], seed: int) -> TrainEdges:
    """The edges of ``share``; ``load(q)`` reads partition q's edges (one at a time)."""
    pieces = []
    for q in sorted({q for q, _, _ in share}):
        edges = load(q)
        order = np.random.default_rng([seed, q]).permutation(len(edges))
        rows = np.concatenate([order[lo:hi] for p, lo, hi in share if p == q])
        pieces.append(edges.take(rows))
        del edges, order
    return TrainEdges.concat(domains, pieces)
