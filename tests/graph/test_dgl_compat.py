import inspect
import sys

import numpy as np
import pytest
import torch

from graphtrain.graph.dgl_compat import import_dgl


def test_imports_dgl_2_1_with_distributed():
    dgl = import_dgl()
    assert dgl.__version__.startswith("2.1")
    assert hasattr(dgl.distributed, "DistGraph")
    assert hasattr(dgl.distributed, "partition_graph")


def test_graphbolt_stub_is_an_ordinary_module():
    import_dgl()
    stub = sys.modules["dgl.graphbolt"]
    assert stub.__file__.endswith("_graphbolt_stub.py")
    assert not hasattr(stub, "__getattr__")
    assert not hasattr(stub, "no_such_attribute")
    inspect.getmembers(stub)  # what torch.compile / inspect do to every module
    with pytest.raises(NotImplementedError, match="graphbolt"):
        stub.load_from_shared_memory("g")
    assert not isinstance(object(), stub.FusedCSCSamplingGraph)


def _toy_graph(num_users=4, num_items=3, edges=((0, 0), (0, 1), (1, 1), (2, 2), (3, 0), (3, 2))):
    dgl = import_dgl()
    users = torch.tensor([u for u, _ in edges])
    items = torch.tensor([i for _, i in edges])
    return dgl.heterograph(
        {("user", "rates@a", "item@a"): (users, items), ("item@a", "rated_by@a", "user"): (items, users)},
        num_nodes_dict={"user": num_users, "item@a": num_items},
    )


def test_heterograph_and_sampling_return_true_neighbours():
    dgl = import_dgl()
    g = _toy_graph()
    assert g.num_edges(("user", "rates@a", "item@a")) == 6
    frontier = dgl.sampling.sample_neighbors(g, {"user": torch.tensor([0, 3])}, 1)
    src, dst = frontier.edges(etype=("item@a", "rated_by@a", "user"))
    truth = {(0, 0), (1, 0), (0, 3), (2, 3)}
    assert len(src) == 2
    assert {(int(s), int(d)) for s, d in zip(src, dst)} <= truth


@pytest.mark.parametrize("num_parts,method", [(1, "metis"), (2, "random"), (2, "metis")])
def test_partition_graph_returns_a_permutation(tmp_path, num_parts, method):
    dgl = import_dgl()
    dgl.seed(0)
    rng = np.random.default_rng(0)
    # Big enough that a random split leaves nodes of every type in every part.
    g = _toy_graph(60, 30, [(u, int(i)) for u in range(60) for i in rng.choice(30, 3, replace=False)])
    node_map, edge_map = dgl.distributed.partition_graph(
        g, "toy", num_parts, str(tmp_path), part_method=method, balance_edges=True, return_mapping=True
    )
    for ntype in g.ntypes:
        assert np.array_equal(np.sort(node_map[ntype].numpy()), np.arange(g.num_nodes(ntype)))
    for etype in g.canonical_etypes:
        assert np.array_equal(np.sort(edge_map[etype].numpy()), np.arange(g.num_edges(etype)))
    assert (tmp_path / "toy.json").exists()
