"""Full-ranking metrics: Recall@K, NDCG@K, HR@K and MRR.

Scores are ranked over *all* items of the target domain; a user's training items
are excluded (scored -inf) before ranking.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from graphtrain.seeded_hash import hash_ids, mix64

# scores(user_idx, items) -> [len(user_idx), len(items)] tensor, where ``items`` is a
# slice of the domain's items or a LongTensor of item indices.
Scorer = Callable[[np.ndarray, "slice | torch.Tensor"], torch.Tensor]

# Most scores held at once (users x items), whatever the catalogue's size: 2^24
# float64 scores are 128 MiB.
SCORE_BUDGET = 1 << 24


def seen_csr(user_idx: np.ndarray, item_idx: np.ndarray, num_users: int) -> tuple[np.ndarray, np.ndarray]:
    """CSR (indptr, item indices sorted per user) of (user, item) rows."""
    order = np.lexsort((item_idx, user_idx))
    indptr = np.zeros(num_users + 1, dtype=np.int64)
    np.cumsum(np.bincount(user_idx, minlength=num_users), out=indptr[1:])
    return indptr, item_idx[order].astype(np.int64)


def _csr_entries(indptr: np.ndarray, indices: np.ndarray, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(row in ``users``, item) of every CSR entry of ``users``."""
    starts, ends = indptr[users], indptr[users + 1]
    rows = np.repeat(np.arange(len(users)), ends - starts)
    cols = np.concatenate([indices[s:e] for s, e in zip(starts, ends)]) if len(users) else np.array([], dtype=np.int64)
    return rows, cols.astype(np.int64)


def _mask(rows: np.ndarray, cols: np.ndarray, n_rows: int, begin: int, end: int) -> torch.Tensor:
    """Boolean [n_rows, end - begin] with the entries whose item is in [begin, end)."""
    inside = (cols >= begin) & (cols < end)
    mask = torch.zeros(n_rows, end - begin, dtype=torch.bool)
    mask[torch.from_numpy(rows[inside]), torch.from_numpy(cols[inside] - begin)] = True
    return mask


def _scores(scorer: Scorer, batch: np.ndarray, span: tuple[int, int], excluded, positives) -> tuple[torch.Tensor, torch.Tensor]:
    """float64 scores of ``batch`` x items [span) with training items at -inf, and
    the mask of held-out items; ``excluded``/``positives`` are (row, item) entries."""
    scores = scorer(batch, slice(*span)).to(torch.float64).clone()
    scores[_mask(*excluded, len(batch), *span)] = -torch.inf
    return scores, _mask(*positives, len(batch), *span)


def _ranked(scorer: Scorer, batch: np.ndarray, spans: list, excluded, positives, max_k: int):
    """(hits of the top ``max_k`` in rank order, rank of the best held-out item) of
    every user of ``batch``, merging a running top-K over the item chunks."""
    n = len(batch)
    top_scores = torch.empty(n, 0, dtype=torch.float64)
    top_hits = torch.empty(n, 0, dtype=torch.float64)
    best_pos = torch.full((n,), -torch.inf, dtype=torch.float64)
    for span in spans:
        scores, pos = _scores(scorer, batch, span, excluded, positives)
        values, at = torch.topk(scores, min(max_k, span[1] - span[0]), dim=1)
        merged = torch.cat([top_scores, values], 1)
        merged_hits = torch.cat([top_hits, pos.gather(1, at).to(torch.float64)], 1)
        keep = torch.topk(merged, min(max_k, merged.shape[1]), dim=1).indices
        top_scores, top_hits = merged.gather(1, keep), merged_hits.gather(1, keep)
        held_out = torch.where(pos, scores, torch.tensor(-torch.inf, dtype=torch.float64))
        best_pos = torch.maximum(best_pos, held_out.max(1).values)
    order = torch.argsort(top_scores, dim=1, descending=True, stable=True)
    above = torch.zeros(n, dtype=torch.float64)
    for span in spans:  # one item chunk: its scores are still at hand
        if len(spans) > 1:
            scores = _scores(scorer, batch, span, excluded, positives)[0]
        above += (scores > best_pos.unsqueeze(1)).sum(1).to(torch.float64)
    return top_hits.gather(1, order), above + 1


