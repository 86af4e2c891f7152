"""Recommendation quality on real Amazon data: graphtrain vs cross-domain baselines.

For each DisenCDR pair (target = the second domain) and protocol (bench/quality_data.py:
``warm`` leave-one-out as the files give it, ``cold`` with 20 % of users' target
history held out), in one run:

  graphtrain              migration GNN with the transfer head
  graphtrain_no_transfer  the same GNN without the transfer head (ablation)
  graphtrain_transfer_loss_1  the transfer head's own loss at weight 1.0 (default 0.1)
  lightgcn_target_only    LightGCN configuration on the target domain's edges only
  emcdr                   BPR-MF per domain + MLP mapping (graphtrain.models.emcdr)
  popularity              training interaction counts

Every model is trained by the same per-worker loop graphtrain's Ray Train workers
run (``train_worker``, here in-process on one worker with a local DGL graph, no Ray
Train), early-stopped on valid NDCG@10; the epoch with the best valid NDCG@10 is
scored. Metrics: full ranking and the sampled protocol (1 vs 999), warm and cold.

Writes bench/results/quality/<pair>_<protocol>/{report.json, metrics.png, curves.png}
and bench/results/quality.json (ours = graphtrain's cold-start sampled NDCG@10 averaged
over pairs, baseline = the best baseline's per pair; the ablation without transfer is
compared separately).

    python bench/quality.py [--pairs sport_cloth phone_electronic] [--protocols warm cold] [--epochs 10]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import tempfile
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench.common import RESULTS, write_result  # noqa: E402
from bench.quality_data import PAIRS, protocol_logs  # noqa: E402

METRIC = "ndcg@10"


def train_gnn(dataset, source: str, target: str, model_config, args, overrides: dict) -> tuple[dict, list[dict]]:
    """(user/item vectors of the best validated epoch, training history); ``overrides``
    replace TrainConfig fields the command line sets."""
    from graphtrain.config import TrainConfig
    from graphtrain.graph.build import train_graph
    from graphtrain.graph.sampling import LocalGraphSource
    from graphtrain.models.inference import embed
    from graphtrain.train.loop import train_worker
    from graphtrain.train.validation import METRIC as VALID

    config = TrainConfig(
        dataset="in-memory", partitions="in-memory", output="in-memory", source_domain=source, target_domain=target,
        model=model_config, epochs=args.epochs, learning_rate=args.learning_rate, weight_decay=args.weight_decay,
        **{
            "patience": args.patience, "transfer_loss_weight": args.transfer_loss_weight,
            "batch_size": args.batch_size, "batches_per_draw": args.batches_per_draw, "seed": args.seed, **overrides,
        },
    )
    best = {"score": -1.0, "state": None}

    def keep_best(epoch, metrics, model, optimizer, history):
        print(f"    epoch {epoch}: loss {metrics['loss']:.4f}  {VALID} {metrics[VALID]:.4f}  "
              f"{metrics['epoch_seconds']:.1f} s", flush=True)
        if metrics[VALID] > best["score"]:
            best.update(score=metrics[VALID], state=copy.deepcopy(model.state_dict()), model=model)

    history = train_worker(config, dataset, LocalGraphSource(train_graph(dataset)), report=keep_best)
    model = best["model"]
    model.load_state_dict(best["state"])
    reps = embed(model, dataset)
    return {"users": reps["users"][target].numpy(), "items": reps["items"][target].numpy()}, history


def run_case(pair: str, protocol: str, args, work: str) -> dict:
    from graphtrain.config import IngestConfig, ModelConfig
    from graphtrain.data.dataset import Dataset
    from graphtrain.data.ingest import ingest
    from graphtrain.eval.evaluate import evaluate_scorers
    from graphtrain.models.emcdr import MFConfig, emcdr
    from graphtrain.models.popularity import item_popularity
    from graphtrain.ranking.cases import SampledCases
    from graphtrain.ranking.scorers import embedding_scorer, popularity_scorer

    source, target = PAIRS[pair]
    logs = protocol_logs(pair, protocol, os.path.join(work, "raw"), seed=args.seed)
    uri = os.path.join(work, f"{pair}_{protocol}")
    ingest(IngestConfig(inputs=[logs], output=uri, source_domain=source, target_domain=target, split="column", cold_start_fraction=0.0))
    dataset = Dataset.load(uri)

    scorers, histories, seconds = {"popularity": popularity_scorer(item_popularity(dataset, target))}, {}, {}
    gnn_models = {  # name: (dataset, model, TrainConfig overrides)
        "graphtrain": (dataset, ModelConfig(), {}),
        "graphtrain_no_transfer": (dataset, ModelConfig(transfer=False), {}),
        # The transfer head's own loss at full weight (1.0 instead of the default 0.1).
        "graphtrain_transfer_loss_1": (dataset, ModelConfig(), {"transfer_loss_weight": 1.0}),
        "lightgcn_target_only": (dataset.only_domains([target]), ModelConfig(lightgcn=True, transfer=False), {}),
    }
    for name in args.models:
        started = time.perf_counter()
        print(f"  {name}", flush=True)
        if name in gnn_models:
            data, model_config, overrides = gnn_models[name]
            vectors, histories[name] = train_gnn(data, source, target, model_config, args, overrides)
            scorers[name] = embedding_scorer(vectors["users"], vectors["items"])
        elif name == "emcdr":
            valid = SampledCases.of(dataset, target, "valid", seed=args.seed)
            users, items = emcdr(
                dataset, source, target, MFConfig(
                    epochs=args.epochs * 3, learning_rate=args.learning_rate, weight_decay=args.weight_decay, seed=args.seed
                ),
                validate=lambda u, i, cases=valid: cases.metrics(embedding_scorer(u, i), ks=(10,))["ndcg@10"],
            )
            scorers[name] = embedding_scorer(users, items)
        seconds[name] = round(time.perf_counter() - started, 1)

    report = {
        "dataset": {k: dataset.meta[k] for k in ("num_users", "num_items", "edges", "overlap_users")},
        "protocol": {
            "name": protocol, "pair": pair, "source_domain": source, "target_domain": target,
            "split": "DisenCDR leave-one-out test files" + ("; 20 % of users' target rows -> valid/test" if protocol == "cold" else "")
            + "; valid = 1 target train row of 1000 users (early stopping)",
            "ranking": "warm/cold: full; *_sampled: 1 test row vs 999 sampled items", "negatives": 999, "ks": [10, 20],
            "seed": args.seed,
        },
        "models": evaluate_scorers(dataset, target, scorers, (10, 20), seed=args.seed),
        "train": {
            name: {
                "epochs": len(h), "best_epoch": int(np.argmax([m["valid_ndcg@10"] for m in h])),
                "seconds": seconds[name], "workers": 1, "device": h[-1]["device"],
                "seeds_per_s": round(float(np.mean([m["seeds_per_s"] for m in h])), 1),
                "history": [{k: v for k, v in m.items() if k != "device"} for m in h],
            }
            for name, h in histories.items()
        },
        "seconds": seconds,
    }
    out = os.path.join(RESULTS, args.name, f"{pair}_{protocol}")
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "report.json"), "w") as f:
        json.dump(report, f, indent=2)
        f.write("\n")
    from graphtrain.eval.evaluate import format_table, plot_metrics

    plot_metrics(report, os.path.join(out, "metrics.png"))
    plot_curves(report, os.path.join(out, "curves.png"))
    print(format_table(report), flush=True)
    return report


def plot_curves(report: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (loss_ax, valid_ax) = plt.subplots(1, 2, figsize=(10, 4))
    for name, train in report["train"].items():
        epochs = [m["epoch"] for m in train["history"]]
        loss_ax.plot(epochs, [m["loss"] for m in train["history"]], marker="o", label=name)
        valid_ax.plot(epochs, [m["valid_ndcg@10"] for m in train["history"]], marker="o", label=name)
    loss_ax.set(title="training loss", xlabel="epoch")
    valid_ax.set(title="valid NDCG@10 (sampled)", xlabel="epoch")
    valid_ax.legend(fontsize=8)
    fig.suptitle(f"{report['protocol']['pair']} ({report['protocol']['name']})")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None) -> None:
    from graphtrain.config import TrainConfig

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", nargs="+", default=list(PAIRS), choices=list(PAIRS))
    parser.add_argument("--protocols", nargs="+", default=["warm", "cold"], choices=["warm", "cold"])
    parser.add_argument(
        "--models", nargs="+",
        default=["graphtrain", "graphtrain_no_transfer", "graphtrain_transfer_loss_1", "lightgcn_target_only", "emcdr"],
    )
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--patience", type=int, default=TrainConfig.patience)
    parser.add_argument("--learning-rate", type=float, default=TrainConfig.learning_rate)
    parser.add_argument("--weight-decay", type=float, default=TrainConfig.weight_decay)
    parser.add_argument("--batch-size", type=int, default=TrainConfig.batch_size)
    parser.add_argument("--batches-per-draw", type=int, default=TrainConfig.batches_per_draw)
    parser.add_argument("--transfer-loss-weight", type=float, default=TrainConfig.transfer_loss_weight,
                        help="weight of the transfer head's own BPR term (T(m_u) alone)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--summary-only", action="store_true", help="re-summarise the reports already written")
    parser.add_argument("--name", default="quality", help="results under bench/results/<name>/ and <name>.json")
    args = parser.parse_args(argv)
    if args.summary_only:
        summarise_saved(args)
        return
    torch.set_num_threads(os.cpu_count() or 1)

    from graphtrain.ray_env import ensure_ray

    ensure_ray()
    reports = {}
    with tempfile.TemporaryDirectory(prefix="graphtrain-quality-") as work:
        for pair in args.pairs:
            for protocol in args.protocols:
                print(f"== {pair} / {protocol}", flush=True)
                reports[f"{pair}_{protocol}"] = run_case(pair, protocol, args, work)
    summarise(reports, args)


ABLATION = "graphtrain_no_transfer"


def valid_selected(report: dict) -> str | None:
    """The graphtrain variant (transfer-loss weights; not the ablation) with the best
    valid NDCG@10: the per-dataset choice made on the valid split, never on test."""
    variants = {
        name: max(m["valid_ndcg@10"] for m in train["history"])
        for name, train in report.get("train", {}).items()
        if name.startswith("graphtrain") and name != ABLATION
    }
    return max(variants, key=variants.get) if variants else None


def summarise(reports: dict, args) -> None:
    """graphtrain's sampled NDCG@10 per case against the best baseline (popularity,
    lightgcn_target_only, emcdr), against its own ablation without transfer, and the
    variant picked on the valid split (:func:`valid_selected`)."""
    rows, ours, best, selected_values = [], [], [], []
    for key, report in sorted(reports.items()):
        models = report["models"]
        selected = valid_selected(report) or "graphtrain"
        for group in ("warm_sampled", "cold_sampled", "warm", "cold"):
            if group not in models.get("graphtrain", {}):
                continue
            baselines = {n: m[group][METRIC] for n, m in models.items() if not n.startswith("graphtrain") and group in m}
            name, value = max(baselines.items(), key=lambda kv: kv[1])
            mine = models["graphtrain"][group][METRIC]
            ablation = models.get(ABLATION, {}).get(group, {}).get(METRIC)
            chosen = models[selected][group][METRIC]
            rows.append({
                "case": key, "group": group, "graphtrain": mine, "best_baseline": name, "baseline": value,
                "ratio": mine / value, "no_transfer": ablation, "ratio_no_transfer": mine / ablation if ablation else None,
                "valid_selected_model": selected, "valid_selected": chosen, "ratio_valid_selected": chosen / value,
            })
            if group == "cold_sampled":
                ours.append(mine)
                best.append(value)
                selected_values.append(chosen)
    print(f"\n{'case':<26}{'group':<14}{'graphtrain':>11}  {'best baseline':<22}{'value':>8}{'ratio':>7}"
          f"{'no_transfer':>13}{'ratio':>7}   valid-selected variant")
    for r in rows:
        ablation = f"{r['no_transfer']:>13.4f}{r['ratio_no_transfer']:>7.2f}" if r["no_transfer"] else " " * 20
        print(f"{r['case']:<26}{r['group']:<14}{r['graphtrain']:>11.4f}  {r['best_baseline']:<22}{r['baseline']:>8.4f}{r['ratio']:>7.2f}"
              f"{ablation}   {r['valid_selected_model']} {r['valid_selected']:.4f} ({r['ratio_valid_selected']:.2f})")
    if ours:
        result = write_result(
            args.name, "cold-start sampled NDCG@10 (mean over pairs)", float(np.mean(ours)), float(np.mean(best)),
            {**vars(args), "rows": rows, "valid_selected_cold_sampled_mean": float(np.mean(selected_values))},
        )
        print(f"\ncold-start sampled NDCG@10: graphtrain {result['ours']:.4f} vs best baseline {result['baseline']:.4f}: "
              f"ratio {result['ratio']:.2f}; valid-selected variant {np.mean(selected_values):.4f} "
              f"({np.mean(selected_values) / result['baseline']:.2f})")


def summarise_saved(args) -> None:
    """Rebuild bench/results/quality.json from the per-case reports already written."""
    root = os.path.join(RESULTS, args.name)
    reports = {}
    for case in sorted(os.listdir(root)):
        path = os.path.join(root, case, "report.json")
        if os.path.exists(path):
            with open(path) as f:
                reports[case] = json.load(f)
    summarise(reports, args)


if __name__ == "__main__":
    main()
