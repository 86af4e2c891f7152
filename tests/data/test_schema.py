import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from graphtrain.data.schema import REASON, check_columns, validate_table
from graphtrain.errors import DataContractError


def validate(batch, **kwargs):
    # Arrow columns have one type: mixed Python objects arrive as text (as a CSV reader gives them).
    batch = batch.astype({c: "string" for c in batch.columns if batch[c].dtype == object})
    return validate_table(pa.Table.from_pandas(batch, preserve_index=False), **kwargs).to_pandas()



def test_missing_column_names_it_and_the_columns_found():
    with pytest.raises(DataContractError) as err:
        check_columns(["user", "item_id", "domain"], domain_override=None, where="x.csv")
    assert "user_id" in str(err.value) and "['user', 'item_id', 'domain']" in str(err.value)


def test_domain_override_stands_in_for_the_column():
    check_columns(["user_id", "item_id"], domain_override="books", where="x")
    with pytest.raises(DataContractError, match="--domain"):
        check_columns(["user_id", "item_id"], domain_override=None, where="x")


def test_every_reason_is_flagged_once_and_good_rows_pass():
    batch = pd.DataFrame(
        {
            "user_id": ["u1", None, "u3", "u4", "u5", "u6", "u7", 8],
            "item_id": ["i1", "i2", "", "i4", "i5", "i6", "i7", 9],
            "domain": ["a", "a", "a", "zzz", "a", "a", "a", "b"],
            "timestamp": ["1700000000", 1, 2, 3, "not a time", 5, 6, "2024-01-02T00:00:00Z"],
            "weight": [1.0, 1.0, 1.0, 1.0, 1.0, -2.0, 1.0, np.nan],
            "split": ["train", "train", "train", "train", "train", "train", "holdout", "test"],
        }
    )
    out = validate(batch, domain_override=None, allowed_domains=("a", "b"))
    assert list(out[REASON]) == [
        "",
        "null_user_id",
        "null_item_id",
        "unknown_domain",
        "bad_timestamp",
        "bad_weight",
        "bad_split",
        "bad_weight",
    ]
    assert out.loc[0, "timestamp"] == 1_700_000_000
    assert out.loc[7, "user_id"] == "8"  # int ids become their text
    assert out["timestamp"].dtype == np.int64


def test_iso_timestamps_parse_to_seconds():
    batch = pd.DataFrame({"user_id": ["u"], "item_id": ["i"], "domain": ["a"], "timestamp": ["2024-01-02T00:00:00Z"]})
    out = validate(batch, domain_override=None, allowed_domains=None)
    assert out.loc[0, REASON] == ""
    assert out.loc[0, "timestamp"] == 1_704_153_600


def test_domain_override_and_numeric_ids():
    batch = pd.DataFrame({"user_id": [1, 2], "item_id": [10, None], "timestamp": [5, 6], "weight": [1.5, 2.0]})
    out = validate(batch, domain_override="books", allowed_domains=None)
    assert list(out["user_id"]) == ["1", "2"] and list(out["domain"]) == ["books", "books"]
    assert list(out[REASON]) == ["", "null_item_id"]
    assert list(out["timestamp"]) == [5, 6] and list(out["weight"]) == [1.5, 2.0]
