"""Good rows -> edges with contiguous indices: dedupe, k-core, stable id maps.

Users are one index space shared by every domain; items are indexed per domain.
With earlier id maps (``--id-maps``), every known id keeps its index and new ids are
appended after the known ones (in sorted order), so a retrained model and a live
server agree on what index ``i`` means.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import pandas as pd

KEY = ["user_id", "item_id", "domain"]


def dedupe(rows: pd.DataFrame, mode: str) -> pd.DataFrame:
    """One row per (user, item, domain): the latest (by timestamp), or the latest
    with the weights of all repeats summed."""
    rows = rows.sort_values([*KEY, "timestamp", "weight"], kind="stable")
    latest = rows.drop_duplicates(KEY, keep="last")
    if mode == "sum":
        totals = rows.groupby(KEY, sort=False)["weight"].sum()
        latest = latest.drop(columns="weight").merge(totals.rename("weight").reset_index(), on=KEY)
    return latest.reset_index(drop=True)


def k_core(rows: pd.DataFrame, k: int) -> pd.DataFrame:
    """Drop users and items (per domain) with fewer than ``k`` interactions, repeatedly,
    until every remaining user and item has at least ``k``."""
    if k <= 1:
        return rows
    while True:
        user_n = rows.groupby("user_id")["user_id"].transform("size")
        item_n = rows.groupby(["domain", "item_id"])["item_id"].transform("size")
        keep = (user_n >= k) & (item_n >= k)
        if keep.all():
            return rows
        rows = rows[keep]


def _extend(known: Optional[pd.DataFrame], ids: pd.Series, id_col: str, idx_col: str) -> pd.DataFrame:
    """Known ids keep their index; unseen ids are appended in sorted order."""
    unique = np.sort(ids.unique())
    if known is None or known.empty:
        return pd.DataFrame({id_col: unique, idx_col: np.arange(len(unique), dtype=np.int64)})
    known = known[[id_col, idx_col]].astype({id_col: str, idx_col: np.int64})
    new = np.setdiff1d(unique, known[id_col].to_numpy())
    start = int(known[idx_col].max()) + 1 if len(known) else 0
    appended = pd.DataFrame({id_col: new, idx_col: np.arange(start, start + len(new), dtype=np.int64)})
    return pd.concat([known, appended], ignore_index=True)


def id_maps(
    rows: pd.DataFrame, previous_users: Optional[pd.DataFrame] = None, previous_items: Optional[pd.DataFrame] = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(users: user_id, user_idx) and (items: domain, item_id, item_idx)."""
    users = _extend(previous_users, rows["user_id"], "user_id", "user_idx")
    domains = sorted(set(rows["domain"]) | (set(previous_items["domain"]) if previous_items is not None else set()))
    parts = []
    for domain in domains:
        known = previous_items[previous_items["domain"] == domain] if previous_items is not None else None
        ids = rows.loc[rows["domain"] == domain, "item_id"]
        parts.append(_extend(known, ids, "item_id", "item_idx").assign(domain=domain))
    items = pd.concat(parts, ignore_index=True)[["domain", "item_id", "item_idx"]]
    return users, items


def index_edges(rows: pd.DataFrame, users: pd.DataFrame, items: pd.DataFrame) -> pd.DataFrame:
    edges = rows.merge(users, on="user_id").merge(items, on=["domain", "item_id"])
    return edges.sort_values(["domain", "user_idx", "item_idx"], kind="stable").reset_index(drop=True)
