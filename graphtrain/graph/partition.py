"""`graphtrain partition`: the training graph in DGL's partition format.

Methods: ``metis`` and ``random`` run DGL's ``partition_graph`` in this process (it
holds the whole graph); ``hash`` runs as Ray tasks, none holding more than a
partition's edges (:mod:`graphtrain.graph.hash_partition`); ``auto`` (the default)
takes ``metis`` up to ``METIS_MAX_TRAIN_EDGES`` train edges and ``hash`` above.

Besides DGL's files, the artifact holds the id mapping: for each node and edge type,
the dataset index of every partitioned (reshuffled) id, so samplers and models can
translate between the two id spaces. DGL's methods write it as ``id_mapping.npz``;
``hash`` as one slice per partition, ``id_mapping/part-PPPPP.npz``.
"""

from __future__ import annotations

import glob
import os
import uuid
from typing import Callable

import numpy as np

from graphtrain import storage
from graphtrain.config import PartitionConfig
from graphtrain.data.dataset import Dataset, edge_files
from graphtrain.graph.build import train_graph
from graphtrain.graph.dgl_compat import import_dgl
from graphtrain.names import USER, etype_key

ID_MAPPING = "id_mapping.npz"
# partition_graph's driver measured 0.53 KB per train edge (README "Sizing"): METIS
# up to ~2.7 GB there, the distributed hash partitioner above.
METIS_MAX_TRAIN_EDGES = 5_000_000
PART_CONFIG = "graph.json"
INFO = "graphtrain_partition.json"
MAPPING_DIR = "id_mapping"  # the hash partitioner's per-partition slices


def reader_skips(keep: int | None = None) -> Callable[[str], bool]:
    """For ``storage.materialize(skip=...)``: the files of a partition artifact that a
    reader (a DistGraph client, an inference task) does not download: every
    partition's graph but ``keep``'s (the servers hold them), and the train edges
    (read in place from the artifact)."""
    from graphtrain.graph.train_shards import TRAIN_EDGES

    def skip(relative: str) -> bool:
        first = relative.split("/", 1)[0]
        is_graph = first.startswith("part") and first[4:].isdigit()
        return (is_graph and first != f"part{keep}") or first == TRAIN_EDGES

    return skip


def choose_method(config: PartitionConfig) -> str:
    """The method that runs: ``config.method``, or for ``auto`` by train-edge count."""
    if config.method != "auto":
        return config.method
    meta = storage.read_json(storage.join(config.dataset, "meta.json"))
    train_edges = sum(int(splits.get("train", 0)) for splits in meta["edges"].values())
    return "metis" if train_edges <= METIS_MAX_TRAIN_EDGES else "hash"


def partition(config: PartitionConfig) -> dict:
    """Partition the dataset's train graph; returns a small summary."""
    storage.require_artifact(config.dataset, "ingest")
    method = choose_method(config)
    if method == "hash":
        return _hash_partition(config)
    dgl = import_dgl()
    dataset = Dataset.load(config.dataset)
    graph = train_graph(dataset)
    # DGL servers publish their partition in shared memory under the graph name:
    # a name unique to this artifact keeps runs on one machine from colliding.
    graph_name = f"graphtrain-{uuid.uuid4().hex[:12]}"
    with storage.atomic_artifact(config.output) as staging, _dgl_prints_unless_verbose():
        node_map, edge_map = dgl.distributed.partition_graph(
            graph,
            graph_name,
            config.num_parts,
            staging,
            part_method=method,
            balance_edges=True,
            return_mapping=True,
        )
        arrays = {f"node:{nt}": node_map[nt].numpy() for nt in graph.ntypes}
        arrays.update({f"edge:{etype_key(et)}": edge_map[et].numpy() for et in graph.canonical_etypes})
        np.savez(os.path.join(staging, ID_MAPPING), **arrays)
        os.rename(os.path.join(staging, f"{graph_name}.json"), os.path.join(staging, PART_CONFIG))
        _write_train_shards(staging, dataset, graph, node_map, edge_map, config.num_parts)
        storage.write_json(
            os.path.join(staging, INFO),
            {"graph_name": graph_name, "num_parts": config.num_parts, "method": method, "dataset": config.dataset},
        )
    return {"num_parts": config.num_parts, "method": method, "num_edges": int(graph.num_edges())}


def _dgl_prints_unless_verbose():
    """partition_graph prints its progress (and a misleading process-wide "peak mem");
    keep it for --verbose."""
    import contextlib
    import io

    from graphtrain.ray_env import verbose

    return contextlib.nullcontext() if verbose() else contextlib.redirect_stdout(io.StringIO())


