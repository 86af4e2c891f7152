"""Reading a committed dataset artifact (written by ``graphtrain ingest``).

Layout::

    dataset/
      edges/part-DDD-BBBBB.parquet  user_idx, item_idx, domain, timestamp, weight, split:
                                    domain DDD (in sorted order) of user bucket BBBBB,
                                    sorted by (user_idx, item_idx); the sorted file
                                    names give the edge order
      users/part-RRRRR.parquet      user_id, user_idx: key range RRRRR of the id map
                                    (users are shared across domains)
      items/part-RRRRR.parquet      domain, item_id, item_idx (contiguous per domain)
      quarantine/part-FFFFFF.parquet  rows of input file FFFFFF that broke the
                                    contract, as read, with their reason and path
      meta.json        counts per domain/split/reason and the protocol
      _SUCCESS

Datasets written before the bucketed ingest (``users.parquet``, ``items.parquet``,
``edges/part-NNNNN.parquet``) load the same way.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd
import pyarrow as pa

from graphtrain import storage
from graphtrain.seeded_hash import hash_ids

EDGES = "edges"
USERS = "users"
ITEMS = "items"
QUARANTINE = "quarantine"
META = "meta.json"
SORT = {USERS: ["user_idx"], ITEMS: ["domain", "item_idx"]}


def map_files(uri: str, kind: str, storage_options: dict | None = None) -> list[str]:
    """Paths, inside the artifact's filesystem, of its ``users`` or ``items`` map:
    the shards of ``kind/``, or the single ``kind.parquet`` of older datasets."""
    fs, root = storage.filesystem(uri, storage_options)
    return storage.list_parquet(fs, f"{root}/{kind}") or [f"{root}/{kind}.parquet"]


def edge_files(uri: str, storage_options: dict | None = None):
    """(filesystem, sorted paths in it) of the artifact's edge shards."""
    fs, root = storage.filesystem(uri, storage_options)
    return fs, storage.list_parquet(fs, f"{root}/{EDGES}")


def _read_map(root: str, kind: str) -> pd.DataFrame:
    shards = sorted(glob.glob(os.path.join(root, kind, "part-*.parquet"))) or [os.path.join(root, f"{kind}.parquet")]
    table = pd.concat([pd.read_parquet(p) for p in shards], ignore_index=True)
    return table.sort_values(SORT[kind], kind="stable").reset_index(drop=True)


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
            users=_read_map(root, USERS),
            items=_read_map(root, ITEMS),
            meta=storage.read_json(os.path.join(root, META)),
        )

    @staticmethod
    def load_id_maps(uri: str, storage_options: dict | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
        """The (users, items) id maps alone, read from the artifact's filesystem."""
        fs, _ = storage.filesystem(uri, storage_options)
        maps = []
        for kind in (USERS, ITEMS):
            table = pd.concat([pd.read_parquet(path, filesystem=fs) for path in map_files(uri, kind, storage_options)],
                              ignore_index=True)
            maps.append(table.sort_values(SORT[kind], kind="stable").reset_index(drop=True))
        return maps[0], maps[1]

    @classmethod
    def load_user_sample(cls, uri: str, domain: str, split: str, max_users: int, seed: int,
                         storage_options: dict | None = None) -> "Dataset":
        """Every split's rows in ``domain`` of at most ``max_users`` users who have
        ``split`` rows there (those with the smallest seeded hash of their index), read
        one edge file at a time: memory holds one file and the sample, never the
        table. The id maps are left empty; indices are the dataset's."""
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        storage.require_artifact(uri, "ingest", storage_options)
        fs, files = edge_files(uri, storage_options)

        def rows_of(path: str, columns: list[str]):
            table = pq.read_table(path, columns=columns, filesystem=fs)
            return table.filter(pc.equal(table["domain"].cast("string"), domain))

        chosen = np.zeros(0, np.int64)
        for path in files:  # pass 1: the max_users smallest hashes among users with split rows
            table = rows_of(path, ["user_idx", "domain", "split"])
            users = table.filter(pc.equal(table["split"].cast("string"), split))["user_idx"].to_numpy()
            candidates = np.union1d(chosen, users.astype(np.int64))
            chosen = candidates[np.argsort(hash_ids(candidates, seed), kind="stable")[:max_users]]
        pieces = []
        for path in files:  # pass 2: their rows, every split
            table = rows_of(path, ["user_idx", "item_idx", "domain", "timestamp", "weight", "split"])
            pieces.append(table.filter(pc.is_in(table["user_idx"], value_set=pa.array(chosen, pa.int64()))).to_pandas())
        edges = pd.concat(pieces, ignore_index=True) if pieces else pd.DataFrame(
            columns=["user_idx", "item_idx", "domain", "timestamp", "weight", "split"])
        edges["domain"] = edges["domain"].astype(str)
        edges["split"] = edges["split"].astype(str)
        empty = {kind: pd.DataFrame(columns=SORT[kind]) for kind in (USERS, ITEMS)}
        return cls(edges=edges, users=empty[USERS], items=empty[ITEMS], meta=storage.read_json(storage.join(uri, META)))

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
        from graphtrain.names import USER, item_type

        return {USER: self.num_users, **{item_type(d): self.num_items(d) for d in self.domains}}

    def train_edge_index(self) -> dict:
        """Train edges per canonical edge type as (src, dst) int64 tensors.

        Edge ``k`` of ``rates@d`` and of ``rated_by@d`` is the k-th train edge of
        domain ``d`` in the dataset's edge order: forward and reverse share an id.
        """
        import torch

        from graphtrain.names import forward_etype, reverse_etype

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
