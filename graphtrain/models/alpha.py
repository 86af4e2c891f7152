"""alpha_ij from the edges' interaction weights (DESIGN.md "Transfer learning").

With ``ModelConfig.edge_weights`` other than "none", a node's message per relation is
the weighted mean sum_j w_ij h_j / sum_j w_ij instead of the plain mean: a 5-star
rating or a long watch counts for more than a misclick. Sampled mini-batches use the
same ratio over the sampled neighbours, which equals the full-graph value when the
fanout covers every neighbour and approaches it as the fanout grows.
"""

from __future__ import annotations

import numpy as np

from graphtrain.config import EDGE_WEIGHTS
from graphtrain.data.dataset import Dataset


def alpha_of(weights: np.ndarray, mode: str) -> np.ndarray:
    """alpha_ij of interactions with these raw weights."""
    weights = np.asarray(weights, dtype=np.float32)
    if mode == "none":
        return np.ones_like(weights)
    if mode == "log1p":
        return np.log1p(weights).astype(np.float32)
    if mode == "weight":
        return weights
    raise ValueError(f"edge_weights={mode!r}: use one of {EDGE_WEIGHTS}")


def edge_alpha(dataset: Dataset, mode: str) -> dict[str, np.ndarray] | None:
    """Per domain, the alpha weight of every train edge in train-edge order (which is
    the graph's edge id, :meth:`Dataset.train_edge_index`); None for "none"."""
    if mode == "none":
        return None
    return {d: alpha_of(dataset.train_edge_weights(d), mode) for d in dataset.domains}
