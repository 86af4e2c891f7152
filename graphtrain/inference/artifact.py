"""The exported model artifact: sharded, memory-mapped, safe formats only (``.npy``
without pickle, Parquet, JSON).

Layout::

    model/
      manifest.json      version, domains, transfer direction, dims, training summary,
                         and ``arrays``: every array's shape, dtype and shards
      users.parquet      user_id, user_idx
      items.parquet      domain, item_id, item_idx
      arrays/<name>/part-NNNNN.npy   rows [begin, end) of array <name>:
                         users@<d>   user representations for scoring domain d
                         items@<d>   item representations of domain d
                         popularity@<d>              training counts per item
                         seen_indptr@<d>, seen_indices@<d>   CSR of training items per user
                         seen_alpha@<d>   each CSR edge's propagation weight (weighted models)
                         fold.*, param.*  what the fold-in needs to recompute one user
                                     (see graphtrain.inference.foldin)
      _SUCCESS

Arrays are cut into shards of at most ``SHARD_BYTES``. ``ModelArtifact.load`` maps
every shard read-only (``np.load(mmap_mode="r")``): a process touches only the pages
it reads, and Serve replicas on one node share them through the page cache.
Artifacts written before the shards (one ``embeddings.npz``) still load, into memory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from graphtrain import storage
from graphtrain.errors import ArtifactError

MANIFEST = "manifest.json"
ARRAYS = "arrays"
LEGACY_EMBEDDINGS = "embeddings.npz"
SHARD_BYTES = 256 << 20


class ShardedArray:
    """Rows of one array spread over shards; reads touch only the shards they need."""

    def __init__(self, shards: list[np.ndarray]):
        self.shards = shards
        self.starts = np.cumsum([0] + [len(s) for s in shards])
        self.shape = (int(self.starts[-1]), *(shards[0].shape[1:] if shards else ()))
        self.dtype = shards[0].dtype if shards else np.dtype(np.float32)

    def __len__(self) -> int:
        return self.shape[0]

    def rows(self, begin: int, end: int) -> np.ndarray:
        """Rows [begin, end): a view of one shard when they lie in one."""
        end = min(end, len(self))
        first = int(np.searchsorted(self.starts, begin, side="right")) - 1
        if end <= begin:
            return np.empty((0, *self.shape[1:]), dtype=self.dtype)
        if end <= self.starts[first + 1]:
            return self.shards[first][begin - self.starts[first] : end - self.starts[first]]
        last = int(np.searchsorted(self.starts, end, side="left")) - 1
        parts = [self.shards[s][max(begin - self.starts[s], 0) : end - self.starts[s]] for s in range(first, last + 1)]
        return np.concatenate(parts)

    def take(self, index: np.ndarray, axis: int = 0) -> np.ndarray:
        """Rows at ``index`` (any order), gathered shard by shard (``np.take`` on
        axis 0)."""
        if axis != 0:
            raise ValueError(f"ShardedArray.take gathers rows only (axis=0), not axis={axis}")
        index = np.asarray(index, dtype=np.int64)
        out = np.empty((len(index), *self.shape[1:]), dtype=self.dtype)
        owner = np.searchsorted(self.starts, index, side="right") - 1
        for s in np.unique(owner):
            mine = owner == s
            out[mine] = self.shards[s][index[mine] - self.starts[s]]
        return out

    def __getitem__(self, key):
        if isinstance(key, (int, np.integer)):
            return self.rows(int(key), int(key) + 1)[0]
        if isinstance(key, slice) and key.step in (None, 1):
            begin, end, _ = key.indices(len(self))
            return self.rows(begin, end)
        return self.take(key)

    def __array__(self, dtype=None, copy=None):
        whole = self.shards[0] if len(self.shards) == 1 else self.rows(0, len(self))
        return np.asarray(whole, dtype=dtype)


def _write_array(staging: str, name: str, array: np.ndarray) -> dict:
    array = np.ascontiguousarray(array)
    row_bytes = max(array.itemsize * int(np.prod(array.shape[1:], dtype=np.int64)), 1)
    rows_per_shard = max(1, SHARD_BYTES // row_bytes)
    folder = os.path.join(staging, ARRAYS, name)
    os.makedirs(folder)
    shards = []
    for part, begin in enumerate(range(0, max(len(array), 1), rows_per_shard)):
        file = f"{ARRAYS}/{name}/part-{part:05d}.npy"
        np.save(os.path.join(staging, file), array[begin : begin + rows_per_shard], allow_pickle=False)
        shards.append({"file": file, "rows": [begin, min(begin + rows_per_shard, len(array))]})
    return {"shape": list(array.shape), "dtype": str(array.dtype), "shards": shards}


def rows_per_shard(row_shape: tuple, dtype) -> int:
    """Rows of one shard: at most ``SHARD_BYTES``."""
    row_bytes = max(np.dtype(dtype).itemsize * int(np.prod(row_shape, dtype=np.int64)), 1)
    return max(1, SHARD_BYTES // row_bytes)


def write_shard(staging_uri: str, name: str, index: int, begin: int, rows: np.ndarray) -> dict:
    """One shard of array ``name`` (rows [begin, begin + len(rows))) on any storage;
    returns its manifest entry. Tasks writing disjoint row ranges build one array."""
    import io

    file = f"{ARRAYS}/{name}/part-{index:05d}.npy"
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(rows), allow_pickle=False)
    fs, path = storage.filesystem(storage.join(staging_uri, file))
    storage.write_bytes(fs, path, buffer.getvalue())
    return {"file": file, "rows": [begin, begin + len(rows)]}


def write(staging: str, *, manifest: dict, users: pd.DataFrame, items: pd.DataFrame, arrays: dict[str, np.ndarray]) -> None:
    users.to_parquet(os.path.join(staging, "users.parquet"), index=False)
    items.to_parquet(os.path.join(staging, "items.parquet"), index=False)
    listing = {name: _write_array(staging, name, array) for name, array in sorted(arrays.items())}
    storage.write_json(os.path.join(staging, MANIFEST), {**manifest, ARRAYS: listing})


def _load_arrays(root: str, manifest: dict) -> dict[str, ShardedArray]:
    if ARRAYS not in manifest:  # an artifact from before the shards
        with np.load(os.path.join(root, LEGACY_EMBEDDINGS), allow_pickle=False) as data:
            return {k: ShardedArray([data[k]]) for k in data.files}
    return {name: ShardedArray([_load_shard(root, name, s) for s in entry["shards"]]) for name, entry in manifest[ARRAYS].items()}


def _load_shard(root: str, name: str, shard: dict) -> np.ndarray:
    """One memory-mapped shard, checked against the manifest: a missing, truncated or
    foreign file is an ArtifactError naming it, not a numpy traceback at first use."""
    path = os.path.join(root, shard["file"])
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as err:
        raise ArtifactError(f"model artifact {root!r}: array {name!r} shard {shard['file']!r} cannot be read ({err}); "
                            "the artifact is incomplete or corrupt: export it again") from err
    begin, end = shard["rows"]
    if len(array) != end - begin and not (end == begin == 0):
        raise ArtifactError(f"model artifact {root!r}: {shard['file']!r} holds {len(array)} rows, the manifest says "
                            f"{end - begin}: export it again")
    return array


@dataclass
class ModelArtifact:
    manifest: dict
    users: pd.DataFrame
    items: pd.DataFrame
    arrays: dict[str, ShardedArray]

    def __post_init__(self):
        self.arrays = {k: v if isinstance(v, ShardedArray) else ShardedArray([np.asarray(v)]) for k, v in self.arrays.items()}

    @classmethod
    def load(cls, uri: str) -> "ModelArtifact":
        storage.require_artifact(uri, "export")
        root = storage.materialize(uri)
        try:
            manifest = storage.read_json(os.path.join(root, MANIFEST))
            users = pd.read_parquet(os.path.join(root, "users.parquet"))
            items = pd.read_parquet(os.path.join(root, "items.parquet"))
        except (OSError, ValueError, pa.ArrowException) as err:
            raise ArtifactError(f"model artifact {uri!r} cannot be read ({type(err).__name__}: {err}); export it again") from err
        return cls(manifest=manifest, users=users, items=items, arrays=_load_arrays(root, manifest))

    @property
    def domains(self) -> list[str]:
        return list(self.manifest["domains"])

    def user_vectors(self, domain: str) -> ShardedArray:
        """Every user's vector for ``domain``, read on demand (``take``, ``rows``)."""
        return self.arrays[f"users@{domain}"]

    def user_vector(self, domain: str, user_idx: int) -> np.ndarray:
        return self.arrays[f"users@{domain}"][int(user_idx)]

    def item_vectors(self, domain: str) -> np.ndarray:
        return np.asarray(self.arrays[f"items@{domain}"])

    def popularity(self, domain: str) -> np.ndarray:
        return np.asarray(self.arrays[f"popularity@{domain}"])

    def seen(self, domain: str, user_idx: int) -> np.ndarray:
        bounds = self.arrays[f"seen_indptr@{domain}"].rows(user_idx, user_idx + 2)
        return self.arrays[f"seen_indices@{domain}"].rows(int(bounds[0]), int(bounds[1]))

    def history_domains(self, user_idx: int) -> list[str]:
        return [d for d in self.domains if len(self.seen(d, user_idx))]
