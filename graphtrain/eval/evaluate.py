"""`graphtrain evaluate`: the exported model against baselines, warm vs cold-start.

"cold" users are target-domain test users with no target-domain training
interactions (DESIGN.md); "warm" are the other test users.
"""

from __future__ import annotations

import os

import numpy as np

from graphtrain import storage
from graphtrain.config import EvalConfig
from graphtrain.data.dataset import Dataset
from graphtrain.inference.artifact import ModelArtifact
from graphtrain.models.popularity import item_popularity
from graphtrain.ranking.cases import NUM_NEGATIVES, SampledCases
from graphtrain.ranking.metrics import Scorer, rank_metrics, seen_csr
from graphtrain.ranking.scorers import embedding_scorer, popularity_scorer

REPORT = "report.json"


def warm_and_cold_users(dataset: Dataset, domain: str) -> tuple[np.ndarray, np.ndarray]:
    """(warm, cold) test users of ``domain``."""
    test_u, _ = dataset.split_edges("test", domain)
    train_u, _ = dataset.split_edges("train", domain)
    users = np.unique(test_u)
    has_history = np.isin(users, np.unique(train_u))
    return users[has_history], users[~has_history]


def _sample(users: np.ndarray, max_users: int | None, seed: int) -> np.ndarray:
    if max_users is None or len(users) <= max_users:
        return users
    return np.sort(np.random.default_rng([seed, 13]).choice(users, size=max_users, replace=False))


def evaluate_scorers(
    dataset: Dataset, domain: str, scorers: dict[str, Scorer], ks, num_negatives: int = NUM_NEGATIVES, seed: int = 0,
    max_users: int | None = None,
) -> dict:
    """Metrics of every scorer on ``domain``'s test rows, per user group and protocol:
    ``warm``/``cold`` rank all items (training items excluded); ``warm_sampled``/
    ``cold_sampled`` rank each test row against ``num_negatives`` sampled items
    (there ``recall@K`` equals ``hr@K``: one positive per case). With ``max_users``,
    each group is a seeded sample of that many test users."""
    warm, cold = warm_and_cold_users(dataset, domain)
    warm, cold = _sample(warm, max_users, seed), _sample(cold, max_users, seed)
    n_users, n_items = dataset.num_users, dataset.num_items(domain)
    positives = seen_csr(*dataset.split_edges("test", domain), n_users)
    excluded = seen_csr(*dataset.split_edges("train", domain), n_users)
    cases = SampledCases.of(dataset, domain, "test", num_negatives, seed)
    if max_users is not None:
        cases = cases.subset(np.isin(cases.users, np.concatenate([warm, cold])))
    warm_cases = np.isin(cases.users, warm)
    results = {}
    for name, scorer in scorers.items():
        results[name] = {}
        for group, users, mask in (("warm", warm, warm_cases), ("cold", cold, ~warm_cases)):
            if not len(users):
                continue
            results[name][group] = {
                **rank_metrics(scorer, users, positives, excluded, n_items, ks), "users": int(len(users))
            }
            sampled = cases.subset(mask).metrics(scorer, ks, seed)
            sampled.update({f"recall@{k}": sampled[f"hr@{k}"] for k in ks})
            results[name][f"{group}_sampled"] = {
                **sampled, "cases": int(mask.sum()),
                "cases_without_negatives": int(np.isin(cases.skipped_users, users).sum()),
            }
    return results


def evaluate(config: EvalConfig) -> dict:
    dataset = Dataset.load(config.dataset)
    model = ModelArtifact.load(config.model)
    target = model.manifest["target_domain"]
    scorers = {
        "graphtrain": embedding_scorer(model.user_vectors(target), model.item_vectors(target)),
        "popularity": popularity_scorer(item_popularity(dataset, target)),
    }
    report = {
        "dataset": {k: dataset.meta[k] for k in ("num_users", "num_items", "edges", "overlap_users", "cold_start_users")},
        "protocol": {
            **dataset.meta["protocol"],
            "target_domain": target,
            "ranking": "warm/cold: full (all target items, training items excluded); "
            f"*_sampled: each test row vs {NUM_NEGATIVES} sampled items the user never interacted with",
            "negatives": NUM_NEGATIVES,
            "ks": list(config.ks),
        },
        "models": evaluate_scorers(dataset, target, scorers, config.ks, max_users=config.max_users),
        "train": {k: v for k, v in model.manifest.get("train", {}).items() if k != "history"},
        "model_version": model.manifest["version"],
    }
    with storage.atomic_artifact(config.output) as staging:
        storage.write_json(os.path.join(staging, REPORT), report)
        plot_metrics(report, os.path.join(staging, "metrics.png"))
    return report


GROUPS = ("warm", "cold", "warm_sampled", "cold_sampled")


def plot_metrics(report: dict, path: str) -> None:
    """Metric bars per model, one panel per user group and protocol."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = ("ndcg@10", "recall@20", "hr@10")
    names = list(report["models"])
    groups = [g for g in GROUPS if any(g in report["models"][n] for n in names)]
    fig, axes = plt.subplots(1, len(groups), figsize=(4.5 * len(groups), 4), squeeze=False)
    for ax, group in zip(axes[0], groups):
        for offset, name in enumerate(names):
            values = [report["models"][name].get(group, {}).get(m, 0.0) for m in metrics]
            xs = np.arange(len(metrics)) + offset * 0.8 / len(names)
            ax.bar(xs, values, width=0.8 / len(names), label=name)
        ax.set_xticks(np.arange(len(metrics)) + 0.4 - 0.4 / len(names), metrics)
        ax.set_title(f"{group} ({report['protocol']['target_domain']})")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def format_table(report: dict) -> str:
    cols = ("recall@20", "ndcg@10", "hr@10", "mrr")
    width = max(len("model"), *(len(name) for name in report["models"])) + 2
    lines = [f"{'model':<{width}}{'users':<14}" + "".join(f"{c:>11}" for c in cols)]
    for name, groups in report["models"].items():
        for group, values in groups.items():
            lines.append(f"{name:<{width}}{group:<14}" + "".join(f"{values[c]:>11.4f}" for c in cols))
    return "\n".join(lines)
