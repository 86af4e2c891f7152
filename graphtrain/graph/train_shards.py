"""What a train worker reads of a partition artifact, one partition at a time.

Beside DGL's files, ``graphtrain partition`` writes per partition ``p``:

    train_edges/part-PPPPP.parquet   the train edges whose user is in p: domain (index
                                     into the sorted domains), user_idx, item_idx,
                                     edge_id (position among the domain's train edges),
                                     weight (the interaction's)
    item_counts/part-PPPPP.npz       ids:<domain>, counts:<domain>: p's items and their
                                     train interactions (popularity, negatives)
    edge_weight/<etype>/part-PPPPP.npy  float32 interaction weight of every edge of
                                     that type p owns, in graph (typed) edge-id order

so a worker reads its own partition's edges and nothing of the whole graph but the
per-item counts; edge weights are memory-mapped, and a graph edge id finds its
partition's file from the files' lengths (typed ids are partition-major).
"""

from __future__ import annotations

import glob
import io
import os

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from graphtrain import storage
from graphtrain.names import etype_key

TRAIN_EDGES = "train_edges"
ITEM_COUNTS = "item_counts"
EDGE_WEIGHT = "edge_weight"
COLUMNS = ("domain", "user_idx", "item_idx", "edge_id", "weight")


def write_partition(fs: pafs.FileSystem, root: str, part: int, edges: dict[str, np.ndarray],
                    item_counts: dict[str, tuple[np.ndarray, np.ndarray]], edge_weights: dict[tuple, np.ndarray]) -> None:
    """Write partition ``part``'s train edges (``COLUMNS``), its items' counts
    (``{domain: (item ids, counts)}``) and its owned edges' weights (per edge type)."""
    table = pa.table({
        "domain": np.asarray(edges["domain"], np.int16), "user_idx": np.asarray(edges["user_idx"], np.int64),
        "item_idx": np.asarray(edges["item_idx"], np.int64), "edge_id": np.asarray(edges["edge_id"], np.int64),
        "weight": np.asarray(edges["weight"], np.float32),
    })
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    storage.write_bytes(fs, f"{root}/{TRAIN_EDGES}/part-{part:05d}.parquet", sink.getvalue().to_pybytes())
    buffer = io.BytesIO()
    arrays = {}
    for domain, (ids, counts) in item_counts.items():
        arrays[f"ids:{domain}"], arrays[f"counts:{domain}"] = np.asarray(ids, np.int64), np.asarray(counts, np.int64)
    np.savez(buffer, **arrays)
    storage.write_bytes(fs, f"{root}/{ITEM_COUNTS}/part-{part:05d}.npz", buffer.getvalue())
    for etype, weights in edge_weights.items():
        buffer = io.BytesIO()
        np.save(buffer, np.asarray(weights, np.float32))
        storage.write_bytes(fs, f"{root}/{EDGE_WEIGHT}/{etype_key(etype)}/part-{part:05d}.npy", buffer.getvalue())


def _train_edge_files(partitions_uri: str) -> tuple[pafs.FileSystem, list[str]]:
    fs, root = storage.filesystem(partitions_uri)
    files = storage.list_parquet(fs, f"{root}/{TRAIN_EDGES}")
    if not files:
        raise FileNotFoundError(
            f"{partitions_uri} has no {TRAIN_EDGES}/: it was partitioned by an older graphtrain; "
            "run `graphtrain partition` again")
    return fs, files


def train_edge_counts(partitions_uri: str) -> list[int]:
    """Train edges per partition, from the parquet footers (no rows read)."""
    fs, files = _train_edge_files(partitions_uri)
    counts = []
    for path in files:
        with fs.open_input_file(path) as f:
            counts.append(pq.ParquetFile(f).metadata.num_rows)
    return counts


def read_train_edges(partitions_uri: str, part: int, columns=COLUMNS, filters=None) -> dict[str, np.ndarray]:
    """Partition ``part``'s train edges (those matching pyarrow ``filters``), read from
    the artifact (local or remote)."""
    fs, root = storage.filesystem(partitions_uri)
    table = pq.read_table(f"{root}/{TRAIN_EDGES}/part-{part:05d}.parquet", columns=list(columns), filesystem=fs,
                          filters=filters)
    return {name: table[name].to_numpy() for name in columns}


def item_popularity(partitions_dir: str, domains: list[str], num_items: dict[str, int]) -> dict[str, np.ndarray]:
    """Train interactions of every item per domain (float32), summed over partitions."""
    counts = {d: np.zeros(num_items[d], np.float32) for d in domains}
    for path in sorted(glob.glob(os.path.join(partitions_dir, ITEM_COUNTS, "part-*.npz"))):
        with np.load(path, allow_pickle=False) as data:
            for d in domains:
                if f"ids:{d}" in data.files:
                    np.add.at(counts[d], data[f"ids:{d}"], data[f"counts:{d}"].astype(np.float32))
    return counts


class PartitionedEdgeWeights:
    """Interaction weight by graph edge id, from the memory-mapped per-partition files."""

    def __init__(self, partitions_dir: str, etypes: list[tuple]):
        self._arrays, self._starts = {}, {}
        for etype in etypes:
            files = sorted(glob.glob(os.path.join(partitions_dir, EDGE_WEIGHT, etype_key(etype), "part-*.npy")))
            arrays = [np.load(f, mmap_mode="r") for f in files]
            self._arrays[etype] = arrays
            self._starts[etype] = np.cumsum([0] + [len(a) for a in arrays])

    def __call__(self, etype: tuple, graph_eids: np.ndarray) -> np.ndarray:
        starts, arrays = self._starts[etype], self._arrays[etype]
        part = np.searchsorted(starts, graph_eids, side="right") - 1
        out = np.empty(len(graph_eids), np.float32)
        for p in np.unique(part):
            rows = part == p
            out[rows] = arrays[p][graph_eids[rows] - starts[p]]
        return out
