"""Synthetic cross-domain interaction logs with planted shared interests.

Users belong to latent interest clusters; every domain's items are assigned to the
same clusters, so a user's source-domain history predicts which target items they
like. Item popularity within a cluster is Zipf-skewed (popularity alone is a real
but weaker baseline). A share of users never touch the target domain: they are the
cold-start users that serving must handle from their source history alone.
Demo and tests need no downloads.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import pandas as pd

from graphtrain.config import check_domain
from graphtrain.errors import ConfigError


@dataclass(frozen=True)
class SyntheticSpec:
    num_users: int = 2000
    items_per_domain: int = 600
    source_domain: str = "books"
    target_domain: str = "movies"
    num_clusters: int = 8
    interactions_per_user: float = 12.0  # mean per user per domain
    cluster_affinity: float = 0.85  # share of interactions inside the user's cluster
    zipf_exponent: float = 1.0  # popularity skew inside a cluster
    source_only_fraction: float = 0.1  # users with no target-domain history at all
    # weight = a 1-5 rating: 4 or 5 for items of the user's interest cluster, 1 or 2
    # for the others (off: every weight is 1.0).
    ratings: bool = False
    seed: int = 0

    def __post_init__(self):
        check_domain("source_domain", self.source_domain)
        check_domain("target_domain", self.target_domain)
        for name in ("num_users", "items_per_domain", "num_clusters", "interactions_per_user"):
            if getattr(self, name) <= 0:
                raise ConfigError(name, getattr(self, name), "must be > 0")
        if self.items_per_domain < self.num_clusters:
            raise ConfigError("items_per_domain", self.items_per_domain, "need at least one item per cluster")
        for name in ("cluster_affinity", "source_only_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(name, getattr(self, name), "must be in [0, 1]")


def _domain_logs(spec: SyntheticSpec, domain: str, users: np.ndarray, user_cluster: np.ndarray, rng) -> pd.DataFrame:
    n_items = spec.items_per_domain
    item_cluster = rng.integers(0, spec.num_clusters, n_items)
    item_cluster[: spec.num_clusters] = np.arange(spec.num_clusters)  # no empty cluster
    # Zipf popularity inside each cluster, in a random item order.
    popularity = np.empty(n_items)
    for c in range(spec.num_clusters):
        members = np.flatnonzero(item_cluster == c)
        ranks = rng.permutation(len(members)) + 1
        popularity[members] = ranks ** (-spec.zipf_exponent)
    global_p = popularity / popularity.sum()
    cluster_p = {}
    for c in range(spec.num_clusters):
        p = np.where(item_cluster == c, popularity, 0.0)
        cluster_p[c] = p / p.sum()

    rows_u, rows_i, rows_liked = [], [], []
    counts = np.maximum(3, rng.poisson(spec.interactions_per_user, len(users)))
    for u, c, n in zip(users, user_cluster, counts):
        n = min(n, n_items)
        in_cluster = rng.random(n) < spec.cluster_affinity
        k = min(int(in_cluster.sum()), int((cluster_p[c] > 0).sum()))
        picked = set(rng.choice(n_items, size=k, replace=False, p=cluster_p[c]).tolist()) if k else set()
        while len(picked) < n:
            picked.add(int(rng.choice(n_items, p=global_p)))
        rows_u.extend([u] * len(picked))
        rows_i.extend(picked)
        rows_liked.extend(item_cluster[list(picked)] == c)
    weight = 1.0
    if spec.ratings:
        # Its own generator, so the interactions are the same with and without ratings.
        coin = np.random.default_rng([spec.seed, len(domain), len(rows_u)]).integers(0, 2, len(rows_u))
        weight = np.where(rows_liked, 4.0, 1.0) + coin
    prefix = domain[0]
    return pd.DataFrame(
        {
            "user_id": [f"u{u:06d}" for u in rows_u],
            "item_id": [f"{prefix}{i:05d}" for i in rows_i],
            "domain": domain,
            "timestamp": rng.integers(1_600_000_000, 1_700_000_000, len(rows_u)),
            "weight": weight,
        }
    )


def generate(spec: SyntheticSpec) -> pd.DataFrame:
    """Interaction logs of both domains as one DataFrame in the data contract."""
    rng = np.random.default_rng(spec.seed)
    users = np.arange(spec.num_users)
    user_cluster = rng.integers(0, spec.num_clusters, spec.num_users)
    source = _domain_logs(spec, spec.source_domain, users, user_cluster, rng)
    has_target = rng.random(spec.num_users) >= spec.source_only_fraction
    target = _domain_logs(spec, spec.target_domain, users[has_target], user_cluster[has_target], rng)
    return pd.concat([source, target], ignore_index=True)


def write_logs(logs: pd.DataFrame, directory: str, files_per_domain: int = 2) -> list[str]:
    """Write logs as Parquet, several files per domain (as real exports look)."""
    os.makedirs(directory, exist_ok=True)
    paths = []
    for domain, part in logs.groupby("domain", sort=True):
        bounds = np.linspace(0, len(part), files_per_domain + 1).astype(int)
        for shard in range(files_per_domain):
            path = os.path.join(directory, f"{domain}-{shard:03d}.parquet")
            part.iloc[bounds[shard] : bounds[shard + 1]].to_parquet(path, index=False)
            paths.append(path)
    return paths


def source_only_users(logs: pd.DataFrame, source_domain: str, target_domain: str) -> list[str]:
    """Users with source-domain history and no target-domain history."""
    source = set(logs.loc[logs["domain"] == source_domain, "user_id"])
    target = set(logs.loc[logs["domain"] == target_domain, "user_id"])
    return sorted(source - target)
