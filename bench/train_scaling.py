"""Training throughput scaling: `graphtrain train` on 2 simulated nodes vs 1, same run.

The sampler alone is measured by ``bench/scaling.py``; this measures what cluster
retraining gains: the real Ray Train path (graph-server actors, DistGraph clients,
DDP over gloo) on ``ray.cluster_utils.Cluster``'s two 1-CPU nodes, with

  one_node    1 partition, 1 train worker
  two_nodes   2 partitions (one graph server per node), 2 train workers, worker r
              on partition r's node
  efficiency  two_nodes seeds/s / (2 x one_node seeds/s), of the medians over
              ``--repeats`` alternating runs

and, as the reference for what sampling costs, the same loop without graph servers or
Ray (``train_worker`` on an in-process copy of the whole graph in each of 1 or 2
processes, DDP over gloo on loopback; the idle Ray cluster stays up meanwhile):

  inprocess_ddp   efficiency of 2 processes vs 1

Seeds/s is the last epoch's (the first warms up): rank 0's seeds / its epoch's wall
time, times the workers (shards are equal and DDP steps in lockstep). Validation runs
between epochs and is not timed. Each step's time is split into sampling (the batch,
RPC included) and the rest (forward, backward with DDP's gradient all-reduce, optimiser).

    python bench/train_scaling.py [--graph sport_cloth] [--epochs 2] [--repeats 2] [--pinned]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2")  # Ray Train polls workers; 2 s per report by default
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import write_result  # noqa: E402
from bench.sampling import SHARED, build, graph_domains  # noqa: E402
from bench.scaling import simulated_cluster  # noqa: E402
from graphtrain.net import free_port  # noqa: E402


def _config(dataset: str, partitions: str, output: str, workers: int, args):
    from graphtrain.config import TrainConfig

    source, target = graph_domains(args.graph)
    return TrainConfig(
        dataset=dataset, partitions=partitions, output=output, source_domain=source, target_domain=target,
        workers=workers, epochs=args.epochs, batch_size=args.batch_size, patience=0,
    )


def _last_epoch(history: list[dict], workers: int) -> dict:
    """The last epoch's throughput (rank 0's x workers) and per-step split."""
    last = history[-1]
    steps = last["steps"]
    return {
        "workers": workers,
        "total": workers * last["seeds_per_s"],
        "rank0_seeds_per_s": last["seeds_per_s"],
        "sample_ms_per_step": 1000 * last["sample_seconds"] / steps,
        "rest_ms_per_step": 1000 * (last["epoch_seconds"] - last["sample_seconds"]) / steps,
        "steps": steps,
        "embeddings": last["embeddings"],
    }


def train_run(dataset: str, partitions: str, output: str, workers: int, args) -> dict:
    """One `graphtrain train` on the simulated cluster."""
    from graphtrain import storage
    from graphtrain.train.trainer import train

    summary = train(_config(dataset, partitions, output, workers, args))
    history = storage.read_json(storage.join(summary["last_checkpoint"], "state.json"))["history"]
    return {**_last_epoch(history, workers), "run_seconds": summary["seconds"]}


def _inprocess_worker(rank: int, workers: int, port: int, config, out: str) -> None:
    import torch
    import torch.distributed as dist

    from graphtrain.data.dataset import Dataset
    from graphtrain.graph.build import train_graph
    from graphtrain.graph.sampling import LocalGraphSource
    from graphtrain.train.loop import train_worker

    torch.set_num_threads(1)
    if workers > 1:
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=workers)
    dataset = Dataset.load(config.dataset)
    history = train_worker(config, dataset, LocalGraphSource(train_graph(dataset)), rank=rank, world_size=workers)
    if rank == 0:
        with open(out, "w") as f:
            json.dump(history, f)
    if workers > 1:
        dist.destroy_process_group()


def inprocess_run(dataset: str, work: str, workers: int, args) -> dict:
    """The same loop in ``workers`` plain processes, each with the whole graph in-process."""
    import torch.multiprocessing as mp

    port = free_port()
    out = os.path.join(work, f"inprocess_{workers}.json")
    config = _config(dataset, "unused", "unused", workers, args)
    mp.start_processes(_inprocess_worker, args=(workers, port, config, out), nprocs=workers, start_method="spawn")
    with open(out) as f:
        return _last_epoch(json.load(f), workers)


def _describe(run: dict) -> str:
    return f"{run['total']:,.0f} seeds/s (ms/step: sample {run['sample_ms_per_step']:.0f}, rest {run['rest_ms_per_step']:.0f})"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--graph", default="sport_cloth" if os.path.isdir(SHARED) else "generated:200000")
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--epochs", type=int, default=2, help="the last one is timed")
    parser.add_argument("--repeats", type=int, default=2, help="alternating one-node / two-node runs")
    parser.add_argument("--pinned", action="store_true", help="pin each node, and all it starts, to one core")
    parser.add_argument("--name", default="train_scaling", help="results in bench/results/<name>.json")
    args = parser.parse_args(argv)
    if args.epochs < 2:
        parser.error(f"--epochs must be at least 2 (the first warms up), got {args.epochs}")

    from graphtrain.config import PartitionConfig
    from graphtrain.graph.partition import partition

    with simulated_cluster(args.pinned):
        work = tempfile.mkdtemp(prefix="graphtrain-bench-train-scaling-")
        try:
            dataset = build(args.graph, work)
            for parts in (1, 2):
                partition(PartitionConfig(dataset=dataset, output=f"{work}/partitions{parts}", num_parts=parts, method="metis"))
            ones, twos, inprocess = [], [], []
            for k in range(args.repeats):
                ones.append(train_run(dataset, f"{work}/partitions1", f"{work}/one_{k}", 1, args))
                twos.append(train_run(dataset, f"{work}/partitions2", f"{work}/two_{k}", 2, args))
                inprocess.append([inprocess_run(dataset, work, workers, args) for workers in (1, 2)])
        finally:
            shutil.rmtree(work, ignore_errors=True)
    for k, (a, b) in enumerate(zip(ones, twos)):
        print(f"run {k}: one node {_describe(a)}; two nodes {_describe(b)}; efficiency {b['total'] / (2 * a['total']):.2f}")
    for k, (a, b) in enumerate(inprocess):
        print(
            f"run {k} in-process DDP: 1 process {_describe(a)}; 2 processes {_describe(b)}; "
            f"efficiency {b['total'] / (2 * a['total']):.2f}"
        )
    one = statistics.median(r["total"] for r in ones)
    two = statistics.median(r["total"] for r in twos)
    reference = statistics.median(b["total"] / (2 * a["total"]) for a, b in inprocess)
    print(
        f"{args.graph}: median training seeds/s one node {one:,.0f}; two nodes {two:,.0f}; scaling efficiency "
        f"{two / (2 * one):.2f}; in-process DDP reference (no graph servers) {reference:.2f}"
    )
    write_result(
        args.name, "seeds/s", two, 2 * one,
        {"graph": args.graph, "one_node_runs": ones, "two_nodes_runs": twos, "inprocess_ddp_runs": inprocess,
         "inprocess_ddp_efficiency": reference, "batch_size": args.batch_size,
         "epochs": args.epochs, "repeats": args.repeats, "nodes": 2, "cpus_per_node": 1, "pinned": args.pinned},
    )


if __name__ == "__main__":
    main()
