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


def _edges_by_global_id(graph):
    """Global edge id -> (global src, global dst, edge type id) of every edge of a partition."""
    from dgl import EID, ETYPE, NID

    src, dst = graph.edges()
    nid = graph.ndata[NID]
    rows = zip(graph.edata[EID].tolist(), nid[src].tolist(), nid[dst].tolist(), graph.edata[ETYPE].tolist())
    return {eid: (s, d, t) for eid, s, d, t in rows}


def _check_draws(graph, book, index, fanout):
    """Sample every node of the partition once; every drawn edge is an edge of the
    partition, and each node gets min(fanout, in-degree) edges of each in-edge type."""
    from dgl import NID

    inner = graph.ndata["inner_node"].bool()
    nodes = graph.ndata[NID][inner]
    src, dst, eids = index.sample(book, nodes, fanout)
    edges = _edges_by_global_id(graph)
    drawn = collections.Counter()
    for s, d, e in zip(src.tolist(), dst.tolist(), eids.tolist()):
        assert edges[e][:2] == (s, d)
        drawn[d, edges[e][2]] += 1
    assert len(set(eids.tolist())) == len(eids)  # without replacement
    in_degree = collections.Counter((d, t) for _, d, t in edges.values())
    inner_ids = set(nodes.tolist())
    expected = {key: min(fanout, n) for key, n in in_degree.items() if key[0] in inner_ids}
    assert dict(drawn) == expected
    # the case that tells per-type draws from a shared fanout: nodes with > fanout in-edges of two types
    rich = collections.Counter(d for (d, _), n in expected.items() if n == fanout)
    assert any(count == 2 for count in rich.values())


def _shares_indices(index, graph) -> bool:
    return index.graph.adj_tensors("csc")[1].data_ptr() == graph.adj_tensors("csc")[1].data_ptr()


def test_draws_the_fanout_per_edge_type(loaded_partition):
    """DGL numbers a partition's edges type by type, so each node's in-edges (in edge
    id order) are already grouped by type: the index shares the partition's arrays."""
    graph, book = loaded_partition
    index = TypedInCSC(graph, book)
    assert _shares_indices(index, graph)
    _check_draws(graph, book, index, fanout=3)


def test_regroups_in_edges_of_mixed_types(loaded_partition):
    """The same partition with its edges renumbered at random: in-edges of different
    types interleave, and the index holds a regrouped copy with the same draws."""
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
    index = TypedInCSC(mixed, book)
    assert not _shares_indices(index, mixed)
    _check_draws(mixed, book, index, fanout=3)