def rank_metrics(
    scorer: Scorer,
    users: np.ndarray,
    positives: tuple[np.ndarray, np.ndarray],
    excluded: tuple[np.ndarray, np.ndarray],
    num_items: int,
    ks: tuple[int, ...] = (10, 20),
    chunk: int = 1024,
    item_chunk: int | None = None,
) -> dict[str, float]:
    """Mean metrics over ``users``, ranking every item of the domain.

    ``positives`` and ``excluded`` are CSR (indptr, indices) over all users: each
    user's held-out items and training items. Users go in chunks of ``chunk`` and
    items in chunks of ``item_chunk`` (default: what keeps a chunk within
    ``SCORE_BUDGET`` scores); a running top-K merges the item chunks, so memory is
    bounded by the chunk sizes, not by users x items. With more than one item chunk,
    the MRR's rank count takes a second pass over the items.
    """
    max_k = min(max(ks), num_items)
    discounts = 1.0 / torch.log2(torch.arange(2, max_k + 2, dtype=torch.float64))
    sums = {f"{m}@{k}": 0.0 for k in ks for m in ("recall", "ndcg", "hr")}
    sums["mrr"] = 0.0
    for begin in range(0, len(users), chunk):
        batch = users[begin : begin + chunk]
        width = item_chunk or max(1, SCORE_BUDGET // max(len(batch), 1))
        spans = [(b, min(b + width, num_items)) for b in range(0, num_items, width)]
        held_out = _csr_entries(*positives, batch)
        hits, rank = _ranked(scorer, batch, spans, _csr_entries(*excluded, batch), held_out, max_k)
        n_pos = torch.from_numpy(np.bincount(held_out[0], minlength=len(batch))).to(torch.float64)
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


def _hashed_draws(case_keys: np.ndarray, width: int, num_items: int, seed, attempt: int) -> np.ndarray:
    """[cases, width] items in [0, num_items), each a hash of (seed, case, slot, attempt)."""
    salt = [int(s) for s in np.atleast_1d(seed)]
    base = hash_ids(case_keys, *salt, attempt)
    with np.errstate(over="ignore"):
        slots = base[:, None] + np.arange(1, width + 1, dtype=np.uint64)[None, :] * np.uint64(0xD1B54A32D192ED03)
    return (mix64(slots) % np.uint64(max(num_items, 1))).astype(np.int64)


def sample_negatives(
    users: np.ndarray, seen: tuple[np.ndarray, np.ndarray], num_items: int, count: int, seed,
    case_keys: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``count`` items per case drawn uniformly (with replacement) from the items the
    case's user never interacted with (``seen`` is a CSR over all users).

    Every draw is a hash of (seed, the case's key, slot, attempt): a case gets the
    same negatives in any batch, order or process. ``case_keys`` default to the
    cases' positions. Returns ([len(users), count] negatives, True where the case got
    them). A user who has interacted with every item has none to draw: those cases
    get False and -1s. Users who have seen nearly every item draw from their explicit
    list of unseen items instead of by rejection, so the loop always ends.
    """
    keys_of_case = np.arange(len(users)) if case_keys is None else np.asarray(case_keys)
    indptr, indices = seen
    out = np.full((len(users), count), -1, dtype=np.int64)
    distinct_seen = np.zeros(len(indptr) - 1, dtype=np.int64)
    seen_users = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
    seen_keys = np.unique(seen_users * num_items + indices)
    np.add.at(distinct_seen, seen_keys // max(num_items, 1), 1)
    unseen = num_items - distinct_seen[users]
    ok = unseen > 0
    # Rejection sampling while at least a tenth of the items are unseen; an explicit
    # unseen list (at most a tenth of the items) otherwise.
    dense = ok & (unseen * 10 < num_items)
    for case in np.flatnonzero(dense):
        user = users[case]
        candidates = np.setdiff1d(np.arange(num_items), indices[indptr[user] : indptr[user + 1]])
        out[case] = candidates[_hashed_draws(keys_of_case[case:case + 1], count, len(candidates), seed, 0)[0]]
    todo = np.flatnonzero(ok & ~dense)
    filled = np.zeros(len(users), dtype=np.int64)
    attempt = 0
    while len(todo):
        draw = _hashed_draws(keys_of_case[todo], count + count // 4 + 8, num_items, seed, attempt)
        attempt += 1
        keys = users[todo, None] * num_items + draw
        at = np.minimum(np.searchsorted(seen_keys, keys), max(len(seen_keys) - 1, 0))
        fresh_mask = seen_keys[at] != keys if len(seen_keys) else np.ones_like(draw, dtype=bool)
        still = []
        for row, case in enumerate(todo):
            fresh = draw[row][fresh_mask[row]][: count - filled[case]]
            out[case, filled[case] : filled[case] + len(fresh)] = fresh
            filled[case] += len(fresh)
            if filled[case] < count:
                still.append(case)
        todo = np.array(still, dtype=np.int64)
    return out, ok


def sampled_metrics(
    scorer: Scorer,
    users: np.ndarray,
    items: np.ndarray,
    negatives: np.ndarray,
    ks: tuple[int, ...] = (10, 20),
    seed: int = 0,
    chunk: int = 1024,
    case_keys: np.ndarray | None = None,
) -> dict[str, float]:
    """The sampled protocol (DisenCDR, CDRIB): each held-out (user, item) case is
    ranked against its own sampled negatives; HR@K, NDCG@K and MRR averaged over
    cases. Ties are broken uniformly at random (seeded), so a constant scorer gets
    the expected value of a random ranking rather than a flattering one; with
    ``case_keys`` the break is a hash of (seed, key), the same in any batch."""
    rng = np.random.default_rng(seed)
    sums = {f"{m}@{k}": 0.0 for k in ks for m in ("hr", "ndcg")}
    sums["mrr"] = 0.0
    order = np.argsort(users, kind="stable")
    # Only the items the chunk's cases need are scored: at most chunk^2 x (negatives
    # + 1) scores, kept within SCORE_BUDGET.
    chunk = max(1, min(chunk, int((SCORE_BUDGET / (negatives.shape[1] + 1)) ** 0.5)))
    for begin in range(0, len(order), chunk):
        cases = order[begin : begin + chunk]
        batch_users, inverse = np.unique(users[cases], return_inverse=True)
        columns, at = np.unique(np.concatenate([items[cases, None], negatives[cases]], 1), return_inverse=True)
        at = torch.from_numpy(at.reshape(len(cases), -1).astype(np.int64))
        block = scorer(batch_users, torch.from_numpy(columns.astype(np.int64)))
        rows = torch.from_numpy(inverse)
        pos = block[rows, at[:, 0]].unsqueeze(1)
        neg = block[rows.unsqueeze(1), at[:, 1:]]
        above = (neg > pos).sum(1).numpy()
        ties = (neg == pos).sum(1).numpy()
        if case_keys is None:
            broken = rng.integers(0, ties + 1)
        else:
            broken = (hash_ids(case_keys[cases], *np.atleast_1d(seed), 1 << 40) % (ties + 1).astype(np.uint64)).astype(np.int64)
        rank = above + broken + 1  # 1-based
        sums["mrr"] += float((1.0 / rank).sum())
        for k in ks:
            hit = rank <= k
            sums[f"hr@{k}"] += float(hit.sum())
            sums[f"ndcg@{k}"] += float((hit / np.log2(rank + 1)).sum())
    n = max(len(users), 1)
    return {name: value / n for name, value in sums.items()}
