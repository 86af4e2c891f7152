import numpy as np
import pandas as pd
import pytest

from graphtrain.inference.artifact import ModelArtifact
from graphtrain.ranking.metrics import seen_csr
from graphtrain.serve.recommender import Recommender, UnknownDomainError


def _artifact():
    users = pd.DataFrame({"user_id": ["alice", "bob"], "user_idx": [0, 1]})
    items = pd.DataFrame({"domain": ["m"] * 4 + ["b"] * 2, "item_id": ["m0", "m1", "m2", "m3", "b0", "b1"], "item_idx": [0, 1, 2, 3, 0, 1]})
    arrays = {
        "users@m": np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32),
        "items@m": np.array([[3.0, 0.0], [2.0, 0.0], [0.0, 5.0], [1.0, 1.0]], dtype=np.float32),
        "popularity@m": np.array([1, 9, 5, 0], dtype=np.float32),
        "users@b": np.zeros((2, 2), dtype=np.float32),
        "items@b": np.zeros((2, 2), dtype=np.float32),
        "popularity@b": np.array([1, 2], dtype=np.float32),
    }
    # alice has seen m0 in "m"; bob has history only in "b".
    arrays["seen_indptr@m"], arrays["seen_indices@m"] = seen_csr(np.array([0]), np.array([0]), 2)
    arrays["seen_indptr@b"], arrays["seen_indices@b"] = seen_csr(np.array([1]), np.array([1]), 2)
    manifest = {"version": "v1", "domains": ["b", "m"], "source_domain": "b", "target_domain": "m"}
    return ModelArtifact(manifest=manifest, users=users, items=items, arrays=arrays)


def test_strategies_and_seen_items_excluded():
    rec = Recommender(_artifact())
    alice = rec.recommend("alice", k=2)
    assert alice["strategy"] == "personalised" and alice["domain"] == "m"
    assert [i["item_id"] for i in alice["items"]] == ["m1", "m3"]  # m0 seen, excluded
    bob = rec.recommend("bob", k=1, domain="m")
    assert bob["strategy"] == "transfer" and bob["items"][0]["item_id"] == "m2"
    stranger = rec.recommend("carol", k=3)
    assert stranger["strategy"] == "popularity"
    assert [i["item_id"] for i in stranger["items"]] == ["m1", "m2", "m0"]
    assert stranger["model_version"] == "v1"


def test_k_larger_than_catalogue_returns_every_unseen_item():
    rec = Recommender(_artifact())
    assert len(rec.recommend("alice", k=50)["items"]) == 3


def test_unknown_domain_names_the_known_ones():
    with pytest.raises(UnknownDomainError, match=r"\['b', 'm'\]"):
        Recommender(_artifact()).recommend("alice", domain="games")
