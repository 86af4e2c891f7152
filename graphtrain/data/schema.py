"""The data contract for interaction logs (DESIGN.md "Data contract").

``validate_table`` runs inside Ray Data workers on Arrow batches: it normalises one
batch to the canonical column types and tags each row with the reason it is
unusable ("" when the row is good). Nothing is dropped here; the caller splits good
rows from the quarantine.
"""

from __future__ import annotations

from typing import Iterable, Optional

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from graphtrain.errors import DataContractError

REQUIRED = ("user_id", "item_id", "domain")
OPTIONAL = ("timestamp", "weight", "split")
SPLITS = ("train", "valid", "test")
REASON = "_reason"
RAW = "raw"  # the text of a row that could not be parsed into fields
PATH = "path"
CANONICAL = ("user_id", "item_id", "domain", "timestamp", "weight", "split")

# Reasons a row is quarantined, in the order they are checked.
REASONS = (
    "null_user_id",
    "null_item_id",
    "null_domain",
    "unknown_domain",
    "bad_timestamp",
    "bad_weight",
    "bad_split",
    "malformed_row",
)


def check_columns(columns: Iterable[str], *, domain_override: Optional[str], where: str) -> None:
    """Fail before any work if a required column is missing."""
    found = list(columns)
    required = [c for c in REQUIRED if not (c == "domain" and domain_override)]
    missing = [c for c in required if c not in found]
    if missing:
        fix = " or pass --domain NAME when a whole input is one domain" if "domain" in missing else ""
        raise DataContractError(
            f"{where}: missing required column(s) {missing}; found columns {found}. "
            f"Rename the columns to the data contract (user_id, item_id, domain){fix}."
        )


def _timestamps(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """int64 seconds; mask of values that are missing or unparsable.

    Accepts datetimes, numbers (seconds) and text holding either (ISO 8601 dates).
    """
    if pd.api.types.is_datetime64_any_dtype(values):
        seconds = (values - pd.Timestamp(0, tz=getattr(values.dt, "tz", None))) // pd.Timedelta(seconds=1)
        numeric = seconds.to_numpy(dtype="float64", na_value=np.nan)
    elif pd.api.types.is_numeric_dtype(values):
        numeric = values.to_numpy(dtype="float64", na_value=np.nan)
    else:
        # Text of any flavour (object, pandas string, Arrow string): numbers first, then dates.
        text = values.astype("string")
        number = pd.to_numeric(text, errors="coerce").astype("Float64")
        parsed = pd.to_datetime(text.where(number.isna()), errors="coerce", utc=True, format="mixed")
        from_dates = (parsed - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)
        numeric = number.fillna(from_dates.astype("Float64")).to_numpy(dtype="float64", na_value=np.nan)
    bad = np.isnan(numeric)
    return np.where(bad, 0, numeric).astype("int64"), bad


def _numbers_from_text(column: pa.ChunkedArray) -> Optional[np.ndarray]:
    """float64 of a text column when every value is a number or null (Arrow's fast
    cast); None when any value needs the per-row parser."""
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        return None
    try:
        return pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None


def _arrow_ids(column: pa.ChunkedArray) -> tuple[pa.ChunkedArray, pa.ChunkedArray]:
    """Ids as trimmed strings; mask of null/empty ids."""
    text = pc.utf8_trim_whitespace(pc.cast(column, pa.large_string()))
    bad = pc.or_kleene(pc.is_null(text), pc.equal(text, ""))
    return pc.fill_null(text, ""), pc.fill_null(bad, True)


def _weights(column: pa.ChunkedArray) -> np.ndarray:
    """float64 weights, NaN where missing or unparsable."""
    if pa.types.is_integer(column.type) or pa.types.is_floating(column.type):
        return pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False)
    fast = _numbers_from_text(column)
    if fast is not None:
        return fast
    return pd.to_numeric(column.to_pandas(), errors="coerce").to_numpy("float64")


