"""`graphtrain evaluate`: the exported model against baselines, warm vs cold-start.

"cold" users are target-domain test users with no target-domain training
interactions (DESIGN.md); "warm" are the other test users.
"""

from __future__ import annotations

import os
import re

import numpy as np
import pandas as pd

from graphtrain import storage
from graphtrain.config import EvalConfig
from graphtrain.data.dataset import Dataset, edge_files
from graphtrain.inference.artifact import MANIFEST, ModelArtifact
from graphtrain.seeded_hash import hash_ids
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
    """The ``max_users`` users with the smallest seeded hashes (all when fewer): the
    same sample whether chosen from one table or from many files' candidates."""
    if max_users is None or len(users) <= max_users:
        return users
    return np.sort(users[np.argsort(hash_ids(users, seed, 13), kind="stable")[:max_users]])


def evaluate_scorers(
    dataset: Dataset, domain: str, scorers: dict[str, Scorer], ks, num_negatives: int = NUM_NEGATIVES, seed: int = 0,
    max_users: int | None = None, only_users: np.ndarray | None = None,
) -> dict:
    """Metrics of every scorer on ``domain``'s test rows, per user group and protocol:
    ``warm``/``cold`` rank all items (training items excluded); ``warm_sampled``/
    ``cold_sampled`` rank each test row against ``num_negatives`` sampled items
    (there ``recall@K`` equals ``hr@K``: one positive per case). With ``max_users``,
    each group is a seeded sample of that many test users; with ``only_users``, the
    test users among those."""
    warm, cold = warm_and_cold_users(dataset, domain)
    warm, cold = _sample(warm, max_users, seed), _sample(cold, max_users, seed)
    if only_users is not None:
        warm, cold = warm[np.isin(warm, only_users)], cold[np.isin(cold, only_users)]
    n_users, n_items = dataset.num_users, dataset.num_items(domain)
    positives = seen_csr(*dataset.split_edges("test", domain), n_users)
    excluded = seen_csr(*dataset.split_edges("train", domain), n_users)
    cases = SampledCases.of(dataset, domain, "test", num_negatives, seed)
    if max_users is not None or only_users is not None:
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
    """Evaluate the model artifact on the dataset's test rows, one edge file (a user
    bucket of the target domain) per Ray task: the driver holds the per-file
    candidate users and the metric sums, never the edge table (``evaluate_buckets``)."""
    meta = storage.read_json(storage.join(config.dataset, "meta.json"))
    manifest = storage.read_json(storage.join(config.model, MANIFEST))
    target = manifest["target_domain"]
    report = {
        "dataset": {k: meta[k] for k in ("num_users", "num_items", "edges", "overlap_users", "cold_start_users")},
        "protocol": {
            **meta["protocol"],
            "target_domain": target,
            "ranking": "warm/cold: full (all target items, training items excluded); "
            f"*_sampled: each test row vs {NUM_NEGATIVES} sampled items the user never interacted with",
            "negatives": NUM_NEGATIVES,
            "ks": list(config.ks),
        },
        "models": evaluate_buckets(config.dataset, config.model, target, config.ks, max_users=config.max_users),
        "train": {k: v for k, v in manifest.get("train", {}).items() if k != "history"},
        "model_version": manifest["version"],
    }
    with storage.atomic_artifact(config.output) as staging:
        storage.write_json(os.path.join(staging, REPORT), report)
        plot_metrics(report, os.path.join(staging, "metrics.png"))
    return report


# A bucketed dataset's edge file holds one domain's rows of one user bucket, so all of
# a user's rows in that domain (``data.dataset``); older layouts get one task for all.
_BUCKET_FILE = re.compile(r"part-(\d{3})-\d{5}\.parquet$")


def _domain_files(dataset_uri: str, domain: str) -> list[list[str]]:
    """Groups of edge files (paths in the dataset's filesystem) such that each holds
    every ``domain`` row of its users."""
    meta = storage.read_json(storage.join(dataset_uri, "meta.json"))
    _, files = edge_files(dataset_uri)
    matches = [_BUCKET_FILE.search(f) for f in files]
    if files and all(matches):
        index = sorted(meta["domains"]).index(domain)
        return [[f] for f, m in zip(files, matches) if int(m.group(1)) == index]
    return [files] if files else []


