import numpy as np
import pandas as pd
import pytest

from graphtrain.config import ModelConfig
from graphtrain.inference.artifact import ModelArtifact
from graphtrain.ranking.metrics import seen_csr
from graphtrain.serve.interactions import record
from graphtrain.serve.recommender import (
    POPULAR, TRANSFER, WARM, FoldInUnavailable, Recommender, UnknownDomainError, UnknownItemError, UnknownUserError,
)
from tests.small_model import small_artifact


def _handmade():
    """No fold-in arrays: an artifact exported before fold-in existed."""
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


def _ids(answer):
    return [i.item_id for i in answer.items]


def test_reasons_and_seen_items_excluded():
    rec = Recommender(_handmade())
    alice = rec.recommend("alice", k=2)
    assert alice.reason == WARM and alice.domain == "m"
    assert _ids(alice) == ["m1", "m3"]  # m0 seen, excluded
    assert _ids(rec.recommend("alice", k=1, exclude_seen=False)) == ["m0"]
    bob = rec.recommend("bob", k=1, domain="m")
    assert bob.reason == TRANSFER and _ids(bob) == ["m2"]
    stranger = rec.recommend("carol", k=3)
    assert stranger.reason == POPULAR and _ids(stranger) == ["m1", "m2", "m0"]
    assert stranger.model_version == "v1"
    # bob has no history in "m" and "b" is not the target: no transfer there, popular it is
    assert rec.recommend("alice", k=1, domain="b").reason == POPULAR


def test_without_a_transfer_head_a_cold_user_is_never_called_transfer():
    artifact = _handmade()
    artifact.manifest["model"] = {"transfer": False}
    rec = Recommender(artifact)
    bob = rec.recommend("bob", k=2, domain="m")
    assert bob.reason == POPULAR and _ids(bob) == ["m1", "m2"]


def test_k_larger_than_catalogue_returns_every_unseen_item():
    rec = Recommender(_handmade())
    assert len(rec.recommend("alice", k=50).items) == 3


def test_unknown_domain_names_the_known_ones():
    with pytest.raises(UnknownDomainError, match=r"\['b', 'm'\]"):
        Recommender(_handmade()).recommend("alice", domain="games")


def test_fold_in_needs_its_arrays():
    with pytest.raises(FoldInUnavailable, match="re-export"):
        Recommender(_handmade()).fold(record("carol", "m1", "m", 1.0))


def test_a_new_user_with_source_history_gets_transfer_and_leaves_popularity():
    rec = Recommender(small_artifact()[0])
    assert rec.recommend("newcomer", k=10).reason == POPULAR
    popular = _ids(rec.recommend("newcomer", k=10))
    for item in ("books1", "books2", "books3", "books4", "books5"):
        rec.fold(record("newcomer", item, "books", 1.0))
    answer = rec.recommend("newcomer", k=10)
    assert answer.reason == TRANSFER and _ids(answer) != popular
    assert rec.recommend("newcomer", k=5, domain="books").reason == WARM
    assert not {"books1", "books2"} & set(_ids(rec.recommend("newcomer", k=25, domain="books")))
    rec.fold(record("newcomer", "movies0", "movies", 4.0))
    assert rec.recommend("newcomer", k=3).reason == WARM
    assert "movies0" not in _ids(rec.recommend("newcomer", k=30))


def test_folding_in_changes_a_known_users_answer_and_only_theirs():
    rec = Recommender(small_artifact()[0])
    before, other = rec.recommend("u3", k=30), rec.recommend("u4", k=30)
    rec.fold(record("u3", "movies7", "movies", 5.0))
    after = rec.recommend("u3", k=30)
    assert "movies7" not in _ids(after) and [i.score for i in after.items] != [i.score for i in before.items]
    assert rec.recommend("u4", k=30) == other


def test_unknown_items_are_refused():
    rec = Recommender(small_artifact()[0])
    with pytest.raises(UnknownItemError):
        rec.fold(record("u1", "nope", "movies", 1.0))
    with pytest.raises(UnknownDomainError):
        rec.fold(record("u1", "movies1", "games", 1.0))
    assert rec.fold_all([record("u1", "nope", "movies", 1.0)]) != []


def test_batch_answers_equal_single_answers_in_order():
    rec = Recommender(small_artifact()[0])
    rec.fold(record("fresh", "books3", "books", 1.0))
    requests = [("u1", 5, None, True), ("nobody", 3, "movies", True), ("u2", 4, "books", False), ("fresh", 6, None, True)]
    batch = rec.recommend_many(list(requests))
    assert [a.user_id for a in batch] == ["u1", "nobody", "u2", "fresh"]
    for got, want in zip(batch, [rec.recommend(*r) for r in requests]):
        assert (got.reason, got.domain, _ids(got)) == (want.reason, want.domain, _ids(want))
        # one matmul for the batch vs one per user: equal up to float32 summation order
        assert np.allclose([i.score for i in got.items], [i.score for i in want.items], rtol=1e-5, atol=1e-6)


def test_explain_lists_the_users_interactions_with_shares():
    rec = Recommender(small_artifact(ModelConfig(embedding_dim=8, transfer=False))[0])
    answer = rec.explain("u5", "movies3", "movies")
    assert answer["contributions"], answer
    assert sum(abs(c["weight"]) for c in answer["contributions"]) <= 1 + 1e-6
    own = {rec.item_ids[d][i] for d in rec.domains for i in rec.history("u5", d)}
    assert {c["item_id"] for c in answer["contributions"]} <= own
    with pytest.raises(UnknownUserError):
        rec.explain("nobody", "movies3")


def test_similar_items_exclude_the_item_and_rank_by_cosine():
    rec = Recommender(small_artifact()[0])
    answer = rec.similar("movies3", "movies", k=5)
    ids = [i["item_id"] for i in answer["items"]]
    assert len(ids) == 5 and "movies3" not in ids
    scores = [i["score"] for i in answer["items"]]
    assert scores == sorted(scores, reverse=True) and all(s <= 1 + 1e-5 for s in scores)


def test_approximate_index_answers_like_exact_search():
    exact = Recommender(small_artifact()[0])
    approximate = Recommender(small_artifact()[0], approximate_above=10)
    assert approximate.indexes["movies"].method == "hnsw"
    for user in ("u1", "u2", "u9"):
        assert _ids(approximate.recommend(user, k=5)) == _ids(exact.recommend(user, k=5))
