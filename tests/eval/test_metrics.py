import math

import numpy as np
import pytest
import torch

from graphtrain.eval.metrics import rank_metrics
from graphtrain.models.artifact import seen_csr


def test_metrics_match_hand_computation():
    # 2 users, 5 items. Scores rank items 0 > 1 > 2 > 3 > 4 for both users.
    scores = torch.tensor([[5.0, 4.0, 3.0, 2.0, 1.0], [5.0, 4.0, 3.0, 2.0, 1.0]])
    scorer = lambda idx: scores[torch.from_numpy(idx)]  # noqa: E731
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
    m = rank_metrics(lambda idx: scores[torch.from_numpy(idx)], np.arange(4), seen_csr(np.arange(4), np.arange(4), 4), seen_csr(np.array([], dtype=np.int64), np.array([], dtype=np.int64), 4), 4, ks=(1,))
    assert m == {"recall@1": 1.0, "ndcg@1": 1.0, "hr@1": 1.0, "mrr": 1.0}
