"""What interaction weights in alpha_ij buy: weighted vs plain mean aggregation.

Generated logs with planted interests where the weight is a 1-5 rating: 4-5 for
items of the user's interest cluster, 1-2 for the rest (``SyntheticSpec.ratings``).
A low ``--affinity`` makes many interactions off-interest, which is where weighting
the messages should help. The same dataset, seed and training settings, in one run:

  none    alpha_ij = 1 / |N(i)|   (the default; the baseline)
  weight  alpha_ij = w_ij / sum_j w_ij
  log1p   alpha_ij = log(1 + w_ij) / sum_j log(1 + w_ij)

Each model is trained in-process by the per-worker loop (``bench.quality.train_gnn``:
early stopping on valid NDCG@10, the best valid epoch scored) and evaluated on the
target domain's test rows: full ranking and sampled (1 vs 999), warm and cold.
Writes bench/results/edge_weights.json (ours = the cold-start sampled NDCG@10 of the
weighted mode with the best valid NDCG@10, baseline = "none"'s).

    python bench/edge_weights.py [--users 4000] [--affinity 0.5] [--epochs 6]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import write_result  # noqa: E402
from bench.quality import train_gnn  # noqa: E402


def main(argv=None) -> None:
    from graphtrain.config import EDGE_WEIGHTS, IngestConfig, ModelConfig, TrainConfig
    from graphtrain.data.dataset import Dataset
    from graphtrain.data.ingest import ingest
    from graphtrain.data.synthetic import SyntheticSpec, generate, write_logs
    from graphtrain.eval.evaluate import evaluate_scorers, format_table
    from graphtrain.ranking.scorers import embedding_scorer
    from graphtrain.ray_env import ensure_ray

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=4000)
    parser.add_argument("--items", type=int, default=800, help="items per domain")
    parser.add_argument("--affinity", type=float, default=0.5, help="share of interactions inside the user's cluster")
    parser.add_argument("--modes", nargs="+", default=list(EDGE_WEIGHTS), choices=EDGE_WEIGHTS)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--patience", type=int, default=TrainConfig.patience)
    parser.add_argument("--learning-rate", type=float, default=TrainConfig.learning_rate)
    parser.add_argument("--weight-decay", type=float, default=TrainConfig.weight_decay)
    parser.add_argument("--batch-size", type=int, default=TrainConfig.batch_size)
    parser.add_argument("--transfer-loss-weight", type=float, default=TrainConfig.transfer_loss_weight)
    parser.add_argument("--seed", type=int, default=0, help="data, training and evaluation seed")
    parser.add_argument("--name", default="edge_weights", help="results in bench/results/<name>.json")
    args = parser.parse_args(argv)
    if "none" not in args.modes:
        parser.error("--modes must include 'none' (the baseline)")

    spec = SyntheticSpec(
        num_users=args.users, items_per_domain=args.items, cluster_affinity=args.affinity, ratings=True, seed=args.seed
    )
    ensure_ray(num_cpus=2)
    with tempfile.TemporaryDirectory(prefix="graphtrain-edge-weights-") as work:
        raw = os.path.join(work, "raw")
        write_logs(generate(spec), raw)
        uri = os.path.join(work, "dataset")
        ingest(IngestConfig(inputs=[raw], output=uri, source_domain=spec.source_domain, target_domain=spec.target_domain,
                            seed=args.seed))
        dataset = Dataset.load(uri)
    scorers, train = {}, {}
    for mode in args.modes:
        print(f"  edge_weights={mode}", flush=True)
        vectors, history = train_gnn(
            dataset, spec.source_domain, spec.target_domain, ModelConfig(edge_weights=mode), args, {}
        )
        scorers[mode] = embedding_scorer(vectors["users"], vectors["items"])
        train[mode] = {
            "epochs": len(history),
            "seeds_per_s": round(sum(m["seeds_per_s"] for m in history) / len(history), 1),
            "sample_seconds_per_epoch": round(sum(m["sample_seconds"] for m in history) / len(history), 2),
            "best_valid_ndcg@10": max(m["valid_ndcg@10"] for m in history),
        }
    report = {"models": evaluate_scorers(dataset, spec.target_domain, scorers, (10, 20), seed=args.seed)}
    print(format_table(report), flush=True)
    cold = {mode: report["models"][mode]["cold_sampled"]["ndcg@10"] for mode in args.modes}
    # The weighted mode to compare is chosen on the valid split, never on test rows.
    best = max((m for m in args.modes if m != "none"), key=lambda m: train[m]["best_valid_ndcg@10"], default="none")
    write_result(
        args.name,
        unit="cold-start sampled NDCG@10",
        ours=cold[best],
        baseline=cold["none"],
        params={"spec": spec.__dict__, "weighted_mode_chosen_on_valid": best, "epochs": args.epochs, "learning_rate": args.learning_rate,
                "weight_decay": args.weight_decay, "batch_size": args.batch_size, "seed": args.seed},
        extra={"models": report["models"], "train": train},
    )
    for mode in args.modes:
        m = report["models"][mode]
        print(f"{mode:>7}: cold sampled NDCG@10 {m['cold_sampled']['ndcg@10']:.4f}  cold full {m['cold']['ndcg@10']:.4f}  "
              f"warm sampled {m['warm_sampled']['ndcg@10']:.4f}  warm full {m['warm']['ndcg@10']:.4f}  "
              f"{train[mode]['seeds_per_s']:.0f} seeds/s")
    print(f"ratio ({best}, chosen on valid / none; cold sampled NDCG@10): {cold[best] / cold['none']:.3f}"
          f"  -> bench/results/{args.name}.json")


if __name__ == "__main__":
    main()
