"""Top-K inner-product search over one domain's item vectors.

Exact below ``approximate_above`` items: scores in item chunks with a running top-K,
so memory is bounded by ``queries x CHUNK_ITEMS`` whatever the catalogue size. Above
it, an approximate index from faiss (inner product), built when the model loads
and kept in a cache folder beside the model, so the next replica or restart reads it:

- ``hnsw``: ``IndexHNSWFlat``, graph search; slower to build, the best recall per
  microsecond.
- ``ivf``: ``IndexIVFFlat`` over sqrt(n)-ish k-means lists, ``nprobe`` of them
  searched; builds in seconds.

Excluded items (what the user has already seen) are filtered after the search: the
index is asked for ``k + len(excluded)`` and a query left with fewer than ``k`` falls
back to the exact scan, so an answer is never short because of the filter.
"""

from __future__ import annotations

import io
import logging
import uuid
from dataclasses import dataclass

import numpy as np

from graphtrain import storage

logger = logging.getLogger(__name__)

CHUNK_ITEMS = 1 << 17
ANN_METHODS = ("hnsw", "ivf")


@dataclass(frozen=True)
class AnnSettings:
    method: str = "hnsw"
    hnsw_m: int = 32
    ef_construction: int = 80
    ef_search: int = 128
    nprobe: int = 64

    def __post_init__(self):
        if self.method not in ANN_METHODS:
            from graphtrain.errors import ConfigError

            raise ConfigError("ann", self.method, f"use one of {ANN_METHODS}")


DEFAULT_ANN = AnnSettings()


