"""DGL's sampling kernel called directly (graph/kernel.py), on the tiny train graph."""

import collections

import pytest
import torch

from graphtrain.graph.build import train_graph
from graphtrain.graph.kernel import sample_in_edges
from graphtrain.names import USER


@pytest.mark.parametrize("idtype", [torch.int64, torch.int32])
def test_draws_min_of_fanout_and_in_degree_per_edge_type_of_true_edges(tiny_dataset, idtype):
    graph = train_graph(tiny_dataset)
    graph = graph.long() if idtype == torch.int64 else graph.int()
    fanout = 3
    seeds = {nt: torch.arange(graph.num_nodes(nt)) for nt in graph.ntypes}  # int64 seeds, whatever the graph's id type
    drawn = sample_in_edges(graph, seeds, fanout)
    assert len(drawn) == len(graph.canonical_etypes)
    for etype, (src, dst, eid) in zip(graph.canonical_etypes, drawn):
        assert src.dtype == dst.dtype == eid.dtype == idtype
        true_src, true_dst = graph.find_edges(eid, etype=etype)
        assert torch.equal(src, true_src) and torch.equal(dst, true_dst)
        assert len(set(eid.tolist())) == len(eid)  # without replacement
        counts = collections.Counter(dst.tolist())
        in_degree = graph.in_degrees(etype=etype)
        expected = {d: min(fanout, int(n)) for d, n in enumerate(in_degree.tolist()) if n}
        assert dict(counts) == expected
        assert max(expected.values()) == fanout  # some node has more in-edges than the fanout


def test_draws_only_for_the_given_node_types(tiny_dataset):
    graph = train_graph(tiny_dataset)
    users = torch.tensor([0, 1, 2])
    drawn = sample_in_edges(graph, {USER: users}, 2)
    for (_, _, dst_type), (src, dst, _) in zip(graph.canonical_etypes, drawn):
        if dst_type == USER:
            assert set(dst.tolist()) <= {0, 1, 2}
        else:
            assert len(src) == 0
