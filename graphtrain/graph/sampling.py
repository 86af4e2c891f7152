"""Mini-batch neighbourhoods as plain tensors.

A :class:`GraphSource` answers neighbour-sampling requests with per-edge-type id
arrays: :class:`DistGraphSource` through DGL graph servers (``DistGraph``),
:class:`LocalGraphSource` from an in-process DGL graph (tests, the GPU machine
without Ray). :class:`EdgeBatchSampler` turns a batch of positive edges into a
:class:`MiniBatch` the model consumes; :class:`LayerIds` numbers each layer's nodes
(DGL's ``to_block`` without building a graph). The model never sees a DGL object.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Protocol

import numpy as np
import torch

from graphtrain.config import MAX_BATCHES_PER_DRAW
from graphtrain.graph.batch import DomainPairs, Etype, LayerEdges, MiniBatch
from graphtrain.graph.dgl_compat import import_dgl
from graphtrain.graph.dist_neighbors import SampledEdges, sample_in_neighbors
from graphtrain.graph.kernel import id_dtype_for, sample_in_edges
from graphtrain.names import USER, etype_domain, forward_etype, item_type, reverse_etype


class GraphSource(Protocol):
    """Where neighbours come from. Ids passed in and out are the graph's own."""

    def sample_neighbors(self, seeds: dict[str, np.ndarray], fanout: int) -> SampledEdges:
        """Up to ``fanout`` in-edges per seed: per edge type, (src, dst, edge id) arrays."""

    def num_nodes(self, ntype: str) -> int: ...

    def num_edges(self, etype: Etype) -> int: ...

    def nodes_to_graph(self, ntype: str, ids: np.ndarray) -> np.ndarray: ...

    def nodes_to_dataset(self, ntype: str, ids: np.ndarray) -> np.ndarray: ...

    def edges_to_graph(self, etype: Etype, ids: np.ndarray) -> np.ndarray: ...

    def edges_to_dataset(self, etype: Etype, ids: np.ndarray) -> np.ndarray: ...

    has_kvstore: bool  # graph servers that can also hold distributed embedding tables
    local_partition: Optional[int]  # the partition sampled in this process; None: no partitions, or all remote

    def edge_partitions(self, etype: Etype, ids: np.ndarray) -> np.ndarray:
        """The partition holding each edge (graph ids); asked of DistGraph sources only."""

    def seed(self, value: int) -> None:
        """Seed the sampling RNG where it runs in this process."""


class LocalGraphSource:
    """An in-process DGL heterograph whose ids are the dataset's. It samples an int32
    copy of the graph while its counts fit, as the partitions' CSCs do
    (``kernel.id_dtype_for``): DGL's kernel draws faster on int32 ids."""

    has_kvstore = False
    local_partition = None

    def __init__(self, graph):
        graph = graph.astype(id_dtype_for(graph.num_nodes(), graph.num_edges()))
        self.graph = graph
        self._dgl = import_dgl()
        for etype in graph.canonical_etypes:  # the CSC the kernel reads: built now, not in the first batch
            graph.adj_tensors("csc", etype)

    def sample_neighbors(self, seeds, fanout):
        drawn = sample_in_edges(self.graph, {nt: torch.from_numpy(ids) for nt, ids in seeds.items()}, fanout)
        return {
            etype: (src.numpy(), dst.numpy(), eid.numpy())
            for etype, (src, dst, eid) in zip(self.graph.canonical_etypes, drawn)
            if len(src)
        }

    def num_nodes(self, ntype):
        return self.graph.num_nodes(ntype)

    def num_edges(self, etype):
        return self.graph.num_edges(etype)

    def nodes_to_graph(self, ntype, ids):
        return ids

    def nodes_to_dataset(self, ntype, ids):
        return ids

    def edges_to_graph(self, etype, ids):
        return ids

    def edges_to_dataset(self, etype, ids):
        return ids

    def seed(self, value):
        self._dgl.seed(value)


