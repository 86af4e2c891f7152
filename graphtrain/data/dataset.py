"""Reading a committed dataset artifact (written by ``graphtrain ingest``).

Layout::

    dataset/
      edges/part-NNNNN.parquet   user_idx, item_idx, domain, timestamp, weight, split
                                 (shards of at most EDGE_SHARD_ROWS rows, in edge order)
      users.parquet    user_id, user_idx            (users are shared across domains)
      items.parquet    domain, item_id, item_idx    (item_idx is contiguous per domain)
      quarantine.parquet  rows that broke the contract, with their reason
      meta.json        counts per domain/split/reason and the protocol
      _SUCCESS
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd

from graphtrain import storage

EDGES = "edges"
EDGE_SHARD_ROWS = 2_000_000
USERS = "users.parquet"
ITEMS = "items.parquet"
QUARANTINE = "quarantine.parquet"
META = "meta.json"


@dataclass
class Dataset:
    """A loaded dataset artifact. Indices are the ones the model and graph use."""

    edges: pd.DataFrame
    users: pd.DataFrame
    items: pd.DataFrame
    meta: dict

    @classmethod
    def load(cls, uri: str, storage_options: dict | None = None) -> "Dataset":
        storage.require_artifact(uri, "ingest", storage_options)
        root = storage.materialize(uri, storage_options=storage_options)
        shards = sorted(glob.glob(os.path.join(root, EDGES, "part-*.parquet")))
        edges = pd.concat([pd.read_parquet(path) for path in shards], ignore_index=True)
        # Stored as dictionary columns; plain strings are simpler for every reader.
        edges["domain"] = edges["domain"].astype(str)
        edges["split"] = edges["split"].astype(str)
        return cls(
            edges=edges,
            users=pd.read_parquet(os.path.join(root, USERS)),
            items=pd.read_parquet(os.path.join(root, ITEMS)),
            meta=storage.read_json(os.path.join(root, META)),
        )

    @property
    def domains(self) -> list[str]:
        return list(self.meta["domains"])

    @property
    def num_users(self) -> int:
        return int(self.meta["num_users"])

    def num_items(self, domain: str) -> int:
        return int(self.meta["num_items"][domain])

    @cached_property
    def num_nodes(self) -> dict[str, int]:
        from graphtrain.graph.names import USER, item_type

        return {USER: self.num_users, **{item_type(d): self.num_items(d) for d in self.domains}}

    @staticmethod
    def write_edges(edges: pd.DataFrame, root: str) -> None:
        """Write ``edges`` as ordered Parquet shards under ``root/edges/``."""
        os.makedirs(os.path.join(root, EDGES))
        for shard, begin in enumerate(range(0, max(len(edges), 1), EDGE_SHARD_ROWS)):
            part = edges.iloc[begin : begin + EDGE_SHARD_ROWS]
            part.to_parquet(os.path.join(root, EDGES, f"part-{shard:05d}.parquet"), index=False)

    def train_edge_index(self) -> dict:
        """Train edges per canonical edge type as (src, dst) int64 tensors.

        Edge ``k`` of ``rates@d`` and of ``rated_by@d`` is the k-th train edge of
        domain ``d`` in the dataset's edge order: forward and reverse share an id.
        """
        import torch

        from graphtrain.graph.names import forward_etype, reverse_etype

        index = {}
        for domain in self.domains:
            users, items = self.split_edges("train", domain)
            u, i = torch.from_numpy(users.copy()), torch.from_numpy(items.copy())
            index[forward_etype(domain)] = (u, i)
            index[reverse_etype(domain)] = (i, u)
        return index

    def only_domains(self, domains: list[str]) -> "Dataset":
        """The same users with the edges and items of ``domains`` only (e.g. a
        target-only baseline); indices are unchanged."""
        unknown = sorted(set(domains) - set(self.domains))
        if unknown:
            raise ValueError(f"domains {unknown} are not in this dataset (it has {self.domains})")
        meta = {**self.meta, "domains": list(domains), "num_items": {d: self.meta["num_items"][d] for d in domains}}
        return Dataset(
            edges=self.edges[self.edges["domain"].isin(domains)].reset_index(drop=True),
            users=self.users,
            items=self.items[self.items["domain"].isin(domains)].reset_index(drop=True),
            meta=meta,
        )

    def train_edge_weights(self, domain: str) -> np.ndarray:
        """float32 ``weight`` of the domain's train edges, in train-edge order."""
        return self._rows("train", domain)["weight"].to_numpy(np.float32)

    def split_edges(self, split: str, domain: str) -> tuple[np.ndarray, np.ndarray]:
        """(user_idx, item_idx) of one split in one domain."""
        rows = self._rows(split, domain)
        return rows["user_idx"].to_numpy(np.int64), rows["item_idx"].to_numpy(np.int64)

    def _rows(self, split: str, domain: str) -> pd.DataFrame:
        """One split of one domain, in edge order (the order every per-edge array uses)."""
        return self.edges[(self.edges["split"] == split) & (self.edges["domain"] == domain)]
