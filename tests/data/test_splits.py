import numpy as np
import pandas as pd

from graphtrain.data.splits import cold_start, leave_one_out


def _edges():
    rows = []
    for user in range(6):
        for domain, n in (("a", 4), ("b", 3)):
            for k in range(n):
                rows.append({"user_idx": user, "domain": domain, "item_idx": k, "timestamp": 100 + k})
    rows.append({"user_idx": 6, "domain": "a", "item_idx": 0, "timestamp": 1})  # too short to split
    return pd.DataFrame(rows)


def test_leave_one_out_holds_out_the_latest_two():
    edges = _edges()
    labels = leave_one_out(edges, seed=0)
    user0 = edges.assign(split=labels)[(edges["user_idx"] == 0) & (edges["domain"] == "a")]
    assert user0.set_index("timestamp")["split"].to_dict() == {100: "train", 101: "train", 102: "valid", 103: "test"}
    assert labels[-1] == "train"


def test_cold_start_moves_every_target_edge_of_chosen_users():
    edges = _edges()
    labels, cold = cold_start(edges, leave_one_out(edges, 0), "a", "b", fraction=0.5, seed=0)
    assert len(cold) == 3
    target_of_cold = (edges["domain"] == "b") & edges["user_idx"].isin(cold)
    assert set(labels[target_of_cold.to_numpy()]) <= {"valid", "test"}
    for user in cold:
        mine = labels[((edges["domain"] == "b") & (edges["user_idx"] == user)).to_numpy()]
        assert (mine == "test").sum() == 2 and (mine == "valid").sum() == 1
    # Source-domain history of cold users is untouched.
    source_of_cold = (edges["domain"] == "a") & edges["user_idx"].isin(cold)
    assert np.array_equal(labels[source_of_cold.to_numpy()], leave_one_out(edges, 0)[source_of_cold.to_numpy()])
