"""Logs for the retrain tests: a first export, a later one with new users and more
interactions, and a later one made worse on purpose."""

import numpy as np
import pandas as pd

from graphtrain.data.synthetic import SyntheticSpec, generate

SPEC = SyntheticSpec(num_users=500, items_per_domain=150, num_clusters=5, interactions_per_user=10, seed=11)


def all_logs() -> pd.DataFrame:
    return generate(SPEC)


def first_logs(logs: pd.DataFrame) -> pd.DataFrame:
    """The first export: 80 % of the users (the rest sign up later)."""
    users = sorted(logs["user_id"].unique())
    return logs[logs["user_id"].isin(users[: int(0.8 * len(users))])].reset_index(drop=True)


def worse_logs(logs: pd.DataFrame, target_domain: str, seed: int = 0) -> pd.DataFrame:
    """Every target-domain interaction but each user's latest two (which leave-one-out
    keeps for valid and test) gets a random item: a broken export whose training rows
    say nothing, while the rows the gate evaluates on stay real."""
    logs = logs.copy()
    target = logs["domain"] == target_domain
    newest = logs[target].sort_values("timestamp").groupby("user_id").tail(2).index
    broken = target & ~logs.index.isin(newest)
    items = logs.loc[target, "item_id"].unique()
    logs.loc[broken, "item_id"] = np.random.default_rng(seed).choice(items, int(broken.sum()))
    return logs.drop_duplicates(["user_id", "item_id", "domain"], keep="last").reset_index(drop=True)