def validate_table(table: pa.Table, *, domain_override: Optional[str], allowed_domains: Optional[tuple[str, ...]]) -> pa.Table:
    """Return the batch in canonical types with a ``_reason`` column (and the
    reader's ``path`` column when present). Arrow in, Arrow out: no pandas
    conversion per batch in the workers."""
    n = table.num_rows
    reason = np.full(n, "", dtype=object)

    def flag(mask, why: str) -> None:
        mask = np.asarray(mask, dtype=bool)
        reason[(reason == "") & mask] = why

    columns = {}
    for name, why in (("user_id", "null_user_id"), ("item_id", "null_item_id")):
        columns[name], bad = _arrow_ids(table[name])
        flag(bad.to_numpy(zero_copy_only=False), why)
    if domain_override and "domain" not in table.column_names:
        columns["domain"] = pa.array(np.full(n, domain_override, dtype=object), pa.large_string())
    else:
        columns["domain"], bad = _arrow_ids(table["domain"])
        flag(bad.to_numpy(zero_copy_only=False), "null_domain")
    if allowed_domains:
        known = pc.is_in(columns["domain"], value_set=pa.array(list(allowed_domains), pa.large_string()))
        flag(~known.to_numpy(zero_copy_only=False), "unknown_domain")
    if "timestamp" in table.column_names:
        column = table["timestamp"]
        numeric = pa.types.is_integer(column.type) or pa.types.is_floating(column.type)
        seconds = pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False) if numeric else _numbers_from_text(column)
        if seconds is not None:
            bad = np.isnan(seconds)
            ts = np.where(bad, 0, seconds).astype(np.int64)
        else:  # text or datetimes: the pandas parser handles every flavour
            ts, bad = _timestamps(column.to_pandas())
        flag(bad, "bad_timestamp")
        columns["timestamp"] = pa.array(ts, pa.int64())
    else:
        columns["timestamp"] = pa.array(np.zeros(n, dtype=np.int64))
    if "weight" in table.column_names:
        weight = _weights(table["weight"])
        flag(np.isnan(weight) | (weight < 0), "bad_weight")
        columns["weight"] = pa.array(np.nan_to_num(weight, nan=0.0), pa.float64())
    else:
        columns["weight"] = pa.array(np.ones(n, dtype=np.float64))
    if "split" in table.column_names:
        split = pc.utf8_lower(pc.utf8_trim_whitespace(pc.cast(table["split"], pa.large_string())))
        known = pc.fill_null(pc.is_in(split, value_set=pa.array(list(SPLITS), pa.large_string())), False)
        flag(~known.to_numpy(zero_copy_only=False), "bad_split")
        columns["split"] = pc.fill_null(split, "")
    else:
        columns["split"] = pa.array(np.full(n, "", dtype=object), pa.large_string())
    columns[REASON] = pa.array(reason, pa.large_string())
    if PATH in table.column_names:
        columns[PATH] = table[PATH]
    return pa.table(columns)


def as_text(table: pa.Table) -> pa.Table:
    """The contract columns of ``table`` as text, exactly as read (null where absent),
    for the quarantine: a bad value is kept as it was, not as it was parsed."""
    n = table.num_rows
    columns = {}
    for name in CANONICAL:
        if name in table.column_names:
            columns[name] = pc.cast(table[name], pa.large_string())
        else:
            columns[name] = pa.nulls(n, pa.large_string())
    columns[RAW] = table[RAW] if RAW in table.column_names else pa.nulls(n, pa.large_string())
    return pa.table(columns)


def split_valid(
    table: pa.Table, *, domain_override: Optional[str], allowed_domains: Optional[tuple[str, ...]]
) -> tuple[pa.Table, pa.Table]:
    """(good rows in canonical types, bad rows as read with their ``_reason``).

    A table holding only a ``raw`` column is rows that could not be parsed at all.
    """
    if table.column_names == [RAW]:
        bad = as_text(table)
        return _empty_canonical(), bad.append_column(REASON, pa.array(["malformed_row"] * table.num_rows, pa.large_string()))
    checked = validate_table(table, domain_override=domain_override, allowed_domains=allowed_domains)
    reason = checked[REASON]
    is_bad = pc.not_equal(reason, "")
    good = checked.filter(pc.invert(is_bad)).select(list(CANONICAL))
    bad = as_text(table.filter(is_bad)).append_column(REASON, reason.filter(is_bad))
    return good, bad


def _empty_canonical() -> pa.Table:
    return pa.schema(CANONICAL_TYPES).empty_table()


CANONICAL_TYPES = [
    ("user_id", pa.large_string()), ("item_id", pa.large_string()), ("domain", pa.large_string()),
    ("timestamp", pa.int64()), ("weight", pa.float64()), ("split", pa.large_string()),
]
