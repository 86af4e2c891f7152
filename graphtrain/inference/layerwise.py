"""Layer-wise inference over a partition artifact: Ray tasks, none holding the graph.

The model's full-graph representations (``MigrationGNN.embed``), computed one layer
at a time, each partition's nodes by one task, as DGL's distributed GraphSAGE
inference does:

- round 0: each partition's task writes h^(0) of its own nodes, rows of the
  checkpoint's embedding tables (read memory-mapped, only those rows);
- round l = 1..L: each task reads h^(l-1) of its own nodes and of the halo nodes at
  the far end of its in-edges (only those rows, from their owners' files), applies
  layer l to its own nodes and writes h^(l); the last round also writes the users'
  source-domain message;
- final: each task averages its own nodes' layers, adds the item-bias column and the
  transfer head, and writes the scoring vectors.

Every file holds one partition's own nodes of one type in graph (per-type) id order,
under ``work_uri`` on the output's storage, so tasks on any node can reach them. A task
holds its partition's in-edges, the rows it reads and the node id map.
"""

from __future__ import annotations

import io
import os

import numpy as np
import torch

from graphtrain import storage
from graphtrain.graph.partition import PART_CONFIG, IdMapping, TypedRanges, reader_skips
from graphtrain.graph.train_shards import PartitionedEdgeWeights
from graphtrain.models.alpha import alpha_of
from graphtrain.names import USER, item_type

TASK_RETRIES = 2


class MappedTables:
    """The checkpoint's node embedding tables, memory-mapped: a lookup reads its rows only."""

    def __init__(self, state: dict[str, torch.Tensor]):
        self.state = state

    def lookup(self, ntype: str, ids: torch.Tensor, device: torch.device) -> torch.Tensor:
        return self.state[f"embeddings.{ntype}.weight"][ids].to(device)


def load_model_mapped(checkpoint_dir: str):
    """The checkpoint's model with its embedding tables left in the file (mmap)."""
    import json

    from graphtrain.config import ModelConfig
    from graphtrain.models.gnn import MigrationGNN

    with open(os.path.join(checkpoint_dir, "model.json")) as f:
        shape = json.load(f)
    state = torch.load(os.path.join(checkpoint_dir, "model.pt"), map_location="cpu", weights_only=True, mmap=True)
    model = MigrationGNN(ModelConfig(**shape["model"]), shape["num_nodes"], shape["source_domain"],
                         shape["target_domain"], node_embeddings=MappedTables(state))
    model.load_state_dict({k: v for k, v in state.items() if not k.startswith("embeddings.")})
    model.eval()
    return model


# ---------------------------------------------------------------- files of the rounds


def _file(work_uri: str, stage: str, part: int, name: str) -> str:
    return storage.join(work_uri, stage, f"p{part:05d}", f"{name}.npy")


