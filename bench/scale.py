"""Peak memory and time of every stage against input size: which process grows.

For each size, generated logs (``bench/ingest.py``'s generator: users ~ rows/20,
50k items per domain, ~1 % bad and ~2 % repeated rows, 8 Parquet files) go through
the pipeline's stages one by one, each under ``PeakMemory``:

  ingest     IngestConfig (buckets sized from the input)
  partition  PartitionConfig, ``--parts`` partitions, ``--method`` (default auto)
  train      TrainConfig, 2 workers, 1 epoch capped at ``--steps`` steps per epoch,
             validation on ``--validation-users`` users
  export     the best checkpoint -> model artifact, layer-wise over the partitions
  evaluate   EvalConfig capped at ``--eval-users`` test users per group
  serve      one Serve replica, one /recommend request

Each stage but serve runs as a user runs it, ``python -m graphtrain.cli <stage>`` in
a process of its own (the driver) that joins this bench's Ray instance; serve is
deployed from this process. Per stage it records wall time, throughput and the peak
RSS of the largest process of each role (driver; train_worker, graph_server,
serve_replica; ray_worker = other Ray tasks and actors). The baseline is the smallest size: the JSON
gives every peak as a ratio to the smallest size's.

    python bench/scale.py --sizes 1000000 4000000 16000000

Writes bench/results/scale.json and scale.png (peak RSS per role and stage vs size).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import RESULTS, PeakMemory, write_result  # noqa: E402
from bench.ingest import _in_subprocess, generate  # noqa: E402

STAGES = ("ingest", "partition", "train", "export", "evaluate", "serve")


def _stage(name: str, fn, results: dict, self_role: str = "bench") -> object:
    with PeakMemory(self_role=self_role) as memory:
        started = time.perf_counter()
        value = fn()
        seconds = time.perf_counter() - started
    results[name] = {"seconds": round(seconds, 2), "peak_gib_by_role": memory.role_gib(), "tree_peak_gib": memory.peak_gib}
    print(f"  {name:<10} {seconds:8.1f} s   largest process per role (GiB) {memory.role_gib()}", flush=True)
    return value


def _cli(*args: str) -> str:
    """One stage as a user runs it: `graphtrain <stage> ...` in a process of its own
    (the driver), joining this bench's Ray instance."""
    env = {**os.environ, "RAY_ADDRESS": os.environ["GT_BENCH_RAY_ADDRESS"]}
    done = subprocess.run([sys.executable, "-m", "graphtrain.cli", *args], env=env, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"graphtrain {args[0]} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return done.stdout


def run_size(rows: int, args, work: str) -> dict:
    from graphtrain.config import ServeConfig
    from graphtrain.net import free_port
    from graphtrain.pipeline import http_get_json
    from graphtrain.serve import app

    raw = os.path.join(work, "raw")
    os.makedirs(raw)
    _in_subprocess(generate, rows, raw)
    p = {name: os.path.join(work, name) for name in ("dataset", "partitions", "checkpoints", "model", "reports")}
    domains = ["--source-domain", "books", "--target-domain", "movies"]
    stages: dict = {}
    _stage("ingest", lambda: _cli("ingest", "--input", raw, "--output", p["dataset"], *domains), stages)
    meta = _meta(p["dataset"])
    stages["ingest"]["rows_per_s"] = round(rows / stages["ingest"]["seconds"])
    _stage("partition", lambda: _cli("partition", "--dataset", p["dataset"], "--output", p["partitions"],
                                     "--num-parts", str(args.parts), "--method", args.method), stages)
    train_edges = sum(n.get("train", 0) for n in meta["edges"].values())
    stages["partition"]["train_edges_per_s"] = round(train_edges / stages["partition"]["seconds"])
    with open(os.path.join(p["partitions"], "graphtrain_partition.json")) as f:
        stages["partition"]["method"] = json.load(f)["method"]
    _stage("train", lambda: _cli("train", "--dataset", p["dataset"], "--partitions", p["partitions"], "--output",
                                 p["checkpoints"], *domains, "--workers", "2", "--epochs", "1", "--embedding-dim", "32",
                                 "--max-steps-per-epoch", str(args.steps), "--validation-users", str(args.validation_users)),
           stages)
    stages["train"]["steps"] = args.steps
    _stage("export", lambda: _cli("export", "--dataset", p["dataset"], "--checkpoint", p["checkpoints"], "--output", p["model"],
                                  "--partitions", p["partitions"]),
           stages)
    _stage("evaluate", lambda: _cli("evaluate", "--dataset", p["dataset"], "--model", p["model"], "--output", p["reports"],
                                    "--max-users", str(args.eval_users)), stages)
    with open(os.path.join(p["reports"], "report.json")) as f:
        report = json.load(f)
    users = sum(group.get("users", 0) for group in report["models"]["graphtrain"].values())
    stages["evaluate"]["users_per_s"] = round(users / stages["evaluate"]["seconds"], 1)

    def serve_once():
        base = app.start(ServeConfig(model=p["model"], port=free_port()))
        try:
            return http_get_json(f"{base}/recommend?user_id=u1&k=10&domain=movies")
        finally:
            app.stop()

    _stage("serve", serve_once, stages, self_role="driver")
    return {"rows": rows, "rows_kept": meta["rows_kept"], "users": meta["num_users"], "buckets": meta["buckets"],
            "train_edges": train_edges, "stages": stages}


def _meta(dataset: str) -> dict:
    with open(os.path.join(dataset, "meta.json")) as f:
        return json.load(f)


def _ratios(runs: list[dict]) -> dict:
    """Each stage's and role's peak at the largest size over that at the smallest."""
    first, last = runs[0]["stages"], runs[-1]["stages"]
    return {
        stage: {
            role: round(gib / first[stage]["peak_gib_by_role"][role], 2)
            for role, gib in last[stage]["peak_gib_by_role"].items()
            if first[stage]["peak_gib_by_role"].get(role)
        }
        for stage in last
    }


def _plot(runs: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = [r["rows"] for r in runs]
    every = sorted({role for r in runs for s in r["stages"].values() for role in s["peak_gib_by_role"]} - {"gone", "ray_system", "bench"})
    color = {role: f"C{k}" for k, role in enumerate(every)}  # one colour per role in every panel
    fig, axes = plt.subplots(1, len(STAGES), figsize=(3.2 * len(STAGES), 3.6), sharey=True)
    for ax, stage in zip(axes, STAGES):
        roles = sorted({role for r in runs for role in r["stages"][stage]["peak_gib_by_role"]} & set(every))
        for role in roles:
            ax.plot(sizes, [r["stages"][stage]["peak_gib_by_role"].get(role, 0) for r in runs], marker="o", color=color[role])
        ax.set_xscale("log")
        ax.set_title(stage)
        ax.set_xlabel("interactions")
    axes[0].set_ylabel("peak RSS of the largest process (GiB)")
    fig.legend([plt.Line2D([], [], color=color[r], marker="o") for r in every], every, loc="lower center",
               ncol=len(every), fontsize=8)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 4_000_000, 16_000_000])
    parser.add_argument("--parts", type=int, default=2)
    parser.add_argument("--method", default="auto", help="partition method (auto: METIS up to 5M train edges, hash above)")
    parser.add_argument("--steps", type=int, default=20, help="training steps per epoch")
    parser.add_argument("--validation-users", type=int, default=5000)
    parser.add_argument("--eval-users", type=int, default=5000)
    parser.add_argument("--name", default="scale", help="results file bench/results/<name>.json/.png")
    args = parser.parse_args(argv)
    from graphtrain.ray_env import ensure_ray

    ray = ensure_ray()
    os.environ["GT_BENCH_RAY_ADDRESS"] = ray.get_runtime_context().gcs_address
    runs = []
    try:
        for rows in args.sizes:
            print(f"{rows:,} interactions", flush=True)
            work = tempfile.mkdtemp(prefix="graphtrain-bench-scale-")
            try:
                runs.append(run_size(rows, args, work))
            finally:
                shutil.rmtree(work, ignore_errors=True)
    finally:
        ray.shutdown()
    ratios = _ratios(runs)
    print("largest / smallest size, peak RSS per stage and role:")
    print(json.dumps(ratios, indent=1))
    driver = {stage: ratios[stage].get("driver") for stage in ratios}
    write_result(
        args.name, "driver peak RSS growth (largest / smallest size), ingest",
        driver["ingest"], 1.0, {"sizes": args.sizes, "parts": args.parts, "method": args.method, "steps": args.steps},
        {"runs": runs, "peak_ratio_largest_over_smallest": ratios},
    )
    _plot(runs, os.path.join(RESULTS, f"{args.name}.png"))
    print(f"wrote {os.path.join(RESULTS, args.name + '.json')}")


if __name__ == "__main__":
    main()
