import numpy as np
import pytest
import torch

from graphtrain.config import MAX_BATCHES_PER_DRAW
from graphtrain.graph.build import train_graph
from graphtrain.graph.sampling import EdgeBatchSampler, LocalGraphSource
from graphtrain.names import USER, forward_etype, item_type, reverse_etype
from graphtrain.train.edges import TrainEdges, load_share, plan_shares


def _sampler(dataset, fanouts=(5, 5), negatives=2):
    source = LocalGraphSource(train_graph(dataset))
    num_items = {d: dataset.num_items(d) for d in dataset.domains}
    return source, EdgeBatchSampler(source, dataset.domains, num_items, fanouts, negatives)


def _first_batch(dataset, size=64, begin=0):
    edges = TrainEdges.from_dataset(dataset)
    return edges.epoch(len(edges), epoch=0, seed=0, rank=0).rows(begin, size)


def test_sampled_edges_are_true_neighbours_and_exclude_the_batch(tiny_dataset):
    source, sampler = _sampler(tiny_dataset)
    batch = _first_batch(tiny_dataset)
    mb = sampler.sample(batch, np.random.default_rng(0))
    assert len(mb.layers) == 2
    _check_true_neighbours_without_the_batch(tiny_dataset, batch, mb)


def _check_true_neighbours_without_the_batch(tiny_dataset, batch, mb):
    train = tiny_dataset.edges[tiny_dataset.edges["split"] == "train"]
    true_pairs = {d: set(zip(p["user_idx"], p["item_idx"])) for d, p in train.groupby("domain")}
    banned = {(tiny_dataset.domains[d], u, i) for d, u, i in zip(batch.domain, batch.users, batch.items)}
    for layer, nodes in _layers_with_node_ids(mb):
        for (src_t, _, dst_t), (src, dst) in layer.edges.items():
            assert int(dst.max()) < layer.num_dst[dst_t]
            s_ids, d_ids = nodes[src_t][src.numpy()], nodes[dst_t][dst.numpy()]
            if src_t == USER:
                domain = dst_t.split("@")[1]
                pairs = zip(s_ids, d_ids)
            else:
                domain = src_t.split("@")[1]
                pairs = zip(d_ids, s_ids)
            for u, i in pairs:
                assert (u, i) in true_pairs[domain]
                assert (domain, u, i) not in banned


def _layers_with_node_ids(mb):
    """Each layer, from the input layer upwards, with its source nodes' graph ids per
    type (its destinations are their prefix)."""
    nodes = {nt: ids.numpy() for nt, ids in mb.input_nodes.items()}
    for layer in mb.layers:
        yield layer, nodes
        nodes = {nt: ids[: layer.num_dst.get(nt, 0)] for nt, ids in nodes.items()}


def _layer_edge_sets(mb):
    """Per layer: (layer, its source node ids per type, {(edge type, destination id):
    set of source ids}), in graph ids."""
    sets = []
    for layer, nodes in _layers_with_node_ids(mb):
        found = {}
        for etype, (src, dst) in layer.edges.items():
            for s, d in zip(nodes[etype[0]][src.numpy()], nodes[etype[2]][dst.numpy()]):
                found.setdefault((etype, int(d)), set()).add(int(s))
        sets.append((layer, nodes, found))
    return sets


@pytest.mark.parametrize("group_size", [3, MAX_BATCHES_PER_DRAW])  # the largest group uses every bit of the marks
def test_a_shared_draw_gives_each_batch_all_its_nodes_edges(tiny_dataset, group_size):
    """sample_group draws each layer once for several batches: every batch still gets,
    for each of its nodes, min(fanout, in-degree) true in-edges per edge type (less
    its own edges), and nodes the batches share got one draw."""
    source, sampler = _sampler(tiny_dataset, fanouts=(3, 3), negatives=1)
    batches = [_first_batch(tiny_dataset, 48, 48 * k) for k in range(group_size)]
    assert all(len(batch.users) == 48 for batch in batches)
    minibatches = sampler.sample_group(batches, np.random.default_rng(0))
    assert len(minibatches) == group_size
    g = source.graph
    per_batch, own_edges = [], []
    for batch, mb in zip(batches, minibatches):
        _check_true_neighbours_without_the_batch(tiny_dataset, batch, mb)
        assert mb.num_seeds == len(batch.users)
        own = set()  # (edge type, destination, source) of the batch's edges, both directions
        for d, u, i in zip(batch.domain, batch.users.tolist(), batch.items.tolist()):
            domain = tiny_dataset.domains[d]
            own |= {(forward_etype(domain), i, u), (reverse_etype(domain), u, i)}
        touched = {(etype, dst) for etype, dst, _ in own}
        sets = _layer_edge_sets(mb)
        per_batch.append(sets)
        own_edges.append(own)
        # Every destination of every layer: each edge type brings min(3, in-degree) edges,
        # unless the batch's own edges end there (they are taken out after the draw).
        checked = 0
        for layer, nodes, found in sets:
            for etype in g.canonical_etypes:
                for d in nodes[etype[2]][: layer.num_dst.get(etype[2], 0)].tolist():
                    if (etype, d) in touched:
                        continue
                    assert len(found.get((etype, d), ())) == min(3, int(g.in_degrees(d, etype=etype))), (etype, d)
                    checked += 1
        assert checked > 100
    # A node in two batches' output layer was drawn once: their sources differ only by
    # the edges one of the two batches took out as its own.
    output_0, output_1 = per_batch[0][-1][2], per_batch[1][-1][2]
    shared = set(output_0) & set(output_1)
    assert len(shared) > 5
    for etype, d in shared:
        for src in output_0[etype, d] ^ output_1[etype, d]:
            assert (etype, d, src) in own_edges[0] | own_edges[1]


