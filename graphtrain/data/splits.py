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

LABELS = ["train", "valid", "test"]
TRAIN, VALID, TEST = 0, 1, 2


def _labels(codes: np.ndarray) -> pd.Categorical:
    return pd.Categorical.from_codes(codes.astype(np.int8), categories=LABELS)


def _ranked_groups(edges: pd.DataFrame, *inner_keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sort rows by (user, domain, *inner_keys); return (order, group size, rank in
    group) with the last two aligned to ``order``. Integer keys only: sorting the
    domain as text dominated ingest at 10M rows."""
    domain, domains = pd.factorize(edges["domain"])
    group = edges["user_idx"].to_numpy() * len(domains) + domain
    order = np.lexsort((*reversed(inner_keys), group))
    g = group[order]
    starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
    sizes = np.diff(np.r_[starts, len(order)])
    rank = np.arange(len(order)) - np.repeat(starts, sizes)
    return order, np.repeat(sizes, sizes), rank


def leave_one_out(edges: pd.DataFrame, seed: int) -> pd.Categorical:
    """Split labels for ``edges`` (columns user_idx, domain, timestamp)."""
    rng = np.random.default_rng(seed)
    tiebreak = rng.random(len(edges))
    order, size, rank = _ranked_groups(edges, edges["timestamp"].to_numpy(), tiebreak)
    from_end = size - 1 - rank
    codes = np.empty(len(edges), dtype=np.int8)
    codes[order] = np.where(size >= 3, np.select([from_end == 0, from_end == 1], [TEST, VALID], TRAIN), TRAIN)
    return _labels(codes)


def cold_start(
    edges: pd.DataFrame, labels: pd.Categorical, source: str, target: str, fraction: float, seed: int
) -> tuple[pd.Categorical, np.ndarray]:
    """Move every target interaction of a sampled share of overlapping users to valid/test.

    Returns the new labels and the sorted user indices made cold.
    """
    if fraction <= 0:
        return labels, np.array([], dtype=np.int64)
    users_by_domain = edges.groupby("domain", observed=True)["user_idx"].unique()
    if source not in users_by_domain or target not in users_by_domain:
        return labels, np.array([], dtype=np.int64)
    overlap = np.intersect1d(users_by_domain[source], users_by_domain[target])
    rng = np.random.default_rng(seed + 1)
    cold = np.sort(rng.choice(overlap, size=int(round(fraction * len(overlap))), replace=False))
    rows = np.flatnonzero((edges["domain"] == target).to_numpy() & np.isin(edges["user_idx"].to_numpy(), cold))
    rows, to_test = halve_per_user(rows, edges["user_idx"].to_numpy(), rng)
    codes = np.asarray(labels.codes).copy()
    codes[rows] = np.where(to_test, TEST, VALID)
    return _labels(codes), cold


def halve_per_user(rows: np.ndarray, owner: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Shuffle each user's ``rows`` and send the first half (rounded up) to test.

    ``owner[row]`` is the row's user. Returns (rows grouped by user, True where the
    row goes to test, False where it goes to valid).
    """
    shuffled = rows[rng.permutation(len(rows))]
    users = owner[shuffled]
    order = np.argsort(users, kind="stable")
    shuffled, users = shuffled[order], users[order]
    starts = np.r_[0, np.flatnonzero(np.diff(users)) + 1]
    sizes = np.diff(np.r_[starts, len(users)])
    rank = np.arange(len(users)) - np.repeat(starts, sizes)
    return shuffled, rank < np.repeat((sizes + 1) // 2, sizes)


def random_ratio(edges: pd.DataFrame, fractions: tuple[float, float, float], seed: int) -> pd.Categorical:
    """Per (user, domain), a seeded random share of interactions to train/valid/test."""
    rng = np.random.default_rng(seed)
    order, size, rank = _ranked_groups(edges, rng.random(len(edges)))
    position = rank / size
    train_end, valid_end = fractions[0], fractions[0] + fractions[1]
    codes = np.empty(len(edges), dtype=np.int8)
    codes[order] = np.select([position < train_end, position < valid_end], [TRAIN, VALID], TEST)
    return _labels(codes)


def temporal(edges: pd.DataFrame, fractions: tuple[float, float, float]) -> pd.Categorical:
    """One global time cut: the earliest share trains, the next validates, the rest tests."""
    ts = edges["timestamp"].to_numpy()
    train_cut, valid_cut = np.quantile(ts, [fractions[0], fractions[0] + fractions[1]])
    return _labels(np.select([ts <= train_cut, ts <= valid_cut], [TRAIN, VALID], TEST))
