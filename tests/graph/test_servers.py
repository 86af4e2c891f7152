"""DGL graph servers started by Ray actors, sampled by a DistGraph client in a Ray task."""

import numpy as np
import pytest

from graphtrain.config import PartitionConfig
from graphtrain.errors import GraphServerError
from graphtrain.graph.build import train_graph
from graphtrain.graph.partition import partition
from graphtrain.graph.servers import GraphServerGroup

pytestmark = pytest.mark.usefixtures("ray_session")


def _first_batches(dataset, count=4, size=64):
    """The first ``count`` batches of epoch 0's single shard of train edges."""
    from graphtrain.train.edges import TrainEdges

    edges = TrainEdges.from_dataset(dataset)
    shard = edges.epoch(len(edges), epoch=0, seed=0, rank=0)
    return [shard.rows(begin, size) for begin in range(0, count * size, size)]


def _sample_through_servers(endpoints, partitions, dataset_uri):
    """Runs in a fresh Ray worker process: sample neighbourhoods of 256 train edges,
    the last 128 of them in one shared draw.

    Returns (domain, user, item, weight) per sampled edge, each weight read from the
    partition artifact's memory-mapped edge weights by graph edge id, as training
    reads them, so it shows whether those files are in the graph's edge order; and the
    partition the client sampled in-process, and whether DGL left the worker's SIGINT
    and SIGTERM handlers as they were (Ray stops workers with them)."""
    from graphtrain.data.dataset import Dataset
    from graphtrain.graph.client import DGL_HANDLED_SIGNALS, dist_graph_client, signal_handler
    from graphtrain.graph.sampling import EdgeBatchSampler
    from graphtrain.graph.train_shards import PartitionedEdgeWeights
    from graphtrain.names import USER, canonical_etypes, etype_domain

    dataset = Dataset.load(dataset_uri)
    found = []
    handlers_before = [signal_handler(s) for s in DGL_HANDLED_SIGNALS]
    with dist_graph_client(endpoints, partitions) as source:
        handlers_kept = [signal_handler(s) for s in DGL_HANDLED_SIGNALS] == handlers_before
        num_items = {d: dataset.num_items(d) for d in dataset.domains}
        weights = PartitionedEdgeWeights(source.partitions_dir, canonical_etypes(dataset.domains))
        sampler = EdgeBatchSampler(source, dataset.domains, num_items, fanouts=[4], num_negatives=1, edge_weights=weights)
        rng = np.random.default_rng(0)
        batches = _first_batches(dataset)
        # Two batches alone, then two with one draw per layer for both (sample_group).
        for mb in [sampler.sample(batches[0], rng), sampler.sample(batches[1], rng), *sampler.sample_group(batches[2:], rng)]:
            layer = mb.layers[0]
            for etype, (src, dst) in layer.edges.items():
                src_t, _, dst_t = etype
                s_ids = mb.input_nodes[src_t][src].numpy()
                d_ids = mb.input_nodes[dst_t][dst].numpy()
                users, items = (s_ids, d_ids) if src_t == USER else (d_ids, s_ids)
                found += [(etype_domain(etype), int(u), int(i), float(w)) for u, i, w in zip(users, items, layer.weights[etype].numpy())]
        local = source.local_partition
    return found, local, handlers_kept


def _draw_counts(endpoints, partitions, fanout):
    """Runs in a Ray worker: one draw of ``fanout`` in-neighbours for every node;
    per edge type, the dataset ids of the nodes drawn for and how many each got."""
    from graphtrain.graph.client import dist_graph_client

    with dist_graph_client(endpoints, partitions) as source:
        seeds = {nt: np.arange(source.num_nodes(nt)) for nt in source.graph.ntypes}
        counts = {}
        for etype, (_, dst, _) in source.sample_neighbors(seeds, fanout).items():
            nodes, drawn = np.unique(dst, return_counts=True)
            counts[etype] = (source.nodes_to_dataset(etype[2], nodes), drawn)
    return counts


