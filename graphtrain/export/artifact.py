"""The exported model artifact (safe formats only: npz without pickle, Parquet, JSON).

Layout::

    model/
      manifest.json     version, domains, transfer direction, dims, training summary
      users.parquet     user_id, user_idx
      items.parquet     domain, item_id, item_idx
      embeddings.npz    users@<d>   user representations for scoring domain d
                        items@<d>   item representations of domain d
                        popularity@<d>              training counts per item
                        seen_indptr@<d>, seen_indices@<d>   CSR of training items per user
      _SUCCESS
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import pandas as pd

from graphtrain import storage

MANIFEST = "manifest.json"
EMBEDDINGS = "embeddings.npz"


def seen_csr(user_idx: np.ndarray, item_idx: np.ndarray, num_users: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.lexsort((item_idx, user_idx))
    indptr = np.zeros(num_users + 1, dtype=np.int64)
    np.cumsum(np.bincount(user_idx, minlength=num_users), out=indptr[1:])
    return indptr, item_idx[order].astype(np.int64)


def write(staging: str, *, manifest: dict, users: pd.DataFrame, items: pd.DataFrame, arrays: dict[str, np.ndarray]) -> None:
    users.to_parquet(os.path.join(staging, "users.parquet"), index=False)
    items.to_parquet(os.path.join(staging, "items.parquet"), index=False)
    np.savez(os.path.join(staging, EMBEDDINGS), **arrays)
    storage.write_json(os.path.join(staging, MANIFEST), manifest)


@dataclass
class ModelArtifact:
    manifest: dict
    users: pd.DataFrame
    items: pd.DataFrame
    arrays: dict[str, np.ndarray]

    @classmethod
    def load(cls, uri: str) -> "ModelArtifact":
        storage.require_artifact(uri, "export")
        root = storage.materialize(uri)
        with np.load(os.path.join(root, EMBEDDINGS), allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        return cls(
            manifest=storage.read_json(os.path.join(root, MANIFEST)),
            users=pd.read_parquet(os.path.join(root, "users.parquet")),
            items=pd.read_parquet(os.path.join(root, "items.parquet")),
            arrays=arrays,
        )

    @property
    def domains(self) -> list[str]:
        return list(self.manifest["domains"])

    def user_vectors(self, domain: str) -> np.ndarray:
        return self.arrays[f"users@{domain}"]

    def item_vectors(self, domain: str) -> np.ndarray:
        return self.arrays[f"items@{domain}"]

    def popularity(self, domain: str) -> np.ndarray:
        return self.arrays[f"popularity@{domain}"]

    def seen(self, domain: str, user_idx: int) -> np.ndarray:
        indptr = self.arrays[f"seen_indptr@{domain}"]
        return self.arrays[f"seen_indices@{domain}"][indptr[user_idx] : indptr[user_idx + 1]]

    def history_domains(self, user_idx: int) -> list[str]:
        return [d for d in self.domains if len(self.seen(d, user_idx))]
