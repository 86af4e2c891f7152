"""Scorers: ``scorer(user_idx, items) -> [users, items]`` scores for the ranking
protocols, from exported vectors or from popularity."""

from __future__ import annotations

import numpy as np
import torch

from graphtrain.ranking.metrics import Scorer


def embedding_scorer(users, items: np.ndarray) -> Scorer:
    """Dot products of user and item vectors. ``users`` is any array with
    ``take(idx, axis=0)`` (a NumPy array, or the artifact's sharded, memory-mapped
    one: only the scored users' rows are read)."""
    item_t = torch.from_numpy(np.array(items, dtype=np.float32))

    def score(idx: np.ndarray, columns=slice(None)) -> torch.Tensor:
        rows = torch.from_numpy(np.ascontiguousarray(users.take(idx, axis=0), dtype=np.float32))
        return rows @ item_t[columns].T

    return score


def popularity_scorer(popularity: np.ndarray) -> Scorer:
    counts = torch.from_numpy(np.array(popularity))
    return lambda idx, columns=slice(None): counts[columns].expand(len(idx), -1)