@pytest.mark.parametrize("method", ["random", "hash"])
def test_distgraph_draws_the_fanout_per_edge_type(ray_session, tiny_dataset_uri, tiny_dataset, tmp_path, method):
    """As DGL's heterograph samplers do: a user with history in both domains gets up
    to ``fanout`` items from each, not ``fanout`` in all. Either partitioner's output."""
    parts = str(tmp_path / "partitions")
    partition(PartitionConfig(dataset=tiny_dataset_uri, output=parts, num_parts=2, method=method))
    client = ray_session.remote(num_cpus=1, max_calls=1)(_draw_counts)
    with GraphServerGroup(parts, 2, num_clients=1) as group:
        counts = ray_session.get(client.remote(group.endpoints, parts, 3), timeout=120)
    graph = train_graph(tiny_dataset)
    assert set(counts) == set(graph.canonical_etypes)
    for etype, (nodes, drawn) in counts.items():
        degree = graph.in_degrees(etype=etype).numpy()
        assert sorted(nodes) == sorted(np.flatnonzero(degree))
        np.testing.assert_array_equal(drawn, np.minimum(degree[nodes], 3))
    # the case that tells per-type draws from a shared fanout: users with > 3 items in each domain
    rich = [graph.in_degrees(etype=et).numpy() > 3 for et in graph.canonical_etypes if et[2] == "user"]
    assert len(rich) == 2 and (rich[0] & rich[1]).sum() > 0


def _check_sampled(found, dataset):
    """Every sampled edge is a train edge and carries that edge's own weight."""
    weight = {}
    for domain in dataset.domains:
        users, items = dataset.split_edges("train", domain)
        weight.update(zip(((domain, int(u), int(i)) for u, i in zip(users, items)), dataset.train_edge_weights(domain)))
    assert len(found) > 500
    assert {f[:3] for f in found} <= weight.keys()
    assert all(weight[f[:3]] == f[3] for f in found)
    assert len({f[3] for f in found}) > 1  # the weights differ, so a mix-up would show


@pytest.mark.parametrize("num_parts,method", [(1, "random"), (2, "random"), (2, "hash")])
def test_distgraph_samples_true_neighbours(ray_session, rated_dataset_uri, tmp_path, num_parts, method):
    from graphtrain.data.dataset import Dataset

    parts = str(tmp_path / "partitions")
    partition(PartitionConfig(dataset=rated_dataset_uri, output=parts, num_parts=num_parts, method=method))
    client = ray_session.remote(num_cpus=1, max_calls=1)(_sample_through_servers)
    with GraphServerGroup(parts, num_parts, num_clients=1) as group:
        assert all(h["running"] for h in group.health())
        assert len(group.endpoints.ip_config.splitlines()) == num_parts
        assert all(line.startswith("127.0.0.1 ") for line in group.endpoints.ip_config.splitlines())
        assert group.endpoints.co_located == (num_parts > 1)
        found, local, handlers_kept = ray_session.get(client.remote(group.endpoints, parts, rated_dataset_uri), timeout=120)
        pids = [h["pid"] for h in group.health()]
    # One node serves every partition: the client samples the first in-process (from
    # its server's shared memory, under a name of its own), the second over RPC.
    assert local == 0
    assert handlers_kept
    _check_sampled(found, Dataset.load(rated_dataset_uri))
    _assert_gone(pids)


@pytest.mark.parametrize("method", ["auto", "hash"])
def test_servers_read_partitions_from_s3(ray_session, rated_dataset_uri, monkeypatch, method):
    """Partitions written to a real S3-protocol server (moto, loopback) and downloaded
    by the graph servers; the credentials reach the actors from the driver's env."""
    import pyarrow.fs as pafs

    from graphtrain.data.dataset import Dataset
    from graphtrain.ray_env import actor_runtime_env
    from tests.s3_server import moto_s3_server

    with moto_s3_server() as options:
        pafs.S3FileSystem(**options).create_dir("parts-bucket")
        for key, value in {
            "AWS_ENDPOINT_URL": f"http://{options['endpoint_override']}", "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1",
        }.items():
            monkeypatch.setenv(key, value)
        parts = "s3://parts-bucket/run/partitions"
        partition(PartitionConfig(dataset=rated_dataset_uri, output=parts, num_parts=1, method=method))
        assert pafs.S3FileSystem(**options).get_file_info("parts-bucket/run/partitions/_SUCCESS").type == pafs.FileType.File
        client = ray_session.remote(num_cpus=1, max_calls=1, runtime_env=actor_runtime_env())(_sample_through_servers)
        with GraphServerGroup(parts, 1, num_clients=1) as group:
            found, _, _ = ray_session.get(client.remote(group.endpoints, parts, rated_dataset_uri), timeout=120)
    _check_sampled(found, Dataset.load(rated_dataset_uri))


