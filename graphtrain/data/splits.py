"""Train / valid / test splits and the cold-start protocol, on one user bucket.

Every function sees all of a user's rows (ingest buckets rows by user) and draws its
randomness from ``tiebreak``, a seeded hash of (user, domain, item) per row, so the
split does not depend on how rows were bucketed or ordered.

Leave-one-out: for every (user, domain) with at least three interactions, the latest
(by timestamp; ties and missing timestamps broken by ``tiebreak``) goes to test and
the one before to valid. Cold start: the chosen users among those active in both the
source and target domains lose *all* their target-domain interactions to valid/test
(half each, at least one in test), so at training time they have source history only.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

LABELS = np.array(["train", "valid", "test"], dtype=object)
TRAIN, VALID, TEST = 0, 1, 2


def _ranked_groups(edges: pd.DataFrame, *inner_keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sort rows by (user, domain, *inner_keys); return (order, group size, rank in
    group) with the last two aligned to ``order``."""
    domain, domains = pd.factorize(edges["domain"])
    group = edges["user_idx"].to_numpy() * max(len(domains), 1) + domain
    order = np.lexsort((*reversed(inner_keys), group))
    g = group[order]
    starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]]) if len(g) else np.array([], dtype=np.int64)
    sizes = np.diff(np.r_[starts, len(order)])
    rank = np.arange(len(order)) - np.repeat(starts, sizes)
    return order, np.repeat(sizes, sizes), rank


def leave_one_out(edges: pd.DataFrame, tiebreak: np.ndarray) -> np.ndarray:
    """Split labels for ``edges`` (columns user_idx, domain, timestamp)."""
    order, size, rank = _ranked_groups(edges, edges["timestamp"].to_numpy(), tiebreak)
    from_end = size - 1 - rank
    codes = np.empty(len(edges), dtype=np.int8)
    codes[order] = np.where(size >= 3, np.select([from_end == 0, from_end == 1], [TEST, VALID], TRAIN), TRAIN)
    return LABELS[codes]


def random_ratio(edges: pd.DataFrame, fractions: tuple[float, float, float], tiebreak: np.ndarray) -> np.ndarray:
    """Per (user, domain), a seeded random share of interactions to train/valid/test."""
    order, size, rank = _ranked_groups(edges, tiebreak)
    position = rank / np.maximum(size, 1)
    train_end, valid_end = fractions[0], fractions[0] + fractions[1]
    codes = np.empty(len(edges), dtype=np.int8)
    codes[order] = np.select([position < train_end, position < valid_end], [TRAIN, VALID], TEST)
    return LABELS[codes]


def temporal_cut(edges: pd.DataFrame, cuts: tuple[int, int]) -> np.ndarray:
    """One global time cut (computed over every bucket): rows at or before the first
    cut train, up to the second validate, the rest test."""
    ts = edges["timestamp"].to_numpy()
    return LABELS[np.select([ts <= cuts[0], ts <= cuts[1]], [TRAIN, VALID], TEST).astype(np.int8)]


def cold_start(
    edges: pd.DataFrame, labels: np.ndarray, source: str, target: str, chosen: np.ndarray, tiebreak: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Move every target interaction of the chosen overlapping users to valid/test.

    ``chosen[row]`` says whether the row's user was drawn. Returns the new labels and
    the sorted user indices made cold.
    """
    domain = edges["domain"].to_numpy()
    user = edges["user_idx"].to_numpy()
    overlap = np.intersect1d(user[domain == source], user[domain == target])
    cold = np.intersect1d(overlap, user[chosen])
    rows = np.flatnonzero((domain == target) & np.isin(user, cold))
    rows, to_test = halve_per_user(rows, user, tiebreak)
    labels = np.asarray(labels, dtype=object).copy()
    labels[rows] = np.where(to_test, "test", "valid")
    return labels, cold


def halve_per_user(rows: np.ndarray, owner: np.ndarray, tiebreak: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Order each user's ``rows`` by ``tiebreak`` and send the first half (rounded
    up) to test.

    ``owner[row]`` is the row's user. Returns (rows grouped by user, True where the
    row goes to test, False where it goes to valid).
    """
    order = np.lexsort((tiebreak[rows], owner[rows]))
    shuffled = rows[order]
    users = owner[shuffled]
    starts = np.r_[0, np.flatnonzero(np.diff(users)) + 1] if len(users) else np.array([], dtype=np.int64)
    sizes = np.diff(np.r_[starts, len(users)])
    rank = np.arange(len(users)) - np.repeat(starts, sizes)
    return shuffled, rank < np.repeat((sizes + 1) // 2, sizes)
