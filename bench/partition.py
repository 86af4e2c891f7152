"""The hash partitioner (Ray tasks) against DGL's ``partition_graph`` (one process).

For each size, generated logs (``bench/ingest.py``'s generator) are ingested once,
then partitioned into ``--parts`` partitions by ``graphtrain partition --method
random`` (DGL's ``partition_graph`` in the driver: the baseline) and ``--method
hash``, each as a user runs it (``python -m graphtrain.cli partition`` in a process
of its own that joins this bench's Ray instance). Per method it records wall time
and the peak RSS of the driver and of the largest other Ray process (a hash task).
The ratios are hash / random at each size, and each method's largest / smallest
size driver peak.

    python bench/partition.py --sizes 1000000 4000000 16000000

Writes bench/results/partition.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import write_result  # noqa: E402
from bench.ingest import _in_subprocess, generate  # noqa: E402
from bench.scale import _cli, _meta, _stage  # noqa: E402

METHODS = ("random", "hash")


def run_size(rows: int, parts: int, work: str) -> dict:
    raw, dataset = os.path.join(work, "raw"), os.path.join(work, "dataset")
    os.makedirs(raw)
    _in_subprocess(generate, rows, raw)
    _cli("ingest", "--input", raw, "--output", dataset, "--source-domain", "books", "--target-domain", "movies")
    shutil.rmtree(raw)
    meta = _meta(dataset)
    train_edges = sum(n.get("train", 0) for n in meta["edges"].values())
    print(f"{rows:,} interactions, {train_edges:,} train edges", flush=True)
    stages: dict = {}
    for method in METHODS:
        output = os.path.join(work, f"partitions-{method}")
        args = ("partition", "--dataset", dataset, "--output", output, "--num-parts", str(parts), "--method", method)
        _stage(method, lambda args=args: _cli(*args), stages)
        with open(os.path.join(output, "graphtrain_partition.json")) as f:
            stages[method]["method_recorded"] = json.load(f)["method"]
        shutil.rmtree(output)
    ours, base = stages["hash"], stages["random"]
    ratios = {
        "seconds": round(ours["seconds"] / base["seconds"], 3),
        "driver_peak": round(ours["peak_gib_by_role"]["driver"] / base["peak_gib_by_role"]["driver"], 3),
    }
    return {"rows": rows, "train_edges": train_edges, "parts": parts, "methods": stages, "hash_over_random": ratios}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 4_000_000, 16_000_000])
    parser.add_argument("--parts", type=int, default=2)
    args = parser.parse_args(argv)
    from graphtrain.ray_env import ensure_ray

    ray = ensure_ray()
    os.environ["GT_BENCH_RAY_ADDRESS"] = ray.get_runtime_context().gcs_address
    runs = []
    try:
        for rows in args.sizes:
            work = tempfile.mkdtemp(prefix="graphtrain-bench-partition-")
            try:
                runs.append(run_size(rows, args.parts, work))
            finally:
                shutil.rmtree(work, ignore_errors=True)
    finally:
        ray.shutdown()
    growth = {m: round(runs[-1]["methods"][m]["peak_gib_by_role"]["driver"]
                       / runs[0]["methods"][m]["peak_gib_by_role"]["driver"], 3) for m in METHODS}
    print(f"{'rows':>12} {'method':>7} {'seconds':>8} {'driver GiB':>11} {'largest other GiB':>18}")
    for run in runs:
        for m in METHODS:
            stage = run["methods"][m]
            others = {r: g for r, g in stage["peak_gib_by_role"].items() if r not in ("driver", "bench")}
            print(f"{run['rows']:>12,} {m:>7} {stage['seconds']:>8.1f} {stage['peak_gib_by_role']['driver']:>11.2f} "
                  f"{max(others.values(), default=0):>18.2f}")
        print(f"{'':>12} hash / random: time {run['hash_over_random']['seconds']}, "
              f"driver peak {run['hash_over_random']['driver_peak']}")
    print(f"driver peak, largest / smallest size: {growth}")
    last = runs[-1]["hash_over_random"]
    write_result("partition", "hash / random driver peak RSS at the largest size", last["driver_peak"], 1.0,
                 {"sizes": args.sizes, "parts": args.parts}, {"runs": runs, "driver_growth": growth})


if __name__ == "__main__":
    main()
