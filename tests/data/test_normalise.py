import numpy as np
import pandas as pd

from graphtrain.data.normalise import Encoded, dedupe


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


def _frame(rows: Encoded) -> pd.DataFrame:
    return pd.DataFrame(
        {"item_id": rows.item_ids[rows.item], "domain": rows.domains[rows.domain], "timestamp": rows.timestamp, "weight": rows.weight}
    )


def test_dedupe_keeps_latest_or_sums_weights():
    rows = Encoded.from_rows(_rows([("u", "i"), ("u", "i"), ("u", "j")]).assign(weight=[1.0, 2.0, 5.0]))
    latest = _frame(dedupe(rows, "latest")).set_index("item_id")
    assert latest.loc["i", "weight"] == 2.0 and latest.loc["i", "timestamp"] == 1
    summed = _frame(dedupe(rows, "sum")).set_index("item_id")
    assert summed.loc["i", "weight"] == 3.0 and summed.loc["i", "timestamp"] == 1 and summed.loc["j", "weight"] == 5.0
    assert len(summed) == 2


def test_same_item_id_in_two_domains_is_two_rows():
    rows = pd.concat([_rows([("u", "x")], "a"), _rows([("u", "x")], "b")])
    assert len(dedupe(Encoded.from_rows(rows), "latest")) == 2