class TypedRanges:
    """Each partition's range of per-type (graph) ids, for every node or edge type,
    from a partition config's ``node_map`` or ``edge_map`` (homogeneous ranges per
    partition and type): typed ids are partition-major, so lengths give the ranges."""

    def __init__(self, homogeneous_ranges: dict[str, list]):
        self.starts = {key: np.cumsum([0] + [end - start for start, end in ranges]).astype(np.int64)
                       for key, ranges in homogeneous_ranges.items()}

    def counts(self, key: str) -> np.ndarray:
        """Ids of type ``key`` per partition."""
        return np.diff(self.starts[key])

    def range(self, key: str, part: int) -> tuple[int, int]:
        return int(self.starts[key][part]), int(self.starts[key][part + 1])

    def owners(self, key: str, typed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(owner partition, position among its ids) of per-type ids."""
        part = np.searchsorted(self.starts[key], typed, side="right") - 1
        return part, typed - self.starts[key][part]


def _write_train_shards(staging: str, dataset: Dataset, graph, node_map: dict, edge_map: dict, num_parts: int) -> None:
    """The per-partition files train workers read (:mod:`graphtrain.graph.train_shards`),
    from the graph ``partition_graph`` reshuffled: typed ids are partition-major, so a
    node's partition follows from its new id and the config's per-partition ranges."""
    import pyarrow.fs as pafs

    from graphtrain.graph import train_shards
    from graphtrain.names import etype_domain, item_type

    part_config = storage.read_json(os.path.join(staging, PART_CONFIG))
    node_ranges, edge_ranges = TypedRanges(part_config["node_map"]), TypedRanges(part_config["edge_map"])
    domains = sorted(dataset.domains)

    def partition_of(ntype: str) -> np.ndarray:
        """Partition of every node of ``ntype``, by dataset index."""
        by_new_id = np.repeat(np.arange(num_parts), node_ranges.counts(ntype))
        out = np.empty(len(by_new_id), np.int64)
        out[node_map[ntype].numpy()] = by_new_id
        return out

    user_part = partition_of(USER)
    item_part = {d: partition_of(item_type(d)) for d in domains}
    columns: dict[str, list] = {name: [] for name in train_shards.COLUMNS}
    popularity, weights = {}, {}
    for d_idx, domain in enumerate(domains):
        users, items = dataset.split_edges("train", domain)
        weights[domain] = dataset.train_edge_weights(domain)
        popularity[domain] = np.bincount(items, minlength=dataset.num_items(domain))
        values = (np.full(len(users), d_idx), users, items, np.arange(len(users)), weights[domain])
        for name, column in zip(train_shards.COLUMNS, values):
            columns[name].append(column)
    edges = {name: np.concatenate(v) if v else np.zeros(0, np.int64) for name, v in columns.items()}
    owner = user_part[edges["user_idx"]]
    fs = pafs.LocalFileSystem()
    for part in range(num_parts):
        mine = owner == part
        counts = {}
        for d in domains:
            ids = np.flatnonzero(item_part[d] == part)
            counts[d] = (ids, popularity[d][ids])
        edge_weights = {}
        for etype in graph.canonical_etypes:
            start, end = edge_ranges.range(etype_key(etype), part)
            original = edge_map[etype].numpy()[start:end]
            edge_weights[etype] = weights[etype_domain(etype)][original]
        train_shards.write_partition(fs, staging, part, {k: v[mine] for k, v in edges.items()}, counts, edge_weights)


def _hash_partition(config: PartitionConfig) -> dict:
    """``hash``: three rounds of Ray tasks (see :mod:`graphtrain.graph.hash_partition`).
    The driver holds O(edge files × partitions) numbers."""

    from graphtrain.graph import hash_partition as hp
    from graphtrain.names import canonical_etypes, item_type
    from graphtrain.ray_env import actor_runtime_env, ensure_ray

    dgl = import_dgl()
    ray = ensure_ray()
    meta = storage.read_json(storage.join(config.dataset, "meta.json"))
    domains = sorted(meta["domains"])
    num_nodes = {USER: int(meta["num_users"]), **{item_type(d): int(meta["num_items"][d]) for d in domains}}
    # DGL's type ids follow the heterograph's (sorted) type order: take them from one.
    empty = dgl.heterograph({et: ([], []) for et in canonical_etypes(domains)}, num_nodes_dict=num_nodes)
    layout = hp.Layout(num_nodes, list(empty.ntypes), list(empty.canonical_etypes), config.num_parts, seed=0)
    P, E = config.num_parts, len(layout.etypes)

    _, files = edge_files(config.dataset)
    graph_name = f"graphtrain-{uuid.uuid4().hex[:12]}"
    options = {}
    with storage.staged_artifact(config.output) as staging:
        # the driver's storage credentials and thread settings reach every task
        task = {"max_retries": hp.TASK_RETRIES, "runtime_env": actor_runtime_env()}
        count = ray.remote(hp.count_file).options(**task)
        route = ray.remote(hp.route_file).options(**task)
        assemble = ray.remote(hp.assemble_partition).options(**task)
        layout_ref = ray.put(layout)
        counts = ray.get([count.remote(config.dataset, options, f, layout_ref, domains) for f in files])
        owned = np.stack([c["owned"] for c in counts]) if counts else np.zeros((0, P, E), np.int64)  # file, part, etype
        per_part = owned.sum(0)  # part, etype
        typed_base = np.cumsum(per_part, 0) - per_part  # edges of type e in earlier partitions
        homo_base = (np.cumsum(per_part.sum(1)) - per_part.sum(1))[:, None] + np.cumsum(per_part, 1) - per_part
        file_offset = np.cumsum(owned, 0) - owned  # edges of (p, e) in earlier files
        dataset_offset, running = [], dict.fromkeys(domains, 0)
        for c in counts:
            dataset_offset.append(dict(running))
            for d, n in c["train"].items():
                running[d] += n
        ray.get([route.remote(config.dataset, staging, options, f, k, layout_ref, domains, dataset_offset[k], typed_base + file_offset[k])
                 for k, f in enumerate(files)])
        bases = {"typed": typed_base, "homo": homo_base}
        parts = ray.get([assemble.remote(staging, options, p, layout_ref, domains, bases) for p in range(P)])
        edge_starts = np.concatenate([[0], np.cumsum(per_part.reshape(-1))])  # (p, e) ranges, partition-major
        part_config = {
            "graph_name": graph_name, "num_nodes": int(sum(num_nodes.values())), "num_edges": int(per_part.sum()),
            "part_method": "hash", "num_parts": P, "halo_hops": 1,
            "node_map": layout.node_map(),
            "edge_map": {etype_key(et): [[int(edge_starts[p * E + e]), int(edge_starts[p * E + e + 1])] for p in range(P)]
                         for e, et in enumerate(layout.etypes)},
            "ntypes": {nt: t for t, nt in enumerate(layout.ntypes)},
            "etypes": {etype_key(et): e for e, et in enumerate(layout.etypes)},
            **{f"part-{p}": {"node_feats": f"part{p}/node_feat.dgl", "edge_feats": f"part{p}/edge_feat.dgl",
                             "part_graph": f"part{p}/graph.dgl"} for p in range(P)},
        }
        storage.write_json(storage.join(staging, PART_CONFIG), part_config)
        storage.write_json(storage.join(staging, INFO), {"graph_name": graph_name, "num_parts": P, "method": "hash", "dataset": config.dataset,
                                    "parts": parts})
    return {"num_parts": P, "method": "hash", "num_edges": int(per_part.sum()),
            "halo_edges": int(sum(p["halo_edges"] for p in parts))}


def read_info(partitions_uri: str) -> dict:
    """``{"graph_name", "num_parts", "method", "dataset"}`` of a partition artifact."""
    storage.require_artifact(partitions_uri, "partition")
    return storage.read_json(storage.join(partitions_uri, INFO))


class IdMapping:
    """Translate node/edge ids between the dataset and the partitioned graph."""

    def __init__(self, path: str, edges: bool = True):
        """``path``: ``id_mapping.npz``, or the ``id_mapping/`` folder of per-partition
        slices (partition-major, as typed ids are), concatenated here. Without
        ``edges`` only the node maps are read (a train worker needs no edge map)."""
        slices = sorted(glob.glob(os.path.join(path, "part-*.npz"))) if os.path.isdir(path) else [path]
        pieces: dict[str, list] = {}
        for one in slices:
            with np.load(one, allow_pickle=False) as data:
                for key in data.files:
                    if edges or key.startswith("node:"):
                        pieces.setdefault(key, []).append(data[key])
        self._to_dataset = {k: np.concatenate(v).astype(np.int64, copy=False) for k, v in pieces.items()}
        self._to_partition = {}
        for key, to_dataset in self._to_dataset.items():
            inverse = np.empty_like(to_dataset)
            inverse[to_dataset] = np.arange(len(to_dataset))
            self._to_partition[key] = inverse

    @classmethod
    def load(cls, partitions_dir: str, edges: bool = True) -> "IdMapping":
        folder = os.path.join(partitions_dir, MAPPING_DIR)
        return cls(folder if os.path.isdir(folder) else os.path.join(partitions_dir, ID_MAPPING), edges)

    def nodes_to_partition(self, ntype: str, ids: np.ndarray) -> np.ndarray:
        return self._to_partition[f"node:{ntype}"][ids]

    def nodes_to_dataset(self, ntype: str, ids: np.ndarray) -> np.ndarray:
        return self._to_dataset[f"node:{ntype}"][ids]

    def edges_to_partition(self, etype: tuple[str, str, str], ids: np.ndarray) -> np.ndarray:
        return self._to_partition[f"edge:{etype_key(etype)}"][ids]

    def edges_to_dataset(self, etype: tuple[str, str, str], ids: np.ndarray) -> np.ndarray:
        return self._to_dataset[f"edge:{etype_key(etype)}"][ids]
