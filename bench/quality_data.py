"""The two evaluation protocols of bench/quality.py, written as contract logs.

DisenCDR's files (../shared/data/disencdr/<a>_<b>/{train,test}.txt) give a
leave-one-out test item per user and domain. Both protocols add a validation split
for early stopping, drawn from the *target* domain's training rows only:
``VALID_USERS`` random target users with at least three training rows give one
random row each.

  warm  the files as they are (+ valid).
  cold  additionally 20 % of the users (all users are shared) lose *all* their
        target-domain rows, train and test, to valid/test (half each, at least one
        in test), so they are cold-start users with source history only.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from bench.sampling import disencdr_edges
from graphtrain.data.splits import halve_per_user

VALID_USERS = 1000
PAIRS = {"sport_cloth": ("sport", "cloth"), "phone_electronic": ("phone", "electronic")}


def with_validation(edges: pd.DataFrame, target: str, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng([seed, 7])
    train_rows = edges.index[(edges["domain"] == target) & (edges["split"] == "train")]
    users = edges.loc[train_rows, "user_id"]
    counts = users.value_counts()
    eligible = np.sort(counts.index[counts >= 3].to_numpy())
    chosen = rng.choice(eligible, size=min(VALID_USERS, len(eligible)), replace=False)
    candidates = train_rows[np.isin(users.to_numpy(), chosen)]
    shuffled = pd.Series(candidates[rng.permutation(len(candidates))])
    one_each = shuffled.groupby(edges.loc[shuffled, "user_id"].to_numpy()).head(1)
    edges = edges.copy()
    edges.loc[one_each.to_numpy(), "split"] = "valid"
    return edges


def make_cold(edges: pd.DataFrame, target: str, fraction: float, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng([seed, 11])
    users = np.sort(edges["user_id"].unique())
    cold = np.sort(rng.choice(users, size=int(round(fraction * len(users))), replace=False))
    rows = np.flatnonzero(((edges["domain"] == target) & edges["user_id"].isin(cold)).to_numpy())
    rows, to_test = halve_per_user(rows, edges["user_id"].to_numpy(), rng.random(len(edges)))
    edges = edges.copy()
    edges.loc[rows, "split"] = np.where(to_test, "test", "valid")
    return edges


def protocol_logs(pair: str, protocol: str, directory: str, seed: int = 0, cold_fraction: float = 0.2) -> str:
    """Write one pair under one protocol as a Parquet log; returns its path."""
    _, target = PAIRS[pair]
    edges = disencdr_edges(pair)
    if protocol == "cold":
        edges = make_cold(edges, target, cold_fraction, seed)
    elif protocol != "warm":
        raise ValueError(f"protocol {protocol!r}: use 'warm' or 'cold'")
    edges = with_validation(edges, target, seed)
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, f"{pair}_{protocol}.parquet")
    edges.to_parquet(path, index=False)
    return path
