"""The hash partitioner (Ray tasks) writes what DGL's partition loader accepts."""

import json
import os

import numpy as np
import pytest

from graphtrain.config import PartitionConfig
from graphtrain.graph.hash_partition import Layout
from graphtrain.graph.partition import IdMapping, PART_CONFIG, choose_method, partition, read_info
from graphtrain.names import etype_key

pytestmark = pytest.mark.usefixtures("ray_session")


@pytest.mark.parametrize("n,parts", [(1, 1), (7, 3), (1000, 4), (997, 2), (2, 5)])  # (2, 5): empty partitions
def test_layout_is_a_balanced_bijection(n, parts):
    layout = Layout({"user": n}, ["user"], [], parts, seed=3)
    part, rank = layout.part_and_rank("user", np.arange(n))
    counts = np.bincount(part, minlength=parts)
    np.testing.assert_array_equal(counts, layout.count[0])
    assert counts.max() - counts.min() <= 1
    typed = layout.typed_id("user", part, rank)
    np.testing.assert_array_equal(np.sort(typed), np.arange(n))  # one typed id per node
    # the inverse: partition p's typed ids, in order, name these dataset indices
    inverse = np.concatenate([layout.own_dataset_ids("user", p) for p in range(parts)])
    np.testing.assert_array_equal(inverse[typed], np.arange(n))


def test_hash_partitions_load_in_dgl_and_hold_every_train_edge_once(tiny_dataset_uri, tiny_dataset, tmp_path,
                                                                   monkeypatch):
    from graphtrain.graph.build import train_graph
    from graphtrain.graph.dgl_compat import import_dgl

    dgl = import_dgl()
    out = str(tmp_path / "parts")
    summary = partition(PartitionConfig(dataset=tiny_dataset_uri, output=out, num_parts=3, method="hash"))
    assert summary["method"] == "hash" and read_info(out)["method"] == "hash"
    graph = train_graph(tiny_dataset)
    assert summary["num_edges"] == graph.num_edges()
    mapping = IdMapping.load(out)
    monkeypatch.setenv("DGL_DIST_DEBUG", "1")  # DGL checks every inner node and edge's partition
    owned = {et: [] for et in graph.canonical_etypes}
    for p in range(3):
        local, _, _, book, _, ntypes, etypes = dgl.distributed.load_partition(os.path.join(out, PART_CONFIG), p)
        inner = local.edata["inner_edge"].bool()
        etype_of, typed_eid = book.map_to_per_etype(local.edata[dgl.EID][inner])
        src, dst = local.edges()
        ntype_of, typed_nid = book.map_to_per_ntype(local.ndata[dgl.NID])
        assert bool(local.ndata["inner_node"].bool()[dst[inner]].all())  # owned edges point at own nodes
        for e, et in enumerate(book.canonical_etypes):
            rows = (etype_of == e).numpy()
            s_ids = typed_nid[src[inner]][rows].numpy()
            d_ids = typed_nid[dst[inner]][rows].numpy()
            dataset_eids = mapping.edges_to_dataset(et, typed_eid[rows].numpy())
            owned[et].append(np.stack([mapping.nodes_to_dataset(et[0], s_ids), mapping.nodes_to_dataset(et[2], d_ids),
                                       dataset_eids], 1))
    for et in graph.canonical_etypes:
        got = np.concatenate(owned[et])
        u, v = (t.numpy() for t in graph.edges(etype=et))
        expected = np.stack([u, v, graph.edges(form="eid", etype=et).numpy()], 1)
        # every train edge exactly once, with its own dataset edge id
        np.testing.assert_array_equal(got[np.lexsort(got.T[::-1])], expected[np.lexsort(expected.T[::-1])])
        assert etype_key(et)


def test_auto_takes_metis_for_small_graphs(tiny_dataset_uri, tmp_path):
    assert choose_method(PartitionConfig(dataset=tiny_dataset_uri, output=str(tmp_path / "p"))) == "metis"


@pytest.mark.parametrize("method", ["metis", "hash"])
def test_partitions_hold_what_train_workers_read(rated_dataset_uri, tmp_path, method):
    """Per partition: the train edges of its users, its items' counts, its edges' weights
    in graph edge order; together, every train edge once and the dataset's counts."""
    from graphtrain.data.dataset import Dataset
    from graphtrain.graph import train_shards
    from graphtrain.names import USER, canonical_etypes, etype_domain

    tiny_dataset = Dataset.load(rated_dataset_uri)
    out = str(tmp_path / "parts")
    partition(PartitionConfig(dataset=rated_dataset_uri, output=out, num_parts=3, method=method))
    with open(os.path.join(out, PART_CONFIG)) as f:
        config = json.load(f)
    mapping = IdMapping.load(out)
    domains = sorted(tiny_dataset.domains)
    counts = train_shards.train_edge_counts(out)
    assert len(counts) == 3 and sum(counts) == sum(len(tiny_dataset.split_edges("train", d)[0]) for d in domains)
    user_ranges = np.cumsum([0] + [end - start for start, end in config["node_map"][USER]])
    got = []
    for part in range(3):
        edges = train_shards.read_train_edges(out, part)
        typed_users = mapping.nodes_to_partition(USER, edges["user_idx"])
        assert ((typed_users >= user_ranges[part]) & (typed_users < user_ranges[part + 1])).all()  # its own users
        got += list(zip(edges["domain"].tolist(), edges["user_idx"].tolist(), edges["item_idx"].tolist(), edges["edge_id"].tolist()))
    expected = []
    for d_idx, d in enumerate(domains):
        users, items = tiny_dataset.split_edges("train", d)
        expected += list(zip([d_idx] * len(users), users.tolist(), items.tolist(), range(len(users))))
    assert sorted(got) == sorted(expected)
    popularity = train_shards.item_popularity(out, domains, {d: tiny_dataset.num_items(d) for d in domains})
    for d in domains:
        np.testing.assert_array_equal(popularity[d], np.bincount(tiny_dataset.split_edges("train", d)[1],
                                                                 minlength=tiny_dataset.num_items(d)))
    weights = train_shards.PartitionedEdgeWeights(out, canonical_etypes(domains))
    for etype in canonical_etypes(domains):
        graph_eids = np.arange(sum(end - start for start, end in config["edge_map"][etype_key(etype)]))
        expected_w = tiny_dataset.train_edge_weights(etype_domain(etype))[mapping.edges_to_dataset(etype, graph_eids)]
        np.testing.assert_array_equal(weights(etype, graph_eids), expected_w)
        assert len(np.unique(expected_w)) > 1