class DistGraphSource:
    """A ``DistGraph`` served by DGL graph servers; ids translated via ``IdMapping``.

    ``has_kvstore`` is False when several servers share a host: DGL names a KVStore
    tensor's shared memory by tensor alone, so co-located servers would collide.
    """

    def __init__(self, dist_graph, id_mapping, has_kvstore: bool = True, partitions_dir: Optional[str] = None,
                 partitions_uri: Optional[str] = None):
        self.graph = dist_graph
        self.mapping = id_mapping
        self.has_kvstore = has_kvstore
        self.partitions_dir = partitions_dir  # the local copy of the artifact's small files
        self.partitions_uri = partitions_uri or partitions_dir  # the artifact itself
        self._dgl = import_dgl()

    @property
    def local_partition(self) -> Optional[int]:
        """The partition this process samples itself (its node's server's, from shared
        memory), or None when every neighbour comes over RPC."""
        if self.graph.local_partition is None:
            return None
        return int(self.graph.get_partition_book().partid)

    def sample_neighbors(self, seeds, fanout):
        return sample_in_neighbors(self.graph, seeds, fanout)

    def edge_partitions(self, etype, ids):
        return self.graph.get_partition_book().eid2partid(torch.from_numpy(ids), etype).numpy()

    def num_nodes(self, ntype):
        return self.graph.num_nodes(ntype)

    def num_edges(self, etype):
        return self.graph.num_edges(etype)

    def nodes_to_graph(self, ntype, ids):
        return self.mapping.nodes_to_partition(ntype, ids)

    def nodes_to_dataset(self, ntype, ids):
        return self.mapping.nodes_to_dataset(ntype, ids)

    def edges_to_graph(self, etype, ids):
        return self.mapping.edges_to_partition(etype, ids)

    def edges_to_dataset(self, etype, ids):
        return self.mapping.edges_to_dataset(etype, ids)

    def seed(self, value):
        """Seed the draws made in this process: DGL samples the client's local partition
        (its Ray node's server's, in shared memory) in the client itself. Neighbours in
        other partitions are drawn by their servers' RNG, shared by all clients."""
        self._dgl.seed(value)


_NO_NODES = np.zeros(0, dtype=np.int64)
# One bit per batch of a draw: the smallest unsigned type of MAX_BATCHES_PER_DRAW bits (uint16 for 16).
_MARK = np.min_scalar_type((1 << MAX_BATCHES_PER_DRAW) - 1).type


class LayerIds:
    """Numbers one layer's nodes: DGL's ``to_block`` on id arrays.

    A layer's destination nodes come first, in their given order, then every other
    source node of the sampled edges once; edges become (source, destination) indices
    into those lists. One lookup table per node type (graph id -> index, -1 when
    unset) is kept across layers and reset after each, so a layer costs a few passes
    over its edges and no sort.
    """

    def __init__(self, num_nodes: dict[str, int]):
        self.tables = {nt: np.full(n, -1, dtype=np.int64) for nt, n in num_nodes.items()}

    def distinct(self, ntype: str, ids: np.ndarray) -> np.ndarray:
        """``ids`` (graph ids of ``ntype``) once each, in no particular order."""
        table = self.tables[ntype]
        once = _each_once(table, ids)
        table[ids] = -1
        return once

    def number(self, dst_nodes: dict[str, np.ndarray], edges: dict[Etype, tuple[np.ndarray, np.ndarray]]):
        """Returns (source nodes per type, local (src, dst) index arrays per edge type)."""
        for nt, ids in dst_nodes.items():
            self.tables[nt][ids] = np.arange(len(ids))
        src_nodes = dict(dst_nodes)
        for nt in {src_t for src_t, _, _ in edges}:
            table = self.tables[nt]
            candidates = np.concatenate([src for (src_t, _, _), (src, _) in edges.items() if src_t == nt])
            new = _each_once(table, candidates[table[candidates] < 0])
            known = dst_nodes.get(nt, _NO_NODES)
            table[new] = len(known) + np.arange(len(new))
            src_nodes[nt] = np.concatenate([known, new]).astype(np.int64, copy=False)  # sources may be int32
        local = {
            (src_t, rel, dst_t): (self.tables[src_t][src], self.tables[dst_t][dst])
            for (src_t, rel, dst_t), (src, dst) in edges.items()
        }
        for nt, ids in src_nodes.items():
            self.tables[nt][ids] = -1
        return src_nodes, local


