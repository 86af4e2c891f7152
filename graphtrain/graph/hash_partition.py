"""A partitioner that runs as Ray tasks, none of which holds the whole graph.

It writes the partition format DGL's graph servers load (``partition_graph``'s:
a JSON config with per-partition ranges of homogeneous node and edge ids, and per
partition a homogeneous ``graph.dgl`` with ``_ID``/``_TYPE``/``inner_node``/
``part_id`` on nodes and ``_ID``/``_TYPE``/``inner_edge`` on edges), so servers,
clients and samplers cannot tell which partitioner ran.

Node assignment is closed-form, so any task can place any node without asking:
each node type's indices go through a seeded affine permutation ``perm(i) = (a i +
b) mod N`` (``a`` coprime with ``N``); node ``i`` belongs to partition ``perm(i) % P``
at rank ``perm(i) // P``. Each partition gets ``N/P`` nodes of each type (±1).
An edge belongs to its destination's partition (in-edges are what servers sample).

Three rounds of tasks, one per edge file of the dataset, then one per partition:

1. ``count_file``: per domain, the file's train edges, and per (partition, edge
   type) how many it owns. The driver turns these into offsets: O(files × P).
2. ``route_file``: gives every train edge its dataset edge id and its per-type edge
   id in its owner partition, and writes it to the buckets of the (one or two)
   partitions its endpoints belong to.
3. ``assemble_partition``: reads one partition's bucket, O(E/P) edges: its own
   nodes, the halo nodes at the other end of their edges, in-edges of own nodes
   (``inner_edge`` 1) and out-edges to halo nodes (0), as DGL's ``partition_graph``
   with one halo hop does. It writes ``part<p>/graph.dgl`` and its slice of the id
   mapping.
"""

from __future__ import annotations

import io
import math
import os
import tempfile
import zlib

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from graphtrain import storage
from graphtrain.graph import train_shards
from graphtrain.graph.partition import MAPPING_DIR
from graphtrain.names import USER, etype_key, forward_etype, item_type, reverse_etype

TASK_RETRIES = 2
BUCKETS = "hash-buckets"


# ---------------------------------------------------------------- closed-form layout


def _multiplier(n: int, seed: int) -> int:
    """An odd-looking multiplier near n / golden ratio, coprime with n."""
    a = max(1, int(n * 0.6180339887498949) + (seed % 7))
    while math.gcd(a, n) != 1:
        a += 1
    return a % n or 1