def _assert_gone(pids):
    import os
    import time

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        alive = [p for p in pids if os.path.exists(f"/proc/{p}") and "zombie" not in open(f"/proc/{p}/status").read().lower()]
        if not alive:
            return
        time.sleep(0.2)
    raise AssertionError(f"graph server processes still running: {alive}")


def test_server_that_cannot_start_fails_fast_with_its_log(tmp_path):
    broken = tmp_path / "partitions"
    broken.mkdir()
    (broken / "graphtrain.json").write_text("{not json")
    (broken / "id_mapping.npz").write_bytes(b"")
    import time

    started = time.monotonic()
    with pytest.raises(GraphServerError) as err:
        with GraphServerGroup(str(broken), 1, num_clients=1):
            pass
    assert time.monotonic() - started < 60
    assert "exited with code" in str(err.value)


def _sample_twice_with_seeds(endpoints, partitions, dataset_uri, seeds):
    """Runs in a Ray worker: the sampled first layer of the same batches after each seed."""
    from graphtrain.data.dataset import Dataset
    from graphtrain.graph.client import dist_graph_client
    from graphtrain.graph.sampling import EdgeBatchSampler

    dataset = Dataset.load(dataset_uri)
    runs = []
    with dist_graph_client(endpoints, partitions) as source:
        sampler = EdgeBatchSampler(source, dataset.domains, {d: dataset.num_items(d) for d in dataset.domains}, [3], 1)
        for seed in seeds:
            source.seed(seed)
            drawn = []
            for batch in _first_batches(dataset):
                mb = sampler.sample(batch, np.random.default_rng(0))
                drawn += [mb.input_nodes[src_t][src].tolist() for (src_t, _, _), (src, _) in sorted(mb.layers[0].edges.items())]
            runs.append(drawn)
    return runs


def test_seeding_the_client_repeats_its_local_partitions_draws(ray_session, tiny_dataset_uri, tmp_path):
    """One partition on this host: DGL samples it inside the client, so the client's
    seed fixes the neighbours (what lets a resumed Ray run redraw an epoch)."""
    parts = str(tmp_path / "partitions")
    partition(PartitionConfig(dataset=tiny_dataset_uri, output=parts, num_parts=1, method="random"))
    client = ray_session.remote(num_cpus=1, max_calls=1)(_sample_twice_with_seeds)
    with GraphServerGroup(parts, 1, num_clients=1) as group:
        first, again, other = ray_session.get(client.remote(group.endpoints, parts, tiny_dataset_uri, [7, 7, 8]), timeout=120)
    assert first == again
    assert first != other


def test_endpoints_name_shared_memory_per_partition_only_when_servers_share_a_host():
    from graphtrain.graph.servers import ServerEndpoints

    spread = ServerEndpoints(addresses=(("10.0.0.1", 5000), ("10.0.0.2", 5000)), node_ids=("a", "b"))
    assert spread.ip_config == "10.0.0.1 5000\n10.0.0.2 5000\n"
    assert not spread.co_located
    assert [spread.shared_memory_name("g", p) for p in (0, 1)] == ["g", "g"]  # one per host: DGL's own name
    shared = ServerEndpoints(addresses=(("127.0.0.1", 5000), ("127.0.0.1", 5001)), node_ids=("a", "b"))
    assert shared.co_located
    assert [shared.shared_memory_name("g", p) for p in (0, 1)] == ["g-part0", "g-part1"]
    # The local partition is the one served on the client's Ray node, not the first on its IP.
    assert [shared.local_partition(n) for n in ("a", "b", "c", None)] == [0, 1, None, None]
    assert shared.shared_memory_name("g", None) not in {"g", "g-part0", "g-part1"}


def test_endpoints_refuse_two_servers_on_one_address():
    from graphtrain.graph.servers import ServerEndpoints

    with pytest.raises(GraphServerError, match="share an address"):
        ServerEndpoints(addresses=(("127.0.0.1", 5000), ("127.0.0.1", 5000)), node_ids=("a", "b"))
