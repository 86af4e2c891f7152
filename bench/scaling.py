"""Partition scaling of the distributed sampler on a simulated 2-node Ray cluster.

``ray.cluster_utils.Cluster`` starts two Ray nodes of 1 CPU each on this machine.
With the same graph, batch size and fanouts, in one run:

  one_node    1 partition (its graph server on one node) and 1 DistGraph client
  two_nodes   2 partitions (SPREAD: one graph server per node) and 2 clients, client r
              pinned to partition r's node
  efficiency  two_nodes total seeds/s / (2 x one_node seeds/s), of the medians over
              ``--repeats`` alternating runs (one short run moves by +-20 % here)

Clients wait at a barrier and are timed over one common window. As in training, a
client's shard is partition-aware (its own partition's edges first), it samples its
own node's partition in-process (shared memory) and the other node's over RPC, and it
draws ``--batches-per-draw`` batches' neighbourhoods at once (one request per layer
and remote partition for all of them).

In two_nodes both graph servers answer the other node's client on the cores the
clients need, and Ray's daemons run there too; one_node's server has nothing to
answer and its daemons have the idle second core. Read the efficiency as a lower
bound for machines whose nodes have cores to spare for their server.

``--pinned`` pins each node to one core instead: its raylet, and so every worker and
graph server it starts, runs on that core only, as on real one-CPU machines. A
server then waits for its own client's time slice before it answers the other
node, and that core idles meanwhile (``machine_busy_cores`` in the results).

    python bench/scaling.py [--graph sport_cloth] [--batches 1200] [--repeats 3] [--pinned] [--batches-per-draw 16]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import sys
import tempfile

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import write_result  # noqa: E402
from bench.sampling import SHARED, build, ours_dist  # noqa: E402
from graphtrain.config import TrainConfig  # noqa: E402


@contextlib.contextmanager
def _pinned_to(core: int):
    """This process (and what it starts meanwhile) on one core: a simulated node's CPU."""
    allowed = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {core})
    try:
        yield
    finally:
        os.sched_setaffinity(0, allowed)


@contextlib.contextmanager
def simulated_cluster(pinned: bool):
    """Two 1-CPU Ray nodes on this machine (``ray.cluster_utils.Cluster``), bound to
    127.0.0.1, with this process connected; yields the ``ray`` module. ``pinned``: each
    node, and all it starts, on a core of its own."""
    from graphtrain.ray_env import _loopback_only

    _loopback_only()
    import ray
    from ray.cluster_utils import Cluster

    cores = sorted(os.sched_getaffinity(0))
    if pinned and len(cores) < 2:
        sys.exit(f"--pinned needs 2 cores, one per node; this process may use {cores}")
    cluster = Cluster()
    try:
        for core in cores[:2] if pinned else (None, None):
            # A pinned node's raylet, and every worker and graph server it starts, inherit its core.
            with _pinned_to(core) if pinned else contextlib.nullcontext():
                cluster.add_node(num_cpus=1, node_ip_address="127.0.0.1")
        ray.init(address=cluster.address)
        yield ray
    finally:
        ray.shutdown()
        cluster.shutdown()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--graph", default="sport_cloth" if os.path.isdir(SHARED) else "generated:500000")
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--fanouts", type=lambda t: tuple(int(x) for x in t.split(",")), default=(10, 10))
    # 1200: 75 draws of 16 batches per client, so where the clients' last draws end
    # weighs little in the window (300 was 19 draws: efficiency 0.80 and 0.85 in
    # consecutive 5-repeat runs at 300 and 1200).
    parser.add_argument("--batches", type=int, default=1200, help="batches timed per client (epoch after epoch)")
    parser.add_argument("--repeats", type=int, default=3, help="alternating one-node / two-node runs")
    parser.add_argument("--pinned", action="store_true", help="pin each node, and all it starts, to one core")
    parser.add_argument("--batches-per-draw", type=int, default=TrainConfig.batches_per_draw,
                        help="batches per neighbour draw, as in training (1: each alone)")
    parser.add_argument("--name", default="scaling", help="results in bench/results/<name>.json")
    args = parser.parse_args(argv)

    with simulated_cluster(args.pinned) as ray:
        work = tempfile.mkdtemp(prefix="graphtrain-bench-scaling-")
        try:
            uri = build(args.graph, work)
            common = (args.fanouts, args.batch_size, args.batches, args.batches_per_draw)
            ones, twos = [], []
            for _ in range(args.repeats):
                ones.append(ours_dist(ray, uri, work, 1, "metis", *common, clients=1))
                twos.append(ours_dist(ray, uri, work, 2, "metis", *common, clients=2))
        finally:
            shutil.rmtree(work, ignore_errors=True)
    one = statistics.median(r["total"] for r in ones)
    two = statistics.median(r["total"] for r in twos)
    for k, (a, b) in enumerate(zip(ones, twos)):
        print(f"run {k}: one node {a['total']:,.0f} seeds/s; two nodes {b['total']:,.0f} "
              f"({', '.join(f'{c:,.0f}' for c in b['per_client'])} per client); efficiency {b['total'] / (2 * a['total']):.2f}")
    print(
        f"{args.graph}: median seeds/s one node (1 partition, 1 client) {one:,.0f}; "
        f"two nodes (2 partitions, 2 clients) {two:,.0f}; scaling efficiency {two / (2 * one):.2f}"
    )
    write_result(
        args.name, "seeds/s", two, 2 * one,
        {"graph": args.graph, "one_node_runs": ones, "two_nodes_runs": twos, "batch_size": args.batch_size,
         "fanouts": list(args.fanouts), "batches": args.batches, "repeats": args.repeats, "nodes": 2, "cpus_per_node": 1,
         "pinned": args.pinned, "batches_per_draw": args.batches_per_draw},
    )


if __name__ == "__main__":
    main()