class Layout:
    """Where every node and edge goes: small (types × partitions) tables only."""

    def __init__(self, num_nodes: dict[str, int], ntypes: list[str], etypes: list[tuple], num_parts: int, seed: int):
        self.num_parts, self.ntypes, self.etypes = num_parts, list(ntypes), list(etypes)
        self.num_nodes = {nt: int(num_nodes[nt]) for nt in ntypes}
        self.perm = {}
        for nt in ntypes:
            n = max(1, self.num_nodes[nt])
            salt = zlib.crc32(f"{seed}:{nt}".encode())
            a = _multiplier(n, salt)
            self.perm[nt] = (a, salt % n, pow(a, -1, n) if n > 1 else 0, n)
        # count[t][p]: nodes of type t in partition p (perm values congruent to p mod P)
        self.count = np.array(
            [[max(0, (self.num_nodes[nt] - p + num_parts - 1) // num_parts) for p in range(num_parts)] for nt in ntypes],
            dtype=np.int64,
        )
        self.typed_start = np.concatenate([np.zeros((len(ntypes), 1), np.int64), np.cumsum(self.count, 1)], 1)
        # homogeneous ids: partition-major, then node type, then rank
        per_part = self.count.T.reshape(-1)  # (p, t) in order
        self.homo_start = np.concatenate([[0], np.cumsum(per_part)]).astype(np.int64)  # index p * T + t

    def part_and_rank(self, ntype: str, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        a, b, _, n = self.perm[ntype]
        perm = (idx.astype(np.int64) * a + b) % n
        return perm % self.num_parts, perm // self.num_parts

    def typed_id(self, ntype: str, part: np.ndarray, rank: np.ndarray) -> np.ndarray:
        return self.typed_start[self.ntypes.index(ntype)][part] + rank

    def homo_id(self, ntype: str, part: np.ndarray, rank: np.ndarray) -> np.ndarray:
        t = self.ntypes.index(ntype)
        return self.homo_start[part * len(self.ntypes) + t] + rank

    def own_dataset_ids(self, ntype: str, part: int) -> np.ndarray:
        """Dataset indices of partition ``part``'s nodes of ``ntype``, in typed-id order."""
        _, b, a_inv, n = self.perm[ntype]
        rank = np.arange(self.count[self.ntypes.index(ntype)][part], dtype=np.int64)
        return ((rank * self.num_parts + part - b) % n * a_inv) % n

    def homo_types(self, homo: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(partition, node type id) of homogeneous node ids."""
        slot = np.searchsorted(self.homo_start, homo, side="right") - 1
        return slot // len(self.ntypes), (slot % len(self.ntypes)).astype(np.int32)

    def node_map(self) -> dict:
        T = len(self.ntypes)
        return {nt: [[int(self.homo_start[p * T + t]), int(self.homo_start[p * T + t + 1])]
                     for p in range(self.num_parts)] for t, nt in enumerate(self.ntypes)}


# ---------------------------------------------------------------- round 1 and 2: edge files


def _train_edges(fs: pafs.FileSystem, path: str, domains: list[str]) -> dict[str, tuple[np.ndarray, ...]]:
    """Per domain, the file's train (user_idx, item_idx, weight) in file order."""
    table = pq.read_table(path, columns=["user_idx", "item_idx", "domain", "split", "weight"], filesystem=fs)
    table = table.filter(pc.equal(table["split"].cast(pa.string()), "train"))
    domain = table["domain"].cast(pa.string()).to_numpy(zero_copy_only=False)
    users = table["user_idx"].to_numpy().astype(np.int64)
    items = table["item_idx"].to_numpy().astype(np.int64)
    weights = table["weight"].to_numpy().astype(np.float32)
    return {d: (users[domain == d], items[domain == d], weights[domain == d]) for d in domains}


def _owners(layout: Layout, domain: str, users: np.ndarray, items: np.ndarray):
    user_part, user_rank = layout.part_and_rank(USER, users)
    item_part, item_rank = layout.part_and_rank(item_type(domain), items)
    return user_part, user_rank, item_part, item_rank


def count_file(dataset_uri: str, storage_options: dict, path: str, layout: Layout, domains: list[str]) -> dict:
    """Train edges per domain, and owned edges per (partition, edge type), of one file."""
    fs, _ = storage.filesystem(dataset_uri, storage_options or None)
    owned = np.zeros((layout.num_parts, len(layout.etypes)), dtype=np.int64)
    train = {}
    for domain, (users, items, _) in _train_edges(fs, path, domains).items():
        user_part, _, item_part, _ = _owners(layout, domain, users, items)
        owned[:, layout.etypes.index(forward_etype(domain))] += np.bincount(item_part, minlength=layout.num_parts)
        owned[:, layout.etypes.index(reverse_etype(domain))] += np.bincount(user_part, minlength=layout.num_parts)
        train[domain] = len(users)
    return {"train": train, "owned": owned}


def _rank_within(groups: np.ndarray, num_groups: int) -> np.ndarray:
    """For each element, how many earlier elements share its group (a stable cumcount)."""
    order = np.argsort(groups, kind="stable")
    counts = np.bincount(groups, minlength=num_groups)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.empty(len(groups), dtype=np.int64)
    rank[order] = np.arange(len(groups)) - np.repeat(starts, counts)
    return rank


def route_file(dataset_uri: str, work_uri: str, storage_options: dict, path: str, file_no: int, layout: Layout,
               domains: list[str], dataset_offset: dict[str, int], typed_offset: np.ndarray) -> int:
    """Write the file's train edges (``path`` in the dataset's filesystem) to the
    buckets, under ``work_uri``, of their endpoints' partitions.

    ``dataset_offset[d]``: train edges of domain d in earlier files; ``typed_offset[p,
    e]``: per-type id of the first edge of type e owned by p that this file holds."""
    source, _ = storage.filesystem(dataset_uri, storage_options or None)
    fs, root = storage.filesystem(work_uri, storage_options or None)
    P = layout.num_parts
    pieces = []
    for domain, (users, items, weights) in _train_edges(source, path, domains).items():
        if not len(users):
            continue
        user_part, _, item_part, _ = _owners(layout, domain, users, items)
        fwd, rev = layout.etypes.index(forward_etype(domain)), layout.etypes.index(reverse_etype(domain))
        pieces.append({
            "domain": np.full(len(users), domains.index(domain), np.int16),
            "user_idx": users, "item_idx": items, "weight": weights,
            "dataset_eid": dataset_offset[domain] + np.arange(len(users), dtype=np.int64),
            "fwd_eid": typed_offset[item_part, fwd] + _rank_within(item_part, P),
            "rev_eid": typed_offset[user_part, rev] + _rank_within(user_part, P),
            "user_part": user_part.astype(np.int32), "item_part": item_part.astype(np.int32),
        })
    if not pieces:
        return 0
    columns = {k: np.concatenate([p[k] for p in pieces]) for k in pieces[0]}
    table = pa.table(columns)
    for part in range(P):
        touches = (columns["user_part"] == part) | (columns["item_part"] == part)
        if touches.any():
            target = f"{root}/{storage.SCRATCH}/{BUCKETS}/p{part:05d}/f{file_no:06d}.parquet"
            storage.write_bytes(fs, target, _parquet_bytes(table.filter(pa.array(touches))))
    return len(columns["user_idx"])


# ---------------------------------------------------------------- round 3: one partition


def assemble_partition(work_uri: str, storage_options: dict, part: int, layout: Layout, domains: list[str],
                       edge_bases: dict) -> dict:
    """Build and write partition ``part`` from its bucket; returns its figures."""
    from graphtrain.graph.dgl_compat import import_dgl

    dgl = import_dgl()
    import torch

    fs, root = storage.filesystem(work_uri, storage_options or None)
    files = [i.path for i in fs.get_file_info(pafs.FileSelector(f"{root}/{storage.SCRATCH}/{BUCKETS}/p{part:05d}",
                                                                 allow_not_found=True))
             if i.path.endswith(".parquet")]
    table = pq.read_table(sorted(files), filesystem=fs) if files else None
    col = (lambda name: table[name].to_numpy()) if table is not None else (lambda name: np.zeros(0, np.int64))
    domain, users, items = col("domain"), col("user_idx").astype(np.int64), col("item_idx").astype(np.int64)
    user_part, item_part = col("user_part").astype(np.int64), col("item_part").astype(np.int64)
    fwd_eid, rev_eid, dataset_eid = col("fwd_eid"), col("rev_eid"), col("dataset_eid")
    weight = table["weight"].to_numpy() if table is not None else np.zeros(0, np.float32)

    owned, extra, mapping, edge_weights, item_counts = [], [], {}, {}, {}
    for d, name in enumerate(domains):
        rows = domain == d
        u, i = users[rows], items[rows]
        pu, ru = layout.part_and_rank(USER, u)
        pi, ri = layout.part_and_rank(item_type(name), i)
        hu, hi = layout.homo_id(USER, pu, ru), layout.homo_id(item_type(name), pi, ri)
        for etype, src, dst, dst_part, typed in (
            (forward_etype(name), hu, hi, item_part[rows], fwd_eid[rows]),
            (reverse_etype(name), hi, hu, user_part[rows], rev_eid[rows]),
        ):
            e = layout.etypes.index(etype)
            homo = edge_bases["homo"][dst_part, e] + typed - edge_bases["typed"][dst_part, e]
            mine = dst_part == part
            order = np.argsort(typed[mine], kind="stable")
            owned.append((src[mine][order], dst[mine][order], homo[mine][order], e))
            extra.append((src[~mine], dst[~mine], homo[~mine], e))  # out-edges of own sources
            mapping[f"edge:{etype_key(etype)}"] = dataset_eid[rows][mine][order]
            edge_weights[etype] = weight[rows][mine][order]
        own_items = pi == part
        item_counts[name] = (layout.own_dataset_ids(item_type(name), part),
                             np.bincount(ri[own_items], minlength=int(layout.count[layout.ntypes.index(item_type(name))][part])))
    for nt in layout.ntypes:
        mapping[f"node:{nt}"] = layout.own_dataset_ids(nt, part)

    T = len(layout.ntypes)
    first, last = int(layout.homo_start[part * T]), int(layout.homo_start[(part + 1) * T])
    edges = owned + extra
    src = np.concatenate([e[0] for e in edges]) if edges else np.zeros(0, np.int64)
    dst = np.concatenate([e[1] for e in edges]) if edges else np.zeros(0, np.int64)
    eid = np.concatenate([e[2] for e in edges]) if edges else np.zeros(0, np.int64)
    etype_id = np.concatenate([np.full(len(e[0]), e[3], np.int32) for e in edges]) if edges else np.zeros(0, np.int32)
    inner_edge = np.concatenate([np.full(len(e[0]), flag, np.uint8) for group, flag in ((owned, 1), (extra, 0))
                                 for e in group]) if edges else np.zeros(0, np.uint8)
    # owned edges in homogeneous id order, then the out-edges to halo nodes
    n_owned = sum(len(e[0]) for e in owned)
    order = np.concatenate([np.argsort(eid[:n_owned], kind="stable"),
                            n_owned + np.argsort(eid[n_owned:], kind="stable")])
    src, dst, eid, etype_id, inner_edge = src[order], dst[order], eid[order], etype_id[order], inner_edge[order]

    ends = np.concatenate([src, dst])
    halo = np.unique(ends[(ends < first) | (ends >= last)])
    node_ids = np.concatenate([np.arange(first, last, dtype=np.int64), halo])
    node_part, node_type = layout.homo_types(node_ids)

    def local(ids):
        inside = (ids >= first) & (ids < last)
        return np.where(inside, ids - first, (last - first) + np.searchsorted(halo, ids))

    graph = dgl.graph((torch.from_numpy(local(src)), torch.from_numpy(local(dst))), num_nodes=len(node_ids))
    graph.ndata[dgl.NID] = torch.from_numpy(node_ids)
    graph.ndata[dgl.NTYPE] = torch.from_numpy(node_type)
    graph.ndata["inner_node"] = torch.from_numpy((np.arange(len(node_ids)) < last - first).astype(np.uint8))
    graph.ndata["part_id"] = torch.from_numpy(node_part.astype(np.int64))
    graph.edata[dgl.EID] = torch.from_numpy(eid.astype(np.int64))
    graph.edata[dgl.ETYPE] = torch.from_numpy(etype_id)
    graph.edata["inner_edge"] = torch.from_numpy(inner_edge)

    with tempfile.TemporaryDirectory(prefix="graphtrain-part-") as tmp:
        dgl.save_graphs(os.path.join(tmp, "graph.dgl"), [graph])
        dgl.data.utils.save_tensors(os.path.join(tmp, "node_feat.dgl"), {})
        dgl.data.utils.save_tensors(os.path.join(tmp, "edge_feat.dgl"), {})
        for name in ("graph.dgl", "node_feat.dgl", "edge_feat.dgl"):
            with open(os.path.join(tmp, name), "rb") as f:
                storage.write_bytes(fs, f"{root}/part{part}/{name}", f.read())
    own_users = user_part == part  # a train worker reads the edges of its partition's users
    train_edges = {"domain": domain[own_users], "user_idx": users[own_users], "item_idx": items[own_users],
                   "edge_id": dataset_eid[own_users], "weight": weight[own_users]}
    train_shards.write_partition(fs, root, part, train_edges, item_counts, edge_weights)
    buffer = io.BytesIO()
    np.savez(buffer, **mapping)
    storage.write_bytes(fs, f"{root}/{MAPPING_DIR}/part-{part:05d}.npz", buffer.getvalue())
    return {"part": part, "own_nodes": last - first, "halo_nodes": len(halo), "own_edges": n_owned,
            "halo_edges": int(len(eid) - n_owned)}


# ---------------------------------------------------------------- small helpers


def _parquet_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes()

