"""Good rows -> edges with contiguous indices: dedupe, k-core, stable id maps.

Users are one index space shared by every domain; items are indexed per domain.
With earlier id maps (``--id-maps``), every known id keeps its index and new ids are
appended after the known ones (in sorted order), so a retrained model and a live
server agree on what index ``i`` means.

Strings are factorised once up front; dedupe and k-core then work on integer codes
(sorting millions of string keys was most of ingest's driver time).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import pandas as pd

# "" means the input had no split for the row.
SPLIT_VALUES = ("", "train", "valid", "test")

@dataclass
class Encoded:
    """Rows as integer codes into sorted unique values."""

    user: np.ndarray
    domain: np.ndarray
    item: np.ndarray  # code into ``item_ids`` (ids are unique per domain, not globally)
    timestamp: np.ndarray
    weight: np.ndarray
    split: np.ndarray  # code into SPLIT_VALUES
    user_ids: np.ndarray
    domains: np.ndarray
    item_ids: np.ndarray

    @classmethod
    def from_rows(cls, rows: pd.DataFrame) -> "Encoded":
        user, user_ids = pd.factorize(rows["user_id"], sort=True)
        domain, domains = pd.factorize(rows["domain"], sort=True)
        item, item_ids = pd.factorize(rows["item_id"], sort=True)
        split = pd.Categorical(rows["split"], categories=SPLIT_VALUES).codes
        return cls(
            user.astype(np.int64), domain.astype(np.int64), item.astype(np.int64),
            rows["timestamp"].to_numpy(np.int64), rows["weight"].to_numpy(np.float64), split,
            np.asarray(user_ids, dtype=object), np.asarray(domains, dtype=object), np.asarray(item_ids, dtype=object),
        )

    def take(self, rows: np.ndarray) -> "Encoded":
        keep = {name: getattr(self, name)[rows] for name in ("user", "domain", "item", "timestamp", "weight", "split")}
        return Encoded(**keep, user_ids=self.user_ids, domains=self.domains, item_ids=self.item_ids)

    @property
    def item_key(self) -> np.ndarray:
        """One integer per (domain, item)."""
        return self.domain * len(self.item_ids) + self.item

    @property
    def pair_key(self) -> np.ndarray:
        """One integer per (user, domain, item), ordered like the tuple."""
        return self.user * (len(self.domains) * len(self.item_ids)) + self.item_key

    def __len__(self) -> int:
        return len(self.user)


def dedupe(rows: Encoded, mode: str) -> Encoded:
    """One row per (user, item, domain): the latest (by timestamp, then weight), or
    the latest with the weights of all repeats summed."""
    key = rows.pair_key
    order = np.lexsort((rows.weight, rows.timestamp, key))
    key = key[order]
    last = np.r_[key[1:] != key[:-1], True]
    kept = rows.take(order[last])
    if mode == "sum":
        starts = np.flatnonzero(np.r_[True, last[:-1]])  # a group starts after the previous one ends
        kept.weight = np.add.reduceat(rows.weight[order], starts)
    return kept


def k_core(rows: Encoded, k: int) -> Encoded:
    """Drop users and items with fewer than ``k`` interactions, repeatedly, until every
    remaining user and item (per domain) has at least ``k``."""
    if k <= 1:
        return rows
    item, _ = pd.factorize(rows.item_key)
    user = rows.user
    keep = np.ones(len(rows), dtype=bool)
    while True:
        user_n = np.bincount(user[keep], minlength=len(rows.user_ids))
        item_n = np.bincount(item[keep], minlength=int(item.max()) + 1 if len(item) else 0)
        still = keep & (user_n[user] >= k) & (item_n[item] >= k)
        if still.sum() == keep.sum():
            return rows.take(np.flatnonzero(keep))
        keep = still


def _extend(known: Optional[pd.DataFrame], ids: np.ndarray, id_col: str, idx_col: str) -> tuple[pd.DataFrame, np.ndarray]:
    """Map for sorted unique ``ids``: known ids keep their index, unseen ones are
    appended in sorted order. Returns (the whole map, the index of each of ``ids``)."""
    if known is None or known.empty:
        table = pd.DataFrame({id_col: ids, idx_col: np.arange(len(ids), dtype=np.int64)})
        return table, table[idx_col].to_numpy()
    known = known[[id_col, idx_col]].astype({id_col: str, idx_col: np.int64})
    position = pd.Index(known[id_col]).get_indexer(ids)
    new = ids[position < 0]
    start = int(known[idx_col].max()) + 1
    appended = pd.DataFrame({id_col: new, idx_col: np.arange(start, start + len(new), dtype=np.int64)})
    table = pd.concat([known, appended], ignore_index=True)
    found = position >= 0
    index = np.empty(len(ids), dtype=np.int64)
    index[found] = known[idx_col].to_numpy()[position[found]]
    index[~found] = appended[idx_col].to_numpy()
    return table, index


def index(
    rows: Encoded, previous_users: Optional[pd.DataFrame] = None, previous_items: Optional[pd.DataFrame] = None
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(edges, users, items): edges sorted by (domain, user_idx, item_idx).

    ``users``: user_id, user_idx; ``items``: domain, item_id, item_idx.
    """
    present_users = np.unique(rows.user)
    users, user_index = _extend(previous_users, rows.user_ids[present_users], "user_id", "user_idx")
    user_idx_of_code = np.zeros(len(rows.user_ids), dtype=np.int64)
    user_idx_of_code[present_users] = user_index

    item_idx = np.zeros(len(rows), dtype=np.int64)
    previous_domains = set(previous_items["domain"]) if previous_items is not None else set()
    tables = []
    for name in sorted(set(rows.domains[np.unique(rows.domain)]) | previous_domains):
        code = np.flatnonzero(rows.domains == name)
        in_domain = rows.domain == code[0] if len(code) else np.zeros(len(rows), dtype=bool)
        present = np.unique(rows.item[in_domain])
        known = previous_items[previous_items["domain"] == name] if previous_items is not None else None
        table, item_index = _extend(known, rows.item_ids[present], "item_id", "item_idx")
        idx_of_code = np.zeros(len(rows.item_ids), dtype=np.int64)
        idx_of_code[present] = item_index
        item_idx[in_domain] = idx_of_code[rows.item[in_domain]]
        tables.append(table.assign(domain=name))
    items = pd.concat(tables, ignore_index=True)[["domain", "item_id", "item_idx"]]

    user_idx = user_idx_of_code[rows.user]
    order = np.lexsort((item_idx, user_idx, rows.domain))
    edges = pd.DataFrame(
        {
            "user_idx": user_idx[order],
            "item_idx": item_idx[order],
            "domain": pd.Categorical.from_codes(rows.domain[order], categories=list(rows.domains)),
            "timestamp": rows.timestamp[order],
            "weight": rows.weight[order],
            "split": pd.Categorical.from_codes(rows.split[order], categories=list(SPLIT_VALUES)),
        }
    )
    return edges, users, items