def test_a_group_larger_than_the_marks_hold_is_refused(tiny_dataset):
    _, sampler = _sampler(tiny_dataset)
    batches = [_first_batch(tiny_dataset, 8, 8 * k) for k in range(MAX_BATCHES_PER_DRAW + 1)]
    with pytest.raises(ValueError, match=f"draw 1 to {MAX_BATCHES_PER_DRAW} at once"):
        sampler.sample_group(batches, np.random.default_rng(0))


def test_pairs_point_at_the_batch_edges_and_negatives_are_in_range(tiny_dataset):
    _, sampler = _sampler(tiny_dataset)
    batch = _first_batch(tiny_dataset)
    mb = sampler.sample(batch, np.random.default_rng(0))
    out_nodes = {nt: ids[: mb.layers[-1].num_dst.get(nt, 0)] for nt, ids in mb.input_nodes.items()}
    assert mb.num_seeds == len(batch.users)
    for d_idx, domain in enumerate(tiny_dataset.domains):
        rows = batch.domain == d_idx
        pairs = mb.pairs[domain]
        assert np.array_equal(out_nodes[USER][pairs.users].numpy(), batch.users[rows])
        assert np.array_equal(out_nodes[item_type(domain)][pairs.pos_items].numpy(), batch.items[rows])
        negatives = out_nodes[item_type(domain)][pairs.neg_items]
        assert negatives.shape == (rows.sum(), 2)
        assert int(negatives.max()) < tiny_dataset.num_items(domain)


def test_forward_and_reverse_edges_share_ids(tiny_dataset):
    g = train_graph(tiny_dataset)
    for domain in tiny_dataset.domains:
        u, i = g.edges(etype=forward_etype(domain), order="eid")
        ri, ru = g.edges(etype=reverse_etype(domain), order="eid")
        assert torch.equal(u, ru) and torch.equal(i, ri)


def test_shards_cover_every_edge_once_and_have_equal_length(tiny_dataset):
    edges = TrainEdges.from_dataset(tiny_dataset)
    plan, size = plan_shares([len(edges)], [None, None, None])  # an in-process graph: no rank has a partition
    shards = [load_share(share, lambda q: edges, edges.domains, seed=0).epoch(size, 1, 0, r) for r, share in enumerate(plan)]
    assert len({len(s.users) for s in shards}) == 1
    seen = set()
    for s in shards:
        seen |= set(zip(s.domain, s.edge_ids))
    assert len(seen) == len(edges.users)


def _edge_keys(shard):
    return list(zip(shard.domain.tolist(), shard.edge_ids.tolist()))


def _positions(edges):
    """(domain, edge id) -> row in ``edges``."""
    return {k: row for row, k in enumerate(_edge_keys(edges))}


