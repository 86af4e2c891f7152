import dataclasses

import pandas as pd
import pytest

from graphtrain.data.synthetic import SyntheticSpec, generate, source_only_users, write_logs
from graphtrain.errors import ConfigError


def test_same_seed_same_logs():
    spec = SyntheticSpec(num_users=100, items_per_domain=50, seed=7)
    pd.testing.assert_frame_equal(generate(spec), generate(spec))


def test_source_only_users_have_no_target_history():
    spec = SyntheticSpec(num_users=400, items_per_domain=80, source_only_fraction=0.25, seed=1)
    logs = generate(spec)
    cold = source_only_users(logs, spec.source_domain, spec.target_domain)
    assert 0.15 * 400 < len(cold) < 0.35 * 400
    assert not logs[(logs["domain"] == spec.target_domain) & logs["user_id"].isin(cold)].shape[0]
    assert set(logs["domain"]) == {spec.source_domain, spec.target_domain}
    assert not logs.duplicated(["user_id", "item_id", "domain"]).any()


def test_planted_interest_is_shared_across_domains():
    """Users who share source items share target items far more than random pairs."""
    spec = SyntheticSpec(num_users=300, items_per_domain=100, num_clusters=4, seed=2)
    logs = generate(spec)
    src = logs[logs["domain"] == spec.source_domain].groupby("user_id")["item_id"].apply(set)
    tgt = logs[logs["domain"] == spec.target_domain].groupby("user_id")["item_id"].apply(set)
    users = sorted(set(src.index) & set(tgt.index))[:120]
    def jaccard(a, b):
        return len(a & b) / len(a | b)
    pairs = [(a, b) for i, a in enumerate(users) for b in users[i + 1 :]]
    src_sim = pd.Series([jaccard(src[a], src[b]) for a, b in pairs])
    tgt_sim = pd.Series([jaccard(tgt[a], tgt[b]) for a, b in pairs])
    similar = src_sim > src_sim.quantile(0.75)
    assert tgt_sim[similar].mean() > 1.5 * tgt_sim[~similar].mean()


def test_write_logs_splits_files_per_domain(tmp_path):
    logs = generate(SyntheticSpec(num_users=50, items_per_domain=20))
    paths = write_logs(logs, str(tmp_path), files_per_domain=3)
    assert len(paths) == 6
    assert sum(len(pd.read_parquet(p)) for p in paths) == len(logs)


def test_bad_spec_names_the_field():
    with pytest.raises(ConfigError, match="items_per_domain"):
        SyntheticSpec(items_per_domain=2, num_clusters=8)


def test_ratings_mark_interest_and_leave_the_interactions_unchanged():
    spec = SyntheticSpec(num_users=200, items_per_domain=80, num_clusters=4, cluster_affinity=0.6, seed=5)
    plain = generate(spec)
    rated = generate(dataclasses.replace(spec, ratings=True))
    pd.testing.assert_frame_equal(plain.drop(columns="weight"), rated.drop(columns="weight"))
    assert set(plain["weight"]) == {1.0}
    assert set(rated["weight"]) == {1.0, 2.0, 4.0, 5.0}
    # Users mostly rate their cluster (affinity 0.6 plus the cluster's share of
    # popularity draws), so high ratings are the majority but not all.
    high = (rated["weight"] >= 4).mean()
    assert 0.6 < high < 0.9
