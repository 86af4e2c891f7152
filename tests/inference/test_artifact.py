import numpy as np
import pandas as pd
import pytest

from graphtrain.inference import artifact


def _write(tmp_path, arrays):
    users = pd.DataFrame({"user_id": ["a", "b"], "user_idx": [0, 1]})
    items = pd.DataFrame({"domain": ["d"], "item_id": ["x"], "item_idx": [0]})
    artifact.write(str(tmp_path), manifest={"version": "v", "domains": ["d"]}, users=users, items=items, arrays=arrays)
    (tmp_path / "_SUCCESS").touch()
    return artifact.ModelArtifact.load(str(tmp_path))


def test_arrays_are_sharded_and_memory_mapped(tmp_path, monkeypatch):
    monkeypatch.setattr(artifact, "SHARD_BYTES", 4 * 3 * 7)  # 7 rows of 3 float32 per shard
    vectors = np.arange(50 * 3, dtype=np.float32).reshape(50, 3)
    loaded = _write(tmp_path, {"users@d": vectors, "items@d": vectors[:4]})
    entry = loaded.manifest["arrays"]["users@d"]
    assert len(entry["shards"]) == 8 and entry["shape"] == [50, 3] and entry["dtype"] == "float32"
    sharded = loaded.user_vectors("d")
    assert all(isinstance(s, np.memmap) for s in sharded.shards)
    assert np.array_equal(np.asarray(sharded), vectors)
    for begin, end in ((0, 7), (5, 9), (6, 30), (13, 14), (49, 50), (0, 50)):
        assert np.array_equal(sharded.rows(begin, end), vectors[begin:end]), (begin, end)
    index = np.array([49, 0, 13, 7, 6, 7])
    assert np.array_equal(sharded.take(index, axis=0), vectors[index])
    assert np.array_equal(loaded.user_vector("d", 20), vectors[20])
    assert np.array_equal(loaded.item_vectors("d"), vectors[:4])


def test_seen_rows_cross_shard_boundaries(tmp_path, monkeypatch):
    monkeypatch.setattr(artifact, "SHARD_BYTES", 8 * 2)  # two int64 per shard
    indptr, indices = np.array([0, 3, 3, 7]), np.array([1, 2, 5, 0, 1, 2, 3])
    loaded = _write(tmp_path, {"seen_indptr@d": indptr, "seen_indices@d": indices})
    assert loaded.seen("d", 0).tolist() == [1, 2, 5]
    assert loaded.seen("d", 1).tolist() == []
    assert loaded.seen("d", 2).tolist() == [0, 1, 2, 3]


def test_an_artifact_from_before_the_shards_still_loads(tmp_path):
    pd.DataFrame({"user_id": ["a"], "user_idx": [0]}).to_parquet(tmp_path / "users.parquet")
    pd.DataFrame({"domain": ["d"], "item_id": ["x"], "item_idx": [0]}).to_parquet(tmp_path / "items.parquet")
    np.savez(tmp_path / "embeddings.npz", **{"users@d": np.ones((1, 2), np.float32)})
    (tmp_path / "manifest.json").write_text('{"version": "old", "domains": ["d"]}')
    (tmp_path / "_SUCCESS").touch()
    loaded = artifact.ModelArtifact.load(str(tmp_path))
    assert loaded.user_vector("d", 0).tolist() == [1.0, 1.0]


def test_take_refuses_other_axes():
    with pytest.raises(ValueError, match="axis=1"):
        artifact.ShardedArray([np.zeros((2, 2))]).take([0], axis=1)


@pytest.mark.parametrize("damage", ["truncate", "delete", "manifest"])
def test_a_damaged_artifact_fails_at_load_naming_the_file(tmp_path, damage):
    from graphtrain.errors import ArtifactError

    vectors = np.arange(40 * 3, dtype=np.float32).reshape(40, 3)
    _write(tmp_path, {"users@d": vectors})
    shard = next((tmp_path / "arrays" / "users@d").glob("part-*.npy"))
    if damage == "truncate":
        shard.write_bytes(shard.read_bytes()[:-20])
    elif damage == "delete":
        shard.unlink()
    else:
        (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(ArtifactError, match="export it again"):
        artifact.ModelArtifact.load(str(tmp_path))


def test_export_refuses_non_finite_vectors():
    from graphtrain.errors import ArtifactError
    from graphtrain.inference.export import check_finite

    good = np.ones((4, 2), np.float32)
    check_finite({"users@d": good, "seen_indptr@d": np.arange(5)}, "ckpt")
    bad = good.copy()
    bad[2, 1] = np.nan
    with pytest.raises(ArtifactError, match=r"1 row\(s\) of 'users@d' are NaN or infinite"):
        check_finite({"users@d": bad}, "ckpt")
