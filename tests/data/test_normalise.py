import numpy as np
import pandas as pd

from graphtrain.data.normalise import Encoded, dedupe, index, k_core
from graphtrain.data.splits import random_ratio, temporal


def _rows(pairs, domain="a"):
    return pd.DataFrame(
        {
            "user_id": [u for u, _ in pairs],
            "item_id": [i for _, i in pairs],
            "domain": domain,
            "timestamp": np.arange(len(pairs), dtype=np.int64),
            "weight": 1.0,
            "split": "",
        }
    )


def _edges(rows, **kw):
    edges, users, items = index(rows, **kw)
    uid = users.set_index("user_idx")["user_id"]
    iid = items.set_index(["domain", "item_idx"])["item_id"]
    return edges.assign(
        user_id=uid[edges["user_idx"]].to_numpy(),
        item_id=[iid[(d, i)] for d, i in zip(edges["domain"], edges["item_idx"])],
    ), users, items


def test_dedupe_keeps_latest_or_sums_weights():
    rows = Encoded.from_rows(_rows([("u", "i"), ("u", "i"), ("u", "j")]).assign(weight=[1.0, 2.0, 5.0]))
    latest, _, _ = _edges(dedupe(rows, "latest"))
    latest = latest.set_index("item_id")
    assert latest.loc["i", "weight"] == 2.0 and latest.loc["i", "timestamp"] == 1
    summed, _, _ = _edges(dedupe(rows, "sum"))
    summed = summed.set_index("item_id")
    assert summed.loc["i", "weight"] == 3.0 and summed.loc["i", "timestamp"] == 1 and summed.loc["j", "weight"] == 5.0
    assert len(summed) == 2


def test_same_item_id_in_two_domains_is_two_items():
    rows = pd.concat([_rows([("u", "x")], "a"), _rows([("u", "x")], "b")])
    edges, _, items = _edges(dedupe(Encoded.from_rows(rows), "latest"))
    assert len(edges) == 2 and len(items) == 2


def test_k_core_is_iterated_to_a_fixed_point():
    # u3 has one interaction; removing it leaves item c with one -> removed too.
    rows = Encoded.from_rows(_rows([("u1", "a"), ("u1", "b"), ("u2", "a"), ("u2", "b"), ("u3", "c"), ("u1", "c")]))
    kept, users, _ = _edges(k_core(rows, 2))
    assert set(kept["user_id"]) == {"u1", "u2"} and set(kept["item_id"]) == {"a", "b"}
    assert set(users["user_id"]) == {"u1", "u2"}  # ids removed by the k-core get no index
    assert len(k_core(rows, 0)) == 6


def test_id_maps_keep_known_indices_and_append_new_ones():
    _, first_users, first_items = index(Encoded.from_rows(_rows([("u2", "x"), ("u1", "y")])))
    assert dict(zip(first_users["user_id"], first_users["user_idx"])) == {"u1": 0, "u2": 1}
    later = pd.concat([_rows([("u0", "y"), ("u2", "z")]), _rows([("u1", "q")], domain="b")])
    edges, users, items = _edges(Encoded.from_rows(later), previous_users=first_users, previous_items=first_items)
    assert dict(zip(users["user_id"], users["user_idx"])) == {"u1": 0, "u2": 1, "u0": 2}
    a = items[items["domain"] == "a"]
    assert dict(zip(a["item_id"], a["item_idx"])) == {"x": 0, "y": 1, "z": 2}
    assert items[items["domain"] == "b"]["item_idx"].tolist() == [0]
    assert set(zip(edges["user_id"], edges["item_id"])) == {("u0", "y"), ("u2", "z"), ("u1", "q")}


def test_ratio_and_temporal_splits():
    edges = pd.DataFrame(
        {"user_idx": np.repeat(np.arange(10), 10), "domain": "a", "timestamp": np.arange(100), "item_idx": np.tile(np.arange(10), 10)}
    )
    labels = random_ratio(edges, (0.8, 0.1, 0.1), seed=0)
    for user in range(10):
        mine = labels[edges["user_idx"].to_numpy() == user]
        assert (mine == "train").sum() == 8 and (mine == "valid").sum() == 1 and (mine == "test").sum() == 1
    cut = temporal(edges, (0.6, 0.2, 0.2))
    assert set(cut[:60]) == {"train"} and set(cut[-19:]) == {"test"}


def test_edges_are_written_as_ordered_shards(tmp_path, monkeypatch):
    import glob

    from graphtrain.data import dataset as dataset_module

    monkeypatch.setattr(dataset_module, "EDGE_SHARD_ROWS", 1000)
    edges = pd.DataFrame({"user_idx": np.arange(2500), "item_idx": np.arange(2500) % 7})
    dataset_module.Dataset.write_edges(edges, str(tmp_path))
    parts = sorted(glob.glob(str(tmp_path / "edges" / "part-*.parquet")))
    assert [len(pd.read_parquet(p)) for p in parts] == [1000, 1000, 500]
    pd.testing.assert_frame_equal(pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True), edges)