def _file_rows(dataset_uri: str, paths: list[str], domain: str) -> Dataset:
    """A Dataset of the ``domain`` rows in ``paths`` (id maps empty, indices global)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    fs, _ = storage.filesystem(dataset_uri)
    frames = []
    for path in paths:
        table = pq.read_table(path, columns=["user_idx", "item_idx", "domain", "split"], filesystem=fs)
        frames.append(table.filter(pc.equal(table["domain"].cast("string"), domain)).to_pandas())
    edges = pd.concat(frames, ignore_index=True)
    edges["domain"], edges["split"] = edges["domain"].astype(str), edges["split"].astype(str)
    empty = pd.DataFrame()
    return Dataset(edges=edges, users=empty, items=empty, meta=storage.read_json(storage.join(dataset_uri, "meta.json")))


def _candidates(dataset_uri: str, paths: list[str], domain: str, max_users: int, seed: int) -> dict[str, np.ndarray]:
    """Round 1, one task per file group: its ``max_users`` smallest-hash warm and cold test users."""
    warm, cold = warm_and_cold_users(_file_rows(dataset_uri, paths, domain), domain)
    return {"warm": _sample(warm, max_users, seed), "cold": _sample(cold, max_users, seed)}


def _evaluate_files(dataset_uri: str, paths: list[str], domain: str, model_uri: str, only_users, ks, num_negatives: int,
                    seed: int) -> dict:
    """Round 2, one task per file group: every scorer's metrics on its users."""
    model = ModelArtifact.load(model_uri)
    scorers = {
        "graphtrain": embedding_scorer(model.user_vectors(domain), model.item_vectors(domain)),
        "popularity": popularity_scorer(model.popularity(domain)),
    }
    rows = _file_rows(dataset_uri, paths, domain)
    return evaluate_scorers(rows, domain, scorers, ks, num_negatives, seed, only_users=only_users)


def evaluate_buckets(dataset_uri: str, model_uri: str, domain: str, ks, num_negatives: int = NUM_NEGATIVES,
                     seed: int = 0, max_users: int | None = None) -> dict:
    """``evaluate_scorers`` for the artifact's ``graphtrain`` and ``popularity``
    scorers, run over the dataset's edge files as Ray tasks. Per-user metrics and
    sampled negatives do not depend on batching, so this equals the one-table run."""
    from graphtrain.ray_env import actor_runtime_env, ensure_ray

    ray = ensure_ray()
    task = {"runtime_env": actor_runtime_env(), "max_retries": 2}
    groups = _domain_files(dataset_uri, domain)
    only: list = [None] * len(groups)
    if max_users is not None:
        found = ray.get([ray.remote(_candidates).options(**task).remote(dataset_uri, g, domain, max_users, seed) for g in groups])
        chosen = np.concatenate([_sample(np.concatenate([f[k] for f in found] or [np.zeros(0, np.int64)]), max_users, seed)
                                 for k in ("warm", "cold")])
        only = [np.intersect1d(np.concatenate([f["warm"], f["cold"]]), chosen) for f in found]
    evaluate_remote = ray.remote(_evaluate_files).options(**task)
    parts = ray.get([evaluate_remote.remote(dataset_uri, g, domain, model_uri, users, tuple(ks), num_negatives, seed)
                     for g, users in zip(groups, only) if users is None or len(users)])
    return combine_results(parts)


def combine_results(parts: list[dict]) -> dict:
    """One ``evaluate_scorers`` result from several over disjoint users: means
    weighted by users (full ranking) or cases (sampled), counts summed."""
    combined: dict = {}
    for part in parts:
        for name, groups in part.items():
            for group, values in groups.items():
                weight_key = "cases" if group.endswith("_sampled") else "users"
                into = combined.setdefault(name, {}).setdefault(group, {})
                into.setdefault("_weights", []).append(values[weight_key])
                for key, value in values.items():
                    into.setdefault(key, []).append(value)
    result: dict = {}
    for name, groups in combined.items():
        result[name] = {}
        for group, columns in groups.items():
            weights = np.asarray(columns.pop("_weights"), dtype=np.float64)
            total = weights.sum()
            result[name][group] = {
                key: (int(sum(values)) if key in ("users", "cases", "cases_without_negatives")
                      else float(np.dot(values, weights) / total) if total else 0.0)
                for key, values in columns.items()
            }
    return {name: {g: result[name][g] for g in GROUPS if g in result[name]} for name in result}


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