def test_partition_aware_shares_keep_ranks_on_their_partition_and_every_edge_once(tiny_dataset):
    edges = TrainEdges.from_dataset(tiny_dataset)
    n = len(edges.users)
    owners = (np.arange(n) % 10 < 6).astype(np.int64)  # partition 1 holds 60 % of the edges, 0 the rest
    by_partition = [edges.take(np.flatnonzero(owners == q)) for q in (0, 1)]
    counts = [len(p) for p in by_partition]
    position = _positions(edges)
    for rank_partitions in ([0, 1], [1, 1, 0], [1, None, 1], [0, 0], [None, None, None]):
        world = len(rank_partitions)
        shares, size = plan_shares(counts, rank_partitions)
        assert size == -(-n // world)
        read: list[int] = []

        def load(q, read=read):
            read.append(q)
            return by_partition[q]

        loaded = [load_share(share, load, edges.domains, seed=0) for share in shares]
        keys = [k for s in loaded for k in _edge_keys(s)]
        assert len(keys) == n and set(keys) == set(_edge_keys(edges))  # every edge in exactly one share
        for r, (share, partition) in enumerate(zip(loaded, rank_partitions)):
            assert len(share) <= size
            padded = share.epoch(size, epoch=3, seed=0, rank=r)
            assert len(padded.users) == size and set(_edge_keys(padded)) == set(_edge_keys(share))
            if partition is not None:
                own = sum(owners[position[k]] == partition for k in _edge_keys(share))
                available = counts[partition] // rank_partitions.count(partition)
                assert own >= min(size, available) - 1, (rank_partitions, r)  # a rank's own edges come first
        if rank_partitions == [0, 1]:
            assert sorted(read) == [0, 1, 1]  # rank 0 borrows from partition 1; rank 1 reads only its own
    # the plan is fixed, every epoch reshuffles it
    share = load_share(plan_shares(counts, [0, 1])[0][0], lambda q: by_partition[q], edges.domains, seed=0)
    assert _edge_keys(share.epoch(size, 0, 0, 0)) != _edge_keys(share.epoch(size, 1, 0, 0))


def test_popularity_negatives_follow_the_weights(tiny_dataset):
    source = LocalGraphSource(train_graph(tiny_dataset))
    num_items = {d: tiny_dataset.num_items(d) for d in tiny_dataset.domains}
    weights = {d: np.zeros(n) for d, n in num_items.items()}
    for w in weights.values():
        w[[3, 7]] = [1.0, 3.0]
    sampler = EdgeBatchSampler(source, tiny_dataset.domains, num_items, (5, 5), 1, negative_weights=weights)
    drawn = sampler.draw_negatives("movies", (4000, 1), np.random.default_rng(0))
    assert set(np.unique(drawn)) == {3, 7}
    assert abs((drawn == 7).mean() - 0.75) < 0.03
    uniform = EdgeBatchSampler(source, tiny_dataset.domains, num_items, (5, 5), 1)
    assert len(np.unique(uniform.draw_negatives("movies", (4000, 1), np.random.default_rng(0)))) > 100


def test_batch_apply_reaches_every_tensor(tiny_dataset):
    """What moving a batch to a GPU (pinned, non-blocking) relies on; on CPU it stays put."""
    source = LocalGraphSource(train_graph(tiny_dataset))
    num_items = {d: tiny_dataset.num_items(d) for d in tiny_dataset.domains}
    weights = {d: np.ones(len(tiny_dataset.split_edges("train", d)[0]), dtype=np.float32) for d in tiny_dataset.domains}
    sampler = EdgeBatchSampler(source, tiny_dataset.domains, num_items, [3, 3], 2, edge_weights=weights)
    mb = sampler.sample(_first_batch(tiny_dataset), np.random.default_rng(0))
    seen = []
    doubled = mb.apply(lambda t: seen.append(t) or t * 2)
    # ids per node type; src, dst and weight per edge type and layer; three per domain's pairs
    expected = len(mb.input_nodes) + sum(3 * len(layer.edges) for layer in mb.layers) + 3 * len(mb.pairs)
    assert len(seen) == expected and all(layer.weights.keys() == layer.edges.keys() for layer in mb.layers)
    assert torch.equal(doubled.pairs["movies"].neg_items, 2 * mb.pairs["movies"].neg_items)
    etype = next(iter(mb.layers[0].weights))
    assert torch.equal(doubled.layers[0].weights[etype], 2 * mb.layers[0].weights[etype])
    assert mb.to(torch.device("cpu")) is mb


def test_layer_ids_number_destinations_first_then_each_new_source_once():
    from graphtrain.graph.sampling import LayerIds

    ids = LayerIds({"u": 10, "i": 8})
    dst = {"u": np.array([7, 2]), "i": np.array([5])}
    edges = {
        ("i", "rated_by", "u"): (np.array([3, 5, 3, 6]), np.array([7, 7, 2, 2])),
        ("u", "rates", "i"): (np.array([9, 2, 9]), np.array([5, 5, 5])),
    }
    src_nodes, local = ids.number(dst, edges)
    assert src_nodes["u"][:2].tolist() == [7, 2] and sorted(src_nodes["u"][2:].tolist()) == [9]
    assert src_nodes["i"][:1].tolist() == [5] and sorted(src_nodes["i"][1:].tolist()) == [3, 6]
    for (src_t, rel, dst_t), (src, dst_ids) in edges.items():
        s, d = local[(src_t, rel, dst_t)]
        assert src_nodes[src_t][s].tolist() == src.tolist()  # indices lead back to the same ids
        assert dst[dst_t][d].tolist() == dst_ids.tolist()
    assert all((t == -1).all() for t in ids.tables.values())  # reset for the next layer
