"""Full-ranking metrics: Recall@K, NDCG@K, HR@K and MRR.

Scores are ranked over *all* items of the target domain; a user's training items
are excluded (scored -inf) before ranking.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

# scores(user_idx) -> [len(user_idx), num_items] tensor
Scorer = Callable[[np.ndarray], torch.Tensor]


def _csr_mask(indptr: np.ndarray, indices: np.ndarray, users: np.ndarray, num_items: int) -> torch.Tensor:
    mask = torch.zeros(len(users), num_items, dtype=torch.bool)
    starts, ends = indptr[users], indptr[users + 1]
    rows = np.repeat(np.arange(len(users)), ends - starts)
    cols = np.concatenate([indices[s:e] for s, e in zip(starts, ends)]) if len(users) else np.array([], dtype=np.int64)
    mask[torch.from_numpy(rows), torch.from_numpy(cols.astype(np.int64))] = True
    return mask


def rank_metrics(
    scorer: Scorer,
    users: np.ndarray,
    positives: tuple[np.ndarray, np.ndarray],
    excluded: tuple[np.ndarray, np.ndarray],
    num_items: int,
    ks: tuple[int, ...] = (10, 20),
    chunk: int = 1024,
) -> dict[str, float]:
    """Mean metrics over ``users``.

    ``positives`` and ``excluded`` are CSR (indptr, indices) over all users: each
    user's held-out items and training items.
    """
    max_k = min(max(ks), num_items)
    discounts = 1.0 / torch.log2(torch.arange(2, max_k + 2, dtype=torch.float64))
    sums = {f"{m}@{k}": 0.0 for k in ks for m in ("recall", "ndcg", "hr")}
    sums["mrr"] = 0.0
    for begin in range(0, len(users), chunk):
        batch = users[begin : begin + chunk]
        scores = scorer(batch).to(torch.float64).clone()
        scores[_csr_mask(*excluded, batch, num_items)] = -torch.inf
        pos = _csr_mask(*positives, batch, num_items)
        n_pos = pos.sum(1).to(torch.float64)
        top = torch.topk(scores, max_k, dim=1).indices
        hits = pos.gather(1, top).to(torch.float64)
        best_pos = torch.where(pos, scores, torch.tensor(-torch.inf, dtype=torch.float64)).max(1).values
        rank = (scores > best_pos.unsqueeze(1)).sum(1).to(torch.float64) + 1
        sums["mrr"] += float((1.0 / rank).sum())
        for k in ks:
            kk = min(k, max_k)
            found = hits[:, :kk].sum(1)
            ideal = torch.cumsum(discounts[:kk], 0)[(n_pos.clamp(max=kk) - 1).long()]
            sums[f"recall@{k}"] += float((found / n_pos).sum())
            sums[f"hr@{k}"] += float((found > 0).to(torch.float64).sum())
            sums[f"ndcg@{k}"] += float(((hits[:, :kk] * discounts[:kk]).sum(1) / ideal).sum())
    n = max(len(users), 1)
    return {name: value / n for name, value in sums.items()}