def _save(uri: str, array: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    fs, path = storage.filesystem(uri)
    storage.write_bytes(fs, path, buffer.getvalue())


def _load(uri: str, rows: np.ndarray | None = None) -> np.ndarray:
    """A file's rows ``rows`` (all when None): memory-mapped locally, so only those
    rows are read; downloaded whole from an object store."""
    if storage.is_local(uri):
        array = np.load(storage.local_path(uri), mmap_mode="r", allow_pickle=False)
    else:
        fs, path = storage.filesystem(uri)
        with fs.open_input_file(path) as f:
            array = np.load(io.BytesIO(f.read()), allow_pickle=False)
    return np.asarray(array if rows is None else array[rows])


def node_ranges(partitions_dir: str) -> TypedRanges:
    """Each partition's range of graph ids per node type."""
    return TypedRanges(storage.read_json(os.path.join(partitions_dir, PART_CONFIG))["node_map"])


class PartitionEdges:
    """One partition's in-edges of its own nodes, per edge type, in graph ids."""

    def __init__(self, partitions_dir: str, part: int):
        from graphtrain.graph.dgl_compat import import_dgl
        from graphtrain.graph.typed_csc import TypedInCSC, _dst, _src

        dgl = import_dgl()
        local, _, _, book, _, _, _ = dgl.distributed.load_partition(os.path.join(partitions_dir, PART_CONFIG), part)
        csc = TypedInCSC(local, book)
        del local
        self.edges = {}  # etype -> (src graph ids, dst rows among own nodes, graph edge ids)
        for src_t, rel, dst_t in csc.etypes:
            indptr, src, eids = csc.graph.adj_tensors("csc", etype=(_src(src_t), rel, _dst(dst_t)))
            dst = torch.repeat_interleave(torch.arange(len(indptr) - 1), torch.diff(indptr.long()))
            self.edges[(src_t, rel, dst_t)] = (src.long().numpy(), dst.numpy(), eids.long().numpy())


# ---------------------------------------------------------------- the rounds (Ray tasks)


def local_partitions(partitions_uri: str, part: int | None = None) -> str:
    """A local copy of the partition artifact (the folder itself when local): its
    config, node maps and edge weights, and partition ``part``'s graph only."""
    return storage.materialize(partitions_uri, skip=reader_skips(part))


def _checkpoint_dir(checkpoint_uri: str) -> str:
    from graphtrain.train import checkpoint

    return checkpoint.resolve(checkpoint_uri)


def input_round(work_uri: str, partitions_uri: str, checkpoint_uri: str, part: int) -> None:
    """h^(0) and the dataset ids of the partition's own nodes."""
    partitions_dir = local_partitions(partitions_uri, part)
    ranges, mapping = node_ranges(partitions_dir), IdMapping.load(partitions_dir, edges=False)
    model = load_model_mapped(_checkpoint_dir(checkpoint_uri))
    for nt in model.num_nodes:
        typed = np.arange(*ranges.range(nt, part))
        ids = mapping.nodes_to_dataset(nt, typed)
        _save(_file(work_uri, "ids", part, nt), ids)
        with torch.no_grad():
            _save(_file(work_uri, "layer0", part, nt), model.input_embeddings(nt, torch.from_numpy(ids)).numpy())


def layer_round(work_uri: str, partitions_uri: str, checkpoint_uri: str, part: int, layer: int) -> None:
    """h^(layer) of the partition's own nodes from h^(layer - 1) of them and their in-neighbours."""
    from graphtrain.graph.batch import LayerEdges

    partitions_dir = local_partitions(partitions_uri, part)
    ranges, model = node_ranges(partitions_dir), load_model_mapped(_checkpoint_dir(checkpoint_uri))
    edges = PartitionEdges(partitions_dir, part).edges
    mode = model.config.edge_weights
    weights = PartitionedEdgeWeights(partitions_dir, list(edges)) if mode != "none" else None
    own = {nt: int(ranges.counts(nt)[part]) for nt in model.num_nodes}
    # Per node type: its own nodes first (rows of this partition's file), then the halo
    # nodes the in-edges come from, in graph id order.
    halo = {nt: np.zeros(0, np.int64) for nt in model.num_nodes}
    for (src_t, _, _), (src, _, _) in edges.items():
        first, end = ranges.range(src_t, part)
        halo[src_t] = np.union1d(halo[src_t], src[(src < first) | (src >= end)])
    x = {}
    for nt in model.num_nodes:
        own_rows = _load(_file(work_uri, f"layer{layer - 1}", part, nt))
        fetched = rows_of(work_uri, f"layer{layer - 1}", nt, ranges, nt, halo[nt], width=own_rows.shape[1])
        x[nt] = torch.from_numpy(np.concatenate([own_rows, fetched]).astype(np.float32, copy=False))
    layer_edges, layer_weights = {}, {}
    for etype, (src, dst, eids) in edges.items():
        src_t = etype[0]
        first, end = ranges.range(src_t, part)
        inside = (src >= first) & (src < end)
        local = np.where(inside, src - first, own[src_t] + np.searchsorted(halo[src_t], src))
        layer_edges[etype] = (torch.from_numpy(local), torch.from_numpy(dst.astype(np.int64)))
        if weights is not None:
            layer_weights[etype] = torch.from_numpy(alpha_of(weights(etype, eids), mode))
    with torch.no_grad():
        out, source_message = model._layer(layer - 1, x, LayerEdges(layer_edges, own, layer_weights))
    for nt, values in out.items():
        _save(_file(work_uri, f"layer{layer}", part, nt), values.numpy())
    if layer == model.config.num_layers:
        message = source_message if source_message is not None else torch.zeros(own[USER], model.config.embedding_dim)
        _save(_file(work_uri, "source_message", part, USER), message.numpy())


def final_round(work_uri: str, checkpoint_uri: str, part: int, domains: list[str]) -> None:
    """The scoring vectors of the partition's own nodes: ``users@d`` and ``items@d``."""
    model = load_model_mapped(_checkpoint_dir(checkpoint_uri))
    layers = model.config.num_layers
    final = {}
    for nt in model.num_nodes:
        stacked = sum(_load(_file(work_uri, f"layer{layer}", part, nt)).astype(np.float64) for layer in range(layers + 1))
        final[nt] = torch.from_numpy((stacked / (layers + 1)).astype(np.float32))
    with torch.no_grad():
        for d in domains:
            nt = item_type(d)
            items = final[nt]
            if model.item_bias is not None:
                ids = torch.from_numpy(_load(_file(work_uri, "ids", part, nt)))
                items = torch.cat([items, model.item_bias[nt](ids)], 1)
            _save(_file(work_uri, "final", part, f"items@{d}"), items.numpy())
        message = torch.from_numpy(_load(_file(work_uri, "source_message", part, USER)))
        for d in domains:
            _save(_file(work_uri, "final", part, f"users@{d}"), model.user_representation(final[USER], message, d).numpy())


def run_rounds(work_uri: str, partitions_uri: str, checkpoint_uri: str, domains: list[str], num_layers: int) -> int:
    """Every round, one Ray task per partition, each round after the last; returns P."""
    from graphtrain.ray_env import actor_runtime_env, ensure_ray

    ray = ensure_ray()
    parts = int(storage.read_json(os.path.join(local_partitions(partitions_uri), PART_CONFIG))["num_parts"])
    task = {"max_retries": TASK_RETRIES, "runtime_env": actor_runtime_env()}
    args = (work_uri, partitions_uri, checkpoint_uri)
    ray.get([ray.remote(input_round).options(**task).remote(*args, p) for p in range(parts)])
    for layer in range(1, num_layers + 1):
        ray.get([ray.remote(layer_round).options(**task).remote(*args, p, layer) for p in range(parts)])
    ray.get([ray.remote(final_round).options(**task).remote(work_uri, checkpoint_uri, p, domains) for p in range(parts)])
    return parts


# ---------------------------------------------------------------- gathering, by dataset id


def rows_of(work_uri: str, stage: str, name: str, ranges: TypedRanges, ntype: str, typed: np.ndarray,
            width: int | None = None) -> np.ndarray:
    """Rows of ``stage``'s per-partition files ``name`` for graph ids ``typed`` of
    ``ntype``: from each owner's file, only those rows. ``width``: the row width, for
    when ``typed`` may be empty."""
    owner, at = ranges.owners(ntype, typed)
    out = None if width is None else np.empty((len(typed), width), dtype=np.float32)
    for q in np.unique(owner):
        wanted = np.flatnonzero(owner == q)
        rows = _load(_file(work_uri, stage, int(q), name), at[wanted])
        if out is None:
            out = np.empty((len(typed), *rows.shape[1:]), dtype=rows.dtype)
        out[wanted] = rows
    return out if out is not None else np.zeros((0,), np.float32)


def gather_rows(work_uri: str, partitions_dir: str, stage: str, name: str, ntype: str, ids: np.ndarray,
                mapping: IdMapping | None = None) -> np.ndarray:
    """Rows of ``stage``'s per-partition files ``name`` for the dataset ids ``ids``."""
    mapping = mapping or IdMapping.load(partitions_dir, edges=False)
    return rows_of(work_uri, stage, name, node_ranges(partitions_dir), ntype, mapping.nodes_to_partition(ntype, ids))
