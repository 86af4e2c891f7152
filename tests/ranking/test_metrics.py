import math

import numpy as np
import pytest
import torch

from graphtrain.ranking.metrics import rank_metrics, sample_negatives, sampled_metrics, seen_csr


def test_metrics_match_hand_computation():
    # 2 users, 5 items. Scores rank items 0 > 1 > 2 > 3 > 4 for both users.
    scores = torch.tensor([[5.0, 4.0, 3.0, 2.0, 1.0], [5.0, 4.0, 3.0, 2.0, 1.0]])
    scorer = lambda idx, items=slice(None): scores[torch.from_numpy(idx)][:, items]  # noqa: E731
    positives = seen_csr(np.array([0, 1, 1]), np.array([2, 1, 4]), 2)
    excluded = seen_csr(np.array([0]), np.array([0]), 2)  # user 0 trained on item 0
    m = rank_metrics(scorer, np.array([0, 1]), positives, excluded, num_items=5, ks=(2, 3))
    # user 0: ranking 1,2,3,4 (item 0 excluded) -> positive item 2 at rank 2.
    # user 1: ranking 0,1,2,3,4 -> positives 1 (rank 2) and 4 (rank 5).
    assert m["hr@2"] == pytest.approx(1.0)
    assert m["recall@2"] == pytest.approx((1 + 0.5) / 2)
    ndcg_u0 = (1 / math.log2(3)) / 1.0
    ndcg_u1 = (1 / math.log2(3)) / (1 + 1 / math.log2(3))
    assert m["ndcg@2"] == pytest.approx((ndcg_u0 + ndcg_u1) / 2)
    assert m["mrr"] == pytest.approx((1 / 2 + 1 / 2) / 2)
    assert m["recall@3"] == pytest.approx((1 + 0.5) / 2)


def test_perfect_scorer_scores_one():
    scores = torch.eye(4)
    m = rank_metrics(lambda idx, items=slice(None): scores[torch.from_numpy(idx)][:, items], np.arange(4), seen_csr(np.arange(4), np.arange(4), 4), seen_csr(np.array([], dtype=np.int64), np.array([], dtype=np.int64), 4), 4, ks=(1,))
    assert m == {"recall@1": 1.0, "ndcg@1": 1.0, "hr@1": 1.0, "mrr": 1.0}


def test_sampled_negatives_avoid_every_item_the_user_touched():
    seen = seen_csr(np.array([0, 0, 0, 1]), np.array([0, 1, 2, 5]), 2)
    negatives, drawn = sample_negatives(np.array([0, 1, 0]), seen, num_items=10, count=200, seed=0)
    assert negatives.shape == (3, 200) and drawn.all()
    assert not np.isin(negatives[[0, 2]], [0, 1, 2]).any()
    assert not np.isin(negatives[1], [5]).any()
    assert set(np.unique(negatives[0])) == set(range(3, 10))


def test_sampled_protocol_ranks_each_case_against_its_negatives():
    # 3 items; item i scores i for every user.
    scores = torch.tensor([[0.0, 1.0, 2.0]]).expand(2, -1)
    scorer = lambda idx, items=slice(None): scores[torch.from_numpy(idx)][:, items]  # noqa: E731
    users, items = np.array([0, 1]), np.array([2, 0])
    negatives = np.array([[0, 1], [1, 2]])
    m = sampled_metrics(scorer, users, items, negatives, ks=(1, 2))
    # case 0: positive scores highest -> rank 1; case 1: lowest -> rank 3.
    assert m["hr@1"] == pytest.approx(0.5)
    assert m["hr@2"] == pytest.approx(0.5)
    assert m["ndcg@2"] == pytest.approx(0.5)
    assert m["mrr"] == pytest.approx((1 + 1 / 3) / 2)


def test_sampled_protocol_breaks_ties_at_random():
    """A constant scorer must score like a random ranking, not like a perfect one."""
    scorer = lambda idx, items=slice(None): torch.zeros(len(idx), 1000)[:, items]  # noqa: E731
    users = np.zeros(5000, dtype=np.int64)
    negatives = np.random.default_rng(0).integers(1, 1000, size=(5000, 99))
    m = sampled_metrics(scorer, users, np.zeros(5000, dtype=np.int64), negatives, ks=(10,))
    assert m["hr@10"] == pytest.approx(0.1, abs=0.02)


def test_a_user_who_has_seen_every_item_ends_with_no_negatives():
    # User 0 has seen all 50 items; user 1 all but item 7 (drawn from its unseen list).
    seen = seen_csr(np.r_[np.zeros(50, int), np.ones(49, int)], np.r_[np.arange(50), np.delete(np.arange(50), 7)], 3)
    negatives, drawn = sample_negatives(np.array([0, 1, 2]), seen, num_items=50, count=30, seed=0)
    assert drawn.tolist() == [False, True, True]
    assert (negatives[0] == -1).all() and (negatives[1] == 7).all() and (negatives[2] >= 0).all()


def test_ranking_in_item_chunks_equals_ranking_all_items_at_once():
    rng = np.random.default_rng(0)
    n_users, n_items = 300, 257
    scores = torch.from_numpy(rng.standard_normal((n_users, n_items)))
    scorer = lambda idx, items=slice(None): scores[torch.from_numpy(idx)][:, items]  # noqa: E731
    held_u, held_i = rng.integers(0, n_users, 900), rng.integers(0, n_items, 900)
    train_u, train_i = rng.integers(0, n_users, 3000), rng.integers(0, n_items, 3000)
    positives, excluded = seen_csr(held_u, held_i, n_users), seen_csr(train_u, train_i, n_users)
    users = np.unique(held_u)
    whole = rank_metrics(scorer, users, positives, excluded, n_items, ks=(5, 20), chunk=64, item_chunk=n_items)
    chunked = rank_metrics(scorer, users, positives, excluded, n_items, ks=(5, 20), chunk=64, item_chunk=10)
    assert whole.keys() == chunked.keys()
    for name in whole:
        assert chunked[name] == pytest.approx(whole[name], rel=1e-12), name


def test_sampled_cases_are_bounded_by_users_and_drawn_the_same_every_time(tiny_dataset):
    from graphtrain.ranking.cases import SampledCases

    every = SampledCases.of(tiny_dataset, "movies", "valid", num_negatives=20, seed=0)
    few = SampledCases.of(tiny_dataset, "movies", "valid", num_negatives=20, seed=0, max_users=10)
    assert len(np.unique(few.users)) == 10 and set(few.users) <= set(every.users)
    again = SampledCases.of(tiny_dataset, "movies", "valid", num_negatives=20, seed=0, max_users=10)
    assert np.array_equal(few.users, again.users) and np.array_equal(few.negatives(0), again.negatives(0))
    seen = {(u, i) for d in ("train", "valid", "test") for u, i in zip(*tiny_dataset.split_edges(d, "movies"))}
    assert not any((u, n) in seen for u, row in zip(few.users, few.negatives(0)) for n in row)
