"""Dedupe one user bucket's rows: one row per (user, item, domain).

Strings are factorised once up front; dedupe then works on integer codes (sorting
millions of string keys was most of the time).
"""

from __future__ import annotations

from dataclasses import dataclass

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