def _each_once(table: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """One occurrence of each of ``ids``: after ``table[ids] = position`` exactly one
    position of each id reads back its own value. ``table`` is left holding those
    positions; callers overwrite or reset them."""
    at = np.arange(len(ids))
    table[ids] = at
    return ids[table[ids] == at]


# alpha weights of sampled edges: (edge type, graph edge ids) -> float32 per edge
EdgeWeights = Callable[[Etype, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class EdgeBatch:
    """Positive train edges of one batch, in dataset ids."""

    domain: np.ndarray  # domain index per edge
    users: np.ndarray
    items: np.ndarray
    edge_ids: np.ndarray  # position among the domain's train edges (= graph edge id before partitioning)

    def rows(self, begin: int, count: int) -> "EdgeBatch":
        """Edges ``begin`` .. ``begin + count - 1`` (fewer at the end)."""
        rows = slice(begin, begin + count)
        return EdgeBatch(self.domain[rows], self.users[rows], self.items[rows], self.edge_ids[rows])


class EdgeBatchSampler:
    """Samples a multi-layer neighbourhood around a batch of positive edges.

    The batch's own edges (both directions) are removed from the sampled
    neighbourhood, so the model cannot read the answer off the graph.
    """

    def __init__(
        self,
        source: GraphSource,
        domains: list[str],
        num_items: dict[str, int],
        fanouts,
        num_negatives: int,
        negative_weights: Optional[dict[str, np.ndarray]] = None,
        edge_weights: "Optional[dict[str, np.ndarray] | EdgeWeights]" = None,
    ):
        self.source = source
        # alpha weights of sampled edges, by graph edge id; None: plain mean. A dict
        # (domain -> alpha by dataset edge id, models.alpha.edge_alpha) is looked up
        # through the source's edge mapping.
        if isinstance(edge_weights, dict):
            arrays = edge_weights
            edge_weights = lambda etype, ids: arrays[etype_domain(etype)][source.edges_to_dataset(etype, ids)]  # noqa: E731
        self.edge_weights = edge_weights
        self.domains = list(domains)
        self.num_items = dict(num_items)
        self.fanouts = list(fanouts)
        self.num_negatives = num_negatives
        # Negatives are uniform over a domain's items, or drawn in proportion to
        # ``negative_weights[domain]`` (inverse-CDF lookup: one searchsorted per batch).
        self._negative_cdf = {}
        for domain, weights in (negative_weights or {}).items():
            cdf = np.cumsum(np.asarray(weights, dtype=np.float64))
            if len(cdf) != self.num_items[domain] or not cdf[-1] > 0:
                raise ValueError(f"negative_weights[{domain!r}]: need {self.num_items[domain]} weights with a positive sum")
            self._negative_cdf[domain] = cdf / cdf[-1]
        self.node_types = [USER] + [item_type(d) for d in self.domains]
        self.layer_ids = LayerIds({nt: source.num_nodes(nt) for nt in self.node_types})
        # A batch's own edges are excluded by (user, item) pair, so no per-edge table
        # or edge-id mapping is needed (train pairs are unique per domain after ingest's
        # dedupe): key = user * num_items + item, in graph ids.
        self._items_of = {d: source.num_nodes(item_type(d)) for d in self.domains}
        # While a layer's draw is split, bit i marks the nodes whose in-edges batch i
        # wants, when several batches share the draw.
        self._wanted = {nt: np.zeros(source.num_nodes(nt), dtype=_MARK) for nt in self.node_types}

    def draw_negatives(self, domain: str, shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
        cdf = self._negative_cdf.get(domain)
        if cdf is None:
            return rng.integers(0, self.num_items[domain], size=shape)
        return np.minimum(np.searchsorted(cdf, rng.random(shape), side="right"), len(cdf) - 1)

    def sample(self, batch: EdgeBatch, rng: np.random.Generator) -> MiniBatch:
        return self.sample_group([batch], rng)[0]

    def sample_group(self, batches: list[EdgeBatch], rng: np.random.Generator) -> list[MiniBatch]:
        """The mini-batches of ``batches``, their neighbourhoods drawn together: one
        draw per layer for the union of the batches' nodes, so one request per layer
        and remote partition serves them all. Each batch gets every one of its nodes'
        drawn in-edges, as if drawn for it alone; batches of one group share the draw
        of the nodes they have in common."""
        if not 1 <= len(batches) <= MAX_BATCHES_PER_DRAW:
            raise ValueError(f"sample_group: {len(batches)} batches; draw 1 to {MAX_BATCHES_PER_DRAW} at once")
        plans = [self._seeds(batch, rng) for batch in batches]
        neighbourhoods = self.neighbourhoods([seeds for seeds, _, _ in plans], [exclude for _, _, exclude in plans])
        return [
            MiniBatch(input_nodes, layers, self._pairs(batch, seeds, negatives))
            for batch, (seeds, negatives, _), (input_nodes, layers) in zip(batches, plans, neighbourhoods)
        ]

    def _seeds(self, batch: EdgeBatch, rng: np.random.Generator):
        """(output nodes per type, negatives per domain, the batch's own edges per edge type)."""
        seeds: dict[str, np.ndarray] = {USER: np.unique(batch.users)}
        negatives: dict[str, np.ndarray] = {}
        exclude: dict[Etype, np.ndarray] = {}
        for d_idx, domain in enumerate(self.domains):
            rows = batch.domain == d_idx
            if not rows.any():
                continue
            neg = self.draw_negatives(domain, (int(rows.sum()), self.num_negatives), rng)
            negatives[domain] = neg
            seeds[item_type(domain)] = np.unique(np.concatenate([batch.items[rows], neg.ravel()]))
            users = self.source.nodes_to_graph(USER, batch.users[rows])
            items = self.source.nodes_to_graph(item_type(domain), batch.items[rows])
            keys = self._pair_keys(forward_etype(domain), users, items)
            for etype in (forward_etype(domain), reverse_etype(domain)):
                exclude[etype] = keys
        return seeds, negatives, exclude

    def _pairs(self, batch: EdgeBatch, seeds, negatives) -> dict[str, DomainPairs]:
        pairs = {}
        for d_idx, domain in enumerate(self.domains):
            if domain not in negatives:
                continue
            rows = batch.domain == d_idx
            item_seeds = seeds[item_type(domain)]
            pairs[domain] = DomainPairs(
                users=torch.from_numpy(np.searchsorted(seeds[USER], batch.users[rows])),
                pos_items=torch.from_numpy(np.searchsorted(item_seeds, batch.items[rows])),
                neg_items=torch.from_numpy(np.searchsorted(item_seeds, negatives[domain])),
            )
        return pairs

    def neighbourhood(self, seeds: dict[str, np.ndarray], exclude: dict[Etype, np.ndarray]):
        """Sample layer by layer from the output nodes down; return (input node ids, layers)."""
        return self.neighbourhoods([seeds], [exclude])[0]

    def neighbourhoods(self, seeds: list[dict[str, np.ndarray]], excludes: list[dict[Etype, np.ndarray]]):
        """``neighbourhood`` of several batches, each layer drawn once for all of them."""
        frontiers = [{nt: self.source.nodes_to_graph(nt, ids) for nt, ids in s.items()} for s in seeds]
        exclusion = self._exclusion_table(excludes)  # once: every layer's draw is checked against it
        layers: list[list[LayerEdges]] = [[] for _ in frontiers]
        for fanout in reversed(self.fanouts):
            drawn_for = frontiers[0] if len(frontiers) == 1 else self._union(frontiers)
            sampled = self.source.sample_neighbors(drawn_for, fanout)
            for i, (frontier, (edges, weights)) in enumerate(zip(frontiers, self._split(sampled, frontiers, exclusion))):
                src_nodes, local = self.layer_ids.number(frontier, edges)
                layers[i].insert(0, LayerEdges(
                    {etype: (torch.from_numpy(s), torch.from_numpy(d)) for etype, (s, d) in local.items()},
                    {nt: len(frontier.get(nt, ())) for nt in self.node_types},
                    weights,
                ))
                frontiers[i] = {nt: ids for nt, ids in src_nodes.items() if len(ids)}
        return [
            ({nt: torch.from_numpy(self.source.nodes_to_dataset(nt, ids)) for nt, ids in frontier.items()}, batch_layers)
            for frontier, batch_layers in zip(frontiers, layers)
        ]

    def _union(self, frontiers: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
        """Every node of the frontiers once, per node type."""
        union = {}
        for nt in {nt for frontier in frontiers for nt in frontier}:
            union[nt] = self.layer_ids.distinct(nt, np.concatenate([f[nt] for f in frontiers if nt in f]))
        return union

    def _pair_keys(self, etype: Etype, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
        """(user, item) keys of sampled edges of ``etype``, in graph ids."""
        users, items = (src, dst) if etype[0] == USER else (dst, src)
        return users.astype(np.int64) * self._items_of[etype_domain(etype)] + items

    def _split(self, sampled: SampledEdges, frontiers: list[dict[str, np.ndarray]], exclusion: dict):
        """Each batch's (edges, alpha weights) of a layer's draw: the edges into its
        frontier, less its own edges. Bit i of a node's mark says batch i wants its
        in-edges, bit i of a pair's that batch i excludes it, so one pass over the
        draw reads both for every batch."""
        alone = len(frontiers) == 1  # the draw is all the batch's
        if not alone:
            for i, frontier in enumerate(frontiers):
                for nt, ids in frontier.items():
                    self._wanted[nt][ids] |= _MARK(1 << i)
        try:
            split = [({}, {}) for _ in frontiers]
            for etype, (src, dst, graph_eids) in sampled.items():
                excluded = self._excluded_bits(etype, src, dst, exclusion)
                marks = None if alone else self._wanted[etype[2]][dst] & ~excluded
                for i, (edges, weights) in enumerate(split):
                    keep = excluded == 0 if alone else (marks & _MARK(1 << i)) != 0
                    kept_src = src[keep]
                    if not len(kept_src):
                        continue
                    edges[etype] = (kept_src, dst[keep])
                    if self.edge_weights is not None:
                        weights[etype] = torch.from_numpy(np.ascontiguousarray(self.edge_weights(etype, graph_eids[keep]), np.float32))
            return split
        finally:
            if not alone:
                for frontier in frontiers:
                    for nt, ids in frontier.items():
                        self._wanted[nt][ids] = 0

    @staticmethod
    def _exclusion_table(excludes: list[dict[Etype, np.ndarray]]) -> dict[Etype, tuple[np.ndarray, np.ndarray]]:
        """Per edge type, the batches' own (user, item) keys, sorted and distinct, and
        per key the bits of the batches that exclude it (bit i: batch i)."""
        table = {}
        for etype in {et for ex in excludes for et in ex}:
            keys = [ex.get(etype) for ex in excludes]
            if not any(k is not None and len(k) for k in keys):
                continue
            every = np.concatenate([k for k in keys if k is not None])
            owner_bits = np.concatenate([np.full(len(k), 1 << i, dtype=_MARK) for i, k in enumerate(keys) if k is not None])
            distinct, inverse = np.unique(every, return_inverse=True)
            distinct_bits = np.zeros(len(distinct), dtype=_MARK)
            np.bitwise_or.at(distinct_bits, inverse, owner_bits)
            table[etype] = (distinct, distinct_bits)
        return table

    def _excluded_bits(self, etype: Etype, src: np.ndarray, dst: np.ndarray, exclusion: dict) -> np.ndarray:
        """Per sampled edge, bit i set when batch i excludes its (user, item) pair."""
        bits = np.zeros(len(src), dtype=_MARK)
        if etype not in exclusion:
            return bits
        distinct, distinct_bits = exclusion[etype]
        sampled = self._pair_keys(etype, src, dst)
        at = np.minimum(np.searchsorted(distinct, sampled), len(distinct) - 1)
        hit = distinct[at] == sampled
        bits[hit] = distinct_bits[at[hit]]
        return bits
