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


def sample_negatives(
    users: np.ndarray, seen: tuple[np.ndarray, np.ndarray], num_items: int, count: int, seed: int
) -> np.ndarray:
    """``count`` items per case drawn uniformly from the items the case's user never
    interacted with (``seen`` is a CSR over all users); [len(users), count]."""
    rng = np.random.default_rng(seed)
    indptr, indices = seen
    # Sorted keys user * num_items + item: one vectorised membership test per draw.
    seen_users = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
    seen_keys = np.sort(seen_users * num_items + indices)
    out = np.empty((len(users), count), dtype=np.int64)
    todo = np.arange(len(users))
    filled = np.zeros(len(users), dtype=np.int64)
    while len(todo):
        draw = rng.integers(0, num_items, size=(len(todo), count + count // 4 + 8))
        keys = users[todo, None] * num_items + draw
        at = np.minimum(np.searchsorted(seen_keys, keys), max(len(seen_keys) - 1, 0))
        ok = seen_keys[at] != keys if len(seen_keys) else np.ones_like(draw, dtype=bool)
        still = []
        for row, case in enumerate(todo):
            fresh = draw[row][ok[row]][: count - filled[case]]
            out[case, filled[case] : filled[case] + len(fresh)] = fresh
            filled[case] += len(fresh)
            if filled[case] < count:
                still.append(case)
        todo = np.array(still, dtype=np.int64)
    return out


def sampled_metrics(
    scorer: Scorer,
    users: np.ndarray,
    items: np.ndarray,
    negatives: np.ndarray,
    ks: tuple[int, ...] = (10, 20),
    seed: int = 0,
    chunk: int = 1024,
) -> dict[str, float]:
    """The sampled protocol (DisenCDR, CDRIB): each held-out (user, item) case is
    ranked against its own sampled negatives; HR@K, NDCG@K and MRR averaged over
    cases. Ties are broken uniformly at random (seeded), so a constant scorer gets
    the expected value of a random ranking rather than a flattering one."""
    rng = np.random.default_rng(seed)
    sums = {f"{m}@{k}": 0.0 for k in ks for m in ("hr", "ndcg")}
    sums["mrr"] = 0.0
    order = np.argsort(users, kind="stable")
    for begin in range(0, len(order), chunk):
        cases = order[begin : begin + chunk]
        batch_users, inverse = np.unique(users[cases], return_inverse=True)
        full = scorer(batch_users)
        rows = torch.from_numpy(inverse)
        pos = full[rows, torch.from_numpy(items[cases].astype(np.int64))].unsqueeze(1)
        neg = full[rows.unsqueeze(1), torch.from_numpy(negatives[cases].astype(np.int64))]
        above = (neg > pos).sum(1).numpy()
        ties = (neg == pos).sum(1).numpy()
        rank = above + rng.integers(0, ties + 1) + 1  # 1-based
        sums["mrr"] += float((1.0 / rank).sum())
        for k in ks:
            hit = rank <= k
            sums[f"hr@{k}"] += float(hit.sum())
            sums[f"ndcg@{k}"] += float((hit / np.log2(rank + 1)).sum())
    n = max(len(users), 1)
    return {name: value / n for name, value in sums.items()}
