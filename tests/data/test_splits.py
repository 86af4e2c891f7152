import numpy as np
import pandas as pd

from graphtrain.data.buckets import seeded_unit
from graphtrain.data.splits import cold_start, leave_one_out, random_ratio, temporal_cut


def _edges():
    rows = []
    for user in range(6):
        for domain, n in (("a", 4), ("b", 3)):
            for k in range(n):
                rows.append({"user_idx": user, "domain": domain, "item_idx": k, "timestamp": 100 + k})
    rows.append({"user_idx": 6, "domain": "a", "item_idx": 0, "timestamp": 1})  # too short to split
    return pd.DataFrame(rows)


def _tiebreak(edges, seed=0):
    return seeded_unit((edges["user_idx"].astype(str) + "/" + edges["domain"] + "/" + edges["item_idx"].astype(str)), seed)


def test_leave_one_out_holds_out_the_latest_two():
    edges = _edges()
    labels = leave_one_out(edges, _tiebreak(edges))
    user0 = edges.assign(split=labels)[(edges["user_idx"] == 0) & (edges["domain"] == "a")]
    assert user0.set_index("timestamp")["split"].to_dict() == {100: "train", 101: "train", 102: "valid", 103: "test"}
    assert labels[-1] == "train"


def test_ties_are_broken_by_the_seeded_hash_not_by_row_order():
    edges = _edges().assign(timestamp=0)
    shuffled = edges.sample(frac=1.0, random_state=1)
    labels = pd.Series(leave_one_out(edges, _tiebreak(edges)), index=edges.index)
    again = pd.Series(leave_one_out(shuffled.reset_index(drop=True), _tiebreak(shuffled.reset_index(drop=True))), index=shuffled.index)
    pd.testing.assert_series_equal(labels, again.sort_index())


def test_cold_start_moves_every_target_edge_of_chosen_users():
    edges = _edges()
    chosen = edges["user_idx"].isin([0, 2, 4, 6]).to_numpy()  # 6 has no target history
    before = leave_one_out(edges, _tiebreak(edges))
    labels, cold = cold_start(edges, before, "a", "b", chosen, _tiebreak(edges))
    assert cold.tolist() == [0, 2, 4]
    for user in cold:
        mine = labels[((edges["domain"] == "b") & (edges["user_idx"] == user)).to_numpy()]
        assert (mine == "test").sum() == 2 and (mine == "valid").sum() == 1
    # Source-domain history of cold users is untouched.
    source_of_cold = ((edges["domain"] == "a") & edges["user_idx"].isin(cold)).to_numpy()
    assert np.array_equal(labels[source_of_cold], before[source_of_cold])


def test_ratio_and_temporal_splits():
    edges = pd.DataFrame(
        {"user_idx": np.repeat(np.arange(10), 10), "domain": "a", "timestamp": np.arange(100), "item_idx": np.tile(np.arange(10), 10)}
    )
    labels = random_ratio(edges, (0.8, 0.1, 0.1), _tiebreak(edges))
    for user in range(10):
        mine = labels[edges["user_idx"].to_numpy() == user]
        assert (mine == "train").sum() == 8 and (mine == "valid").sum() == 1 and (mine == "test").sum() == 1
    cut = temporal_cut(edges, (59, 79))
    assert set(cut[:60]) == {"train"} and set(cut[60:80]) == {"valid"} and set(cut[80:]) == {"test"}


def test_seeded_unit_is_uniform_and_depends_on_the_seed():
    keys = [f"user-{i}" for i in range(20000)]
    a, b = seeded_unit(keys, 0), seeded_unit(keys, 1)
    assert 0 <= a.min() and a.max() < 1 and abs(a.mean() - 0.5) < 0.01
    assert not np.array_equal(a, b) and np.array_equal(a, seeded_unit(keys, 0))
