"""Per-edge-type draws on a DGL partition (no graph servers: the partition is loaded here)."""

import collections
import os

import numpy as np
import pytest
import torch

from graphtrain.config import PartitionConfig
from graphtrain.graph.dgl_compat import import_dgl
from graphtrain.graph.partition import PART_CONFIG, partition
from graphtrain.graph.typed_csc import TypedInCSC


@pytest.fixture(scope="module")
def loaded_partition(tiny_dataset_uri, tmp_path_factory):
    """Partition 0 of a 2-partition split of the tiny dataset, and its partition book."""
    dgl = import_dgl()
    parts = str(tmp_path_factory.mktemp("typed_csc") / "partitions")
    partition(PartitionConfig(dataset=tiny_dataset_uri, output=parts, num_parts=2, method="random"))
    graph, _, _, book, _, _, _ = dgl.distributed.load_partition(os.path.join(parts, PART_CONFIG), 0, load_feats=False)
    return graph, book


def _typed_edges(graph, book):
    """(edge type id, id within the type) -> (source, destination ids within their
    types) of every edge of a partition, translated by DGL's own id maps."""
    from dgl import EID, NID

    src, dst = graph.edges()
    _, typed_nid = book.map_to_per_ntype(graph.ndata[NID])
    etype, typed_eid = book.map_to_per_etype(graph.edata[EID])
    rows = zip(etype.tolist(), typed_eid.tolist(), typed_nid[src].tolist(), typed_nid[dst].tolist())
    return {(t, e): (s, d) for t, e, s, d in rows}


def _check_draws(graph, book, index, fanout):
    """Sample every node of the partition once; every drawn edge is an edge of the
    partition, and each node gets min(fanout, in-degree) edges of each in-edge type."""
    from dgl import NID

    nodes = graph.ndata[NID][graph.ndata["inner_node"].bool()]
    ntypes, typed = book.map_to_per_ntype(nodes)
    draw = index.sample({nt: typed[ntypes == t] for t, nt in enumerate(book.ntypes)}, fanout)
    assert len(draw.edges) == len(book.canonical_etypes)
    edges = _typed_edges(graph, book)
    drawn = collections.Counter()
    for t, (src, dst, eid) in enumerate(draw.edges):
        assert src.dtype == dst.dtype == eid.dtype == index.idtype
        for s, d, e in zip(src.tolist(), dst.tolist(), eid.tolist()):
            assert edges[t, e] == (s, d)
            drawn[t, d] += 1
        assert len(set(eid.tolist())) == len(eid)  # without replacement
    inner = set(zip(ntypes.tolist(), typed.tolist()))
    dst_type = [book.ntypes.index(dst_t) for _, _, dst_t in book.canonical_etypes]
    in_degree = collections.Counter((t, d) for (t, _), (_, d) in edges.items())
    expected = {(t, d): min(fanout, n) for (t, d), n in in_degree.items() if (dst_type[t], d) in inner}
    assert dict(drawn) == expected
    # the case that tells per-type draws from a shared fanout: nodes with > fanout in-edges of two types
    rich = collections.Counter((dst_type[t], d) for (t, d), n in expected.items() if n == fanout)
    assert any(count == 2 for count in rich.values())


def test_draws_the_fanout_per_edge_type(loaded_partition):
    graph, book = loaded_partition
    index = TypedInCSC(graph, book)
    assert index.idtype == torch.int32  # the tiny graph's ids fit
    _check_draws(graph, book, index, fanout=3)


class _BookWithTotals:
    """The two totals ``id_dtype`` reads; a graph of 2**31 nodes cannot be built here."""

    def __init__(self, nodes, edges):
        self.nodes, self.edges = nodes, edges

    def _num_nodes(self):
        return self.nodes

    def _num_edges(self):
        return self.edges


def test_ids_are_int32_only_while_every_node_and_edge_id_fits():
    from graphtrain.graph.typed_csc import id_dtype

    largest = torch.iinfo(torch.int32).max
    assert id_dtype(_BookWithTotals(largest, largest)) == torch.int32
    assert id_dtype(_BookWithTotals(largest + 1, 10)) == torch.int64
    assert id_dtype(_BookWithTotals(10, largest + 1)) == torch.int64


def test_draws_from_a_partition_in_any_edge_order(loaded_partition):
    """The same partition with its edges renumbered at random (DGL numbers them type by
    type): in-edges of different types interleave, and the draws are the same."""
    from dgl import EID, ETYPE, NID

    dgl = import_dgl()
    graph, book = loaded_partition
    src, dst = graph.edges()
    order = torch.from_numpy(np.random.default_rng(0).permutation(graph.num_edges()))
    mixed = dgl.graph((src[order], dst[order]), num_nodes=graph.num_nodes())
    for key in (NID, "inner_node"):
        mixed.ndata[key] = graph.ndata[key]
    for key in (EID, ETYPE):
        mixed.edata[key] = graph.edata[key][order]
    _check_draws(mixed, book, TypedInCSC(mixed, book), fanout=3)


def test_refuses_nodes_of_another_partition(loaded_partition):
    """A request for ids outside the partition fails with the range, not inside DGL's kernel."""
    graph, book = loaded_partition
    index = TypedInCSC(graph, book)
    ntype = book.ntypes[0]
    outside = torch.tensor([index.first_id[ntype] + index.num_own[ntype]])
    with pytest.raises(ValueError, match="outside this partition"):
        index.sample({ntype: outside}, 3)


def test_pack_round_trips_arrays_including_empty_ones():
    """The RPC wire format: many arrays as one tensor, read back as views."""
    from graphtrain.graph.typed_csc import pack, unpack

    arrays = [torch.tensor([3, 1, 2]), torch.zeros(0, dtype=torch.int64), torch.tensor([7]), torch.zeros(0, dtype=torch.int64)]
    packed = pack(arrays)
    assert packed.dtype == torch.int64 and packed.dim() == 1
    back = unpack(packed)
    assert len(back) == len(arrays)
    assert all(torch.equal(a, b) for a, b in zip(arrays, back))
    assert unpack(pack([])) == []
    small = [torch.tensor([5, 6], dtype=torch.int32), torch.zeros(0, dtype=torch.int32)]
    packed = pack(small, torch.int32)
    assert packed.dtype == torch.int32
    assert all(torch.equal(a, b) for a, b in zip(small, unpack(packed)))
    with pytest.raises(ValueError, match="expected all torch.int64"):
        pack(small)
