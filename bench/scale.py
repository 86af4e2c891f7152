"""Peak memory and time of every stage against input size: which process grows.

For each size, generated logs (``bench/ingest.py``'s generator: users ~ rows/20,
50k items per domain, ~1 % bad and ~2 % repeated rows, 8 Parquet files) go through
the pipeline's stages one by one, each under ``PeakMemory``:

  ingest     IngestConfig (buckets sized from the input)
  partition  PartitionConfig, ``--parts`` partitions, random
  train      TrainConfig, 2 workers, 1 epoch capped at ``--steps`` steps per epoch,
             validation on ``--validation-users`` users
  export     the best checkpoint -> model artifact
  evaluate   EvalConfig capped at ``--eval-users`` test users per group
  serve      one Serve replica, one /recommend request

Per stage it records wall time, throughput and the peak RSS of the largest process
of each role (driver = this process; train_worker, graph_server, serve_replica,
ray_worker = other Ray tasks and actors). The baseline is the smallest size: the JSON
gives every peak as a ratio to the smallest size's.

    python bench/scale.py --sizes 1000000 4000000 16000000

Writes bench/results/scale.json and scale.png (peak RSS per role and stage vs size).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
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


def _stage(name: str, fn, results: dict) -> object:
    with PeakMemory() as memory:
        started = time.perf_counter()
        value = fn()
        seconds = time.perf_counter() - started
    results[name] = {"seconds": round(seconds, 2), "peak_gib_by_role": memory.role_gib(), "tree_peak_gib": memory.peak_gib}
    print(f"  {name:<10} {seconds:8.1f} s   largest process per role (GiB) {memory.role_gib()}", flush=True)
    return value


def run_size(rows: int, args, work: str) -> dict:
    from graphtrain.config import EvalConfig, IngestConfig, ModelConfig, PartitionConfig, ServeConfig, TrainConfig
    from graphtrain.data.ingest import ingest
    from graphtrain.eval.evaluate import evaluate
    from graphtrain.inference.export import export
    from graphtrain.graph.partition import partition
    from graphtrain.net import free_port
    from graphtrain.pipeline import http_get_json
    from graphtrain.serve import app
    from graphtrain.train.trainer import train

    raw = os.path.join(work, "raw")
    os.makedirs(raw)
    _in_subprocess(generate, rows, raw)
    paths = {name: os.path.join(work, name) for name in ("dataset", "partitions", "checkpoints", "model", "reports")}
    stages: dict = {}
    meta = _stage("ingest", lambda: ingest(IngestConfig(inputs=[raw], output=paths["dataset"], source_domain="books",
                                                        target_domain="movies")), stages)
    stages["ingest"]["rows_per_s"] = round(rows / stages["ingest"]["seconds"])
    parts = _stage("partition", lambda: partition(PartitionConfig(dataset=paths["dataset"], output=paths["partitions"],
                                                                  num_parts=args.parts, method="random")), stages)
    stages["partition"]["edges_per_s"] = round(parts["num_edges"] / stages["partition"]["seconds"])
    config = TrainConfig(
        dataset=paths["dataset"], partitions=paths["partitions"], output=paths["checkpoints"], source_domain="books",
        target_domain="movies", model=ModelConfig(embedding_dim=32), workers=2, epochs=1, batch_size=1024,
        max_steps_per_epoch=args.steps, validation_users=args.validation_users,
    )
    trained = _stage("train", lambda: train(config), stages)
    stages["train"]["steps"] = args.steps
    _stage("export", lambda: export(paths["dataset"], paths["checkpoints"], paths["model"]), stages)
    report = _stage("evaluate", lambda: evaluate(EvalConfig(dataset=paths["dataset"], model=paths["model"],
                                                            output=paths["reports"], max_users=args.eval_users)), stages)
    users = sum(group.get("users", 0) for group in report["models"]["graphtrain"].values())
    stages["evaluate"]["users_per_s"] = round(users / stages["evaluate"]["seconds"], 1)

    def serve_once():
        base = app.start(ServeConfig(model=paths["model"], port=free_port()))
        try:
            return http_get_json(f"{base}/recommend?user_id=u1&k=10&domain=movies")
        finally:
            app.stop()

    _stage("serve", serve_once, stages)
    return {
        "rows": rows, "rows_kept": meta["rows_kept"], "users": meta["num_users"], "buckets": meta["buckets"],
        "train_edges": parts["num_edges"], "train_seconds": trained["seconds"], "stages": stages,
    }


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
    fig, axes = plt.subplots(1, len(STAGES), figsize=(3.2 * len(STAGES), 3.4), sharey=True)
    for ax, stage in zip(axes, STAGES):
        roles = sorted({role for r in runs for role in r["stages"][stage]["peak_gib_by_role"]} - {"gone", "ray_system"})
        for role in roles:
            ax.plot(sizes, [r["stages"][stage]["peak_gib_by_role"].get(role, 0) for r in runs], marker="o", label=role)
        ax.set_xscale("log")
        ax.set_title(stage)
        ax.set_xlabel("interactions")
    axes[0].set_ylabel("peak RSS of the largest process (GiB)")
    axes[-1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 4_000_000, 16_000_000])
    parser.add_argument("--parts", type=int, default=2)
    parser.add_argument("--steps", type=int, default=20, help="training steps per epoch")
    parser.add_argument("--validation-users", type=int, default=5000)
    parser.add_argument("--eval-users", type=int, default=5000)
    args = parser.parse_args(argv)
    from graphtrain.ray_env import ensure_ray

    ray = ensure_ray()
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
        "scale", "driver peak RSS growth (largest / smallest size), ingest",
        driver["ingest"], 1.0, {"sizes": args.sizes, "parts": args.parts, "steps": args.steps},
        {"runs": runs, "peak_ratio_largest_over_smallest": ratios},
    )
    _plot(runs, os.path.join(RESULTS, "scale.png"))
    print(f"wrote {os.path.join(RESULTS, 'scale.json')}")


if __name__ == "__main__":
    main()