def exact_top_k(
    vectors, queries: np.ndarray, k: int, exclude: list[np.ndarray] | None = None
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per query, (item indices, scores) of the ``k`` best items not in ``exclude``,
    best first (ties: lower index first)."""
    n_items, n_queries = len(vectors), len(queries)
    best_idx = np.empty((n_queries, 0), dtype=np.int64)
    best_score = np.empty((n_queries, 0), dtype=np.float32)
    for begin in range(0, n_items, CHUNK_ITEMS):
        chunk = np.asarray(vectors[begin : begin + CHUNK_ITEMS], dtype=np.float32)
        scores = queries @ chunk.T  # [queries, chunk]
        if exclude is not None:
            for q, seen in enumerate(exclude):
                inside = seen[(seen >= begin) & (seen < begin + len(chunk))] - begin
                scores[q, inside] = -np.inf
        take = min(k, scores.shape[1])
        top = np.argpartition(-scores, take - 1, axis=1)[:, :take] if take < scores.shape[1] else np.broadcast_to(
            np.arange(scores.shape[1]), scores.shape
        )
        best_idx = np.concatenate([best_idx, top + begin], axis=1)
        best_score = np.concatenate([best_score, np.take_along_axis(scores, top, axis=1)], axis=1)
        if best_idx.shape[1] > k:  # keep the running best k
            keep = np.argpartition(-best_score, k - 1, axis=1)[:, :k]
            best_idx = np.take_along_axis(best_idx, keep, axis=1)
            best_score = np.take_along_axis(best_score, keep, axis=1)
    out_idx, out_score = [], []
    for q in range(n_queries):
        order = np.lexsort((best_idx[q], -best_score[q]))
        valid = order[np.isfinite(best_score[q][order])]
        out_idx.append(best_idx[q][valid])
        out_score.append(best_score[q][valid])
    return out_idx, out_score


class ItemIndex:
    """Top-K over one domain's item vectors; exact or faiss by catalogue size."""

    def __init__(self, vectors, approximate_above: int, ann: AnnSettings | None = None, cache_uri: str | None = None):
        """``cache_uri``: a folder (any storage URI) where a built faiss index is kept
        for the next replica or restart (an HNSW build over 1M items takes minutes)."""
        self.vectors = vectors
        self.ann = ann or DEFAULT_ANN
        self.faiss_index = None
        if len(vectors) > approximate_above:
            cached = None if cache_uri is None else storage.join(cache_uri, self._cache_name())
            self.faiss_index = _read_cached(cached) if cached else None
            if self.faiss_index is None or self.faiss_index.ntotal != len(vectors):
                self.faiss_index = _build(np.ascontiguousarray(np.asarray(vectors, dtype=np.float32)), self.ann)
                if cached:
                    _write_cached(cached, self.faiss_index)

    def _cache_name(self) -> str:
        a = self.ann
        params = f"m{a.hnsw_m}-efc{a.ef_construction}" if a.method == "hnsw" else "ivf"
        return f"{a.method}-{params}-{len(self.vectors)}x{self.vectors.shape[1]}.faiss.npy"

    @property
    def method(self) -> str:
        return "exact" if self.faiss_index is None else self.ann.method

    def search(self, queries: np.ndarray, k: int, exclude: list[np.ndarray] | None = None):
        """Per query, (item indices, scores), best first, at most ``k``."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if self.faiss_index is None:
            return exact_top_k(self.vectors, queries, k, exclude)
        excluded = [np.empty(0, dtype=np.int64)] * len(queries) if exclude is None else exclude
        ask = min(len(self.vectors), k + max((len(e) for e in excluded), default=0))
        _tune(self.faiss_index, self.ann, ask)
        scores, idx = self.faiss_index.search(queries, ask)
        out_idx, out_score, short = [], [], []
        for q in range(len(queries)):
            found = idx[q] >= 0
            keep = found & ~np.isin(idx[q], excluded[q])
            chosen, chosen_scores = idx[q][keep][:k].astype(np.int64), scores[q][keep][:k]
            if len(chosen) < min(k, len(self.vectors) - len(excluded[q])):
                short.append(q)
            out_idx.append(chosen)
            out_score.append(chosen_scores)
        if short:  # the filter left too few: scan those queries exactly
            exact_idx, exact_score = exact_top_k(self.vectors, queries[short], k, [excluded[q] for q in short])
            for q, i, s in zip(short, exact_idx, exact_score):
                out_idx[q], out_score[q] = i, s
        return out_idx, out_score


def _read_cached(uri: str):
    """The faiss index serialised at ``uri`` (a uint8 ``.npy``, no pickle), or None."""
    import faiss

    try:
        fs, path = storage.filesystem(uri)
        with fs.open_input_stream(path) as f:
            return faiss.deserialize_index(np.load(io.BytesIO(f.read()), allow_pickle=False))
    except (OSError, ValueError, RuntimeError):
        return None


def _write_cached(uri: str, index) -> None:
    import faiss

    buffer = io.BytesIO()
    np.save(buffer, faiss.serialize_index(index), allow_pickle=False)
    try:
        fs, path = storage.filesystem(uri)
        fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
        partial = f"{path}.{uuid.uuid4().hex[:8]}.partial"  # readers never see half a file
        with fs.open_output_stream(partial) as out:
            out.write(buffer.getvalue())
        fs.move(partial, path)
    except OSError as err:  # a read-only model store: serve anyway, rebuild next time
        logger.warning("could not keep the faiss index at %s: %s", uri, err)


def _build(vectors: np.ndarray, ann: AnnSettings):
    import faiss

    n, dim = vectors.shape
    if ann.method == "hnsw":
        index = faiss.IndexHNSWFlat(dim, ann.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = ann.ef_construction
    else:
        nlist = int(min(max(16, np.sqrt(n)), n // 39 or 1))  # faiss wants >= 39 points per list
        quantizer = faiss.IndexFlatIP(dim)  # faiss's Python wrapper keeps it referenced
        index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
        sample = vectors[np.random.default_rng(0).permutation(n)[: max(nlist * 64, 10_000)]]
        index.train(sample)
    index.add(vectors)
    return index


def _tune(index, ann: AnnSettings, k: int) -> None:
    if ann.method == "hnsw":
        index.hnsw.efSearch = max(ann.ef_search, k)
    else:
        index.nprobe = ann.nprobe
