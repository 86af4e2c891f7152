"""Train / valid / test splits and the cold-start protocol.

Leave-one-out: for every (user, domain) with at least three interactions, the latest
(by timestamp; ties and missing timestamps broken by a seeded shuffle) goes to test
and the one before to valid. Cold start: a fraction of the users active in both the
source and target domains lose *all* their target-domain interactions to valid/test
(half each, at least one in test), so at training time they have source history only.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def leave_one_out(edges: pd.DataFrame, seed: int) -> np.ndarray:
    """Split labels for ``edges`` (columns user_idx, domain, timestamp)."""
    rng = np.random.default_rng(seed)
    tiebreak = rng.random(len(edges))
    order = np.lexsort((tiebreak, edges["timestamp"].to_numpy(), edges["domain"].to_numpy(), edges["user_idx"].to_numpy()))
    ordered = edges.iloc[order]
    group = ordered.groupby(["user_idx", "domain"], sort=False)
    size = group["user_idx"].transform("size").to_numpy()
    position_from_end = size - 1 - group.cumcount().to_numpy()
    labels = np.full(len(edges), "train", dtype=object)
    split_sorted = np.where(
        size >= 3, np.select([position_from_end == 0, position_from_end == 1], ["test", "valid"], "train"), "train"
    )
    labels[order] = split_sorted
    return labels


def cold_start(
    edges: pd.DataFrame, labels: np.ndarray, source: str, target: str, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Move every target interaction of a sampled share of overlapping users to valid/test.

    Returns the new labels and the sorted user indices made cold.
    """
    labels = labels.copy()
    if fraction <= 0:
        return labels, np.array([], dtype=np.int64)
    users_by_domain = edges.groupby("domain")["user_idx"].unique()
    if source not in users_by_domain or target not in users_by_domain:
        return labels, np.array([], dtype=np.int64)
    overlap = np.intersect1d(users_by_domain[source], users_by_domain[target])
    rng = np.random.default_rng(seed + 1)
    cold = np.sort(rng.choice(overlap, size=int(round(fraction * len(overlap))), replace=False))
    rows = np.flatnonzero((edges["domain"].to_numpy() == target) & np.isin(edges["user_idx"].to_numpy(), cold))
    # Shuffle each cold user's target rows; first half (rounded up) test, rest valid.
    shuffled = rows[rng.permutation(len(rows))]
    users = edges["user_idx"].to_numpy()[shuffled]
    order = np.argsort(users, kind="stable")
    shuffled, users = shuffled[order], users[order]
    starts = np.r_[0, np.flatnonzero(np.diff(users)) + 1]
    sizes = np.diff(np.r_[starts, len(users)])
    rank = np.arange(len(users)) - np.repeat(starts, sizes)
    n_test = np.repeat((sizes + 1) // 2, sizes)
    labels[shuffled] = np.where(rank < n_test, "test", "valid")
    return labels, cold


def random_ratio(edges: pd.DataFrame, fractions: tuple[float, float, float], seed: int) -> np.ndarray:
    """Per (user, domain), a seeded random share of interactions to train/valid/test."""
    rng = np.random.default_rng(seed)
    order = np.lexsort((rng.random(len(edges)), edges["domain"].to_numpy(), edges["user_idx"].to_numpy()))
    ordered = edges.iloc[order]
    group = ordered.groupby(["user_idx", "domain"], sort=False)
    size = group["user_idx"].transform("size").to_numpy()
    position = group.cumcount().to_numpy() / size
    train_end, valid_end = fractions[0], fractions[0] + fractions[1]
    labels = np.empty(len(edges), dtype=object)
    labels[order] = np.select([position < train_end, position < valid_end], ["train", "valid"], "test")
    return labels


def temporal(edges: pd.DataFrame, fractions: tuple[float, float, float]) -> np.ndarray:
    """One global time cut: the earliest share trains, the next validates, the rest tests."""
    ts = edges["timestamp"].to_numpy()
    train_cut, valid_cut = np.quantile(ts, [fractions[0], fractions[0] + fractions[1]])
    return np.select([ts <= train_cut, ts <= valid_cut], ["train", "valid"], "test").astype(object)
