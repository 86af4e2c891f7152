import numpy as np
import pytest

from graphtrain.serve import index as index_module
from graphtrain.serve.index import AnnSettings, ItemIndex, exact_top_k


def _brute(vectors, query, k, exclude):
    scores = vectors @ query
    scores[exclude] = -np.inf
    order = np.lexsort((np.arange(len(scores)), -scores))
    return [i for i in order[:k] if np.isfinite(scores[i])]


def test_exact_search_in_chunks_equals_brute_force(monkeypatch):
    monkeypatch.setattr(index_module, "CHUNK_ITEMS", 7)
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(50, 4)).astype(np.float32)
    queries = rng.normal(size=(3, 4)).astype(np.float32)
    exclude = [np.array([0, 8, 9]), np.array([], dtype=np.int64), np.arange(45)]
    idx, scores = exact_top_k(vectors, queries, 10, exclude)
    for q in range(3):
        assert idx[q].tolist() == _brute(vectors, queries[q], 10, exclude[q])
        np.testing.assert_allclose(scores[q], (vectors @ queries[q])[idx[q]], rtol=1e-5)
    assert len(idx[2]) == 5  # only five items left unseen


@pytest.mark.parametrize("method", ["hnsw", "ivf"])
def test_approximate_search_filters_seen_items_and_never_comes_back_short(method):
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(3000, 8)).astype(np.float32)
    index = ItemIndex(vectors, approximate_above=1000, ann=AnnSettings(method=method, nprobe=64))
    assert index.method == method
    query = rng.normal(size=(1, 8)).astype(np.float32)
    top = _brute(vectors, query[0], 50, [])
    exclude = [np.array(top[:40])]
    idx, _ = index.search(query, 10, exclude)
    assert len(idx[0]) == 10 and not set(idx[0].tolist()) & set(top[:40])
    everything_but_three = [np.arange(2997)]
    idx, _ = index.search(query, 10, everything_but_three)
    assert sorted(idx[0].tolist()) == [2997, 2998, 2999]


def test_a_built_index_is_kept_and_read_back(tmp_path):
    vectors = np.random.default_rng(3).normal(size=(600, 8)).astype(np.float32)
    first = ItemIndex(vectors, approximate_above=100, cache_uri=str(tmp_path))
    kept = list(tmp_path.iterdir())
    assert len(kept) == 1 and kept[0].name.startswith("hnsw-") and kept[0].stat().st_size > 0
    second = ItemIndex(vectors, approximate_above=100, cache_uri=str(tmp_path))
    queries = vectors[:5]
    assert [list(i) for i in second.search(queries, 7)[0]] == [list(i) for i in first.search(queries, 7)[0]]
    changed = ItemIndex(vectors[:500], approximate_above=100, cache_uri=str(tmp_path))  # another shape: rebuilt
    assert changed.faiss_index.ntotal == 500 and len(list(tmp_path.iterdir())) == 2
