"""Runs in its own process (a Ray instance cannot share a process with the test
session's): a simulated 2-node cluster (ray.cluster_utils.Cluster), 2 graph-server
partitions, 2 DistGraph clients on different nodes, then Ray Train with 2 workers.

Prints one JSON line with what the test checks.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile

import numpy as np


def sample_shard(endpoints, partitions, dataset_uri, rank, rank_partitions):
    """One client: every batch of its epoch-0 shard, three per draw (partition-aware: rank r runs on
    partition ``rank_partitions[r]``'s node); returns seeds and sampled edges."""
    import ray
    import torch

    from graphtrain.graph.client import dist_graph_client
    from graphtrain.graph.sampling import EdgeBatchSampler
    from graphtrain.names import USER
    from graphtrain.train.data import TrainData
    from graphtrain.train.edges import load_share, plan_shares

    seeds, sampled = set(), set()
    with dist_graph_client(endpoints, partitions) as source:
        data = TrainData.from_partitions(source.partitions_dir, dataset_uri, source.partitions_uri)  # what a train worker reads
        shares, size = plan_shares(data.edge_counts, rank_partitions)
        shard = load_share(shares[rank], data.load_edges, data.domains, seed=0).epoch(size, 0, 0, rank)
        user_parts = source.graph.get_partition_book().nid2partid(
            torch.from_numpy(source.nodes_to_graph(USER, shard.users)), USER).numpy()
        own = np.mean(user_parts == source.local_partition)
        sampler = EdgeBatchSampler(source, data.domains, data.num_items, fanouts=[5, 5], num_negatives=1)
        rng = np.random.default_rng(rank)
        batches = [shard.rows(begin, 256) for begin in range(0, len(shard.users), 256)]
        for batch in batches:
            seeds |= {(int(d), int(e)) for d, e in zip(batch.domain, batch.edge_ids)}
        for mb in (mb for group in range(0, len(batches), 3) for mb in sampler.sample_group(batches[group:group + 3], rng)):
            layer = mb.layers[0]
            for (src_t, _, dst_t), (src, dst) in layer.edges.items():
                s_ids = mb.input_nodes[src_t][src].numpy()
                d_ids = mb.input_nodes[dst_t][dst].numpy()
                pairs = zip(s_ids, d_ids) if src_t == USER else zip(d_ids, s_ids)
                domain = (dst_t if src_t == USER else src_t).split("@")[1]
                sampled |= {(domain, int(u), int(i)) for u, i in pairs}
        local = source.local_partition
    node = ray.get_runtime_context().get_node_id()
    return {"node": node, "local_partition": local, "own_edges": float(own), "seeds": sorted(seeds), "sampled": sorted(sampled)}


def main() -> None:
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    from graphtrain.ray_env import _loopback_only

    _loopback_only()
    import ray
    from ray.cluster_utils import Cluster
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from graphtrain.config import IngestConfig, ModelConfig, PartitionConfig, TrainConfig
    from graphtrain.data.dataset import Dataset
    from graphtrain.data.ingest import ingest
    from graphtrain.data.synthetic import SyntheticSpec, generate, write_logs
    from graphtrain.graph.partition import partition
    from graphtrain.graph.servers import GraphServerGroup
    from graphtrain.train.trainer import train

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "node_ip_address": "127.0.0.1"})
    cluster.add_node(num_cpus=1, node_ip_address="127.0.0.1")
    cluster.wait_for_nodes()
    ray.init(address=cluster.address)
    work = tempfile.mkdtemp(prefix="graphtrain-multinode-")
    try:
        write_logs(generate(SyntheticSpec(num_users=300, items_per_domain=100, num_clusters=4, seed=5)), f"{work}/raw")
        ingest(IngestConfig(inputs=[f"{work}/raw"], output=f"{work}/dataset", source_domain="books", target_domain="movies"))
        partition(PartitionConfig(dataset=f"{work}/dataset", output=f"{work}/parts", num_parts=2, method="metis"))
        client = ray.remote(num_cpus=1, max_calls=1)(sample_shard)
        with GraphServerGroup(f"{work}/parts", 2, num_clients=2) as group:
            server_nodes = group.endpoints.node_ids
            clients = ray.get(
                [  # client r on partition r's node
                    client.options(scheduling_strategy=NodeAffinitySchedulingStrategy(server_nodes[r], soft=False)).remote(
                        group.endpoints, f"{work}/parts", f"{work}/dataset", r, [0, 1]
                    )
                    for r in range(2)
                ],
                timeout=300,
            )
        dataset = Dataset.load(f"{work}/dataset")
        train_rows = dataset.edges[dataset.edges["split"] == "train"]
        truth = {(d, int(u), int(i)) for d, u, i in zip(train_rows["domain"], train_rows["user_idx"], train_rows["item_idx"])}
        all_seeds = [tuple(s) for c in clients for s in c["seeds"]]
        sampled = {tuple(s) for c in clients for s in c["sampled"]}
        trained = train(
            TrainConfig(
                dataset=f"{work}/dataset", partitions=f"{work}/parts", output=f"{work}/checkpoints",
                source_domain="books", target_domain="movies", model=ModelConfig(embedding_dim=16),
                workers=2, epochs=2, batch_size=256,
            )
        )
        print(
            "MULTINODE_RESULT "
            + json.dumps(
                {
                    "nodes": len(ray.nodes()),
                    "servers": len(server_nodes),
                    "server_nodes": len(set(server_nodes)),
                    "client_nodes": len({c["node"] for c in clients}),
                    # The partition each client sampled in-process, and the one its node serves.
                    "local_partitions": [c["local_partition"] for c in clients],
                    "node_partitions": [server_nodes.index(c["node"]) for c in clients],
                    "own_edges": [c["own_edges"] for c in clients],  # share of a client's seeds in its partition
                    "train_edges": len(truth),
                    "seed_count": len(all_seeds),
                    "distinct_seeds": len(set(all_seeds)),
                    "sampled": len(sampled),
                    "sampled_not_true": len(sampled - truth),
                    "trained_epochs": trained["metrics"]["epoch"] + 1,
                    "checkpoint": trained["checkpoint"],
                }
            ),
            flush=True,
        )
    finally:
        ray.shutdown()
        cluster.shutdown()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
