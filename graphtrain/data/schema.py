"""The data contract for interaction logs (DESIGN.md "Data contract").

``validate_batch`` runs inside Ray Data workers: it normalises one batch to the
canonical column types and tags each row with the reason it is unusable ("" when
the row is good). Nothing is dropped here; the caller splits good rows from the
quarantine.
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


def _ids(values: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """Ids as strings (ints become their decimal text); mask of null/empty ids."""
    as_text = values.astype("string").str.strip()
    bad = as_text.isna() | (as_text == "")
    return as_text.fillna(""), bad.to_numpy()


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


def validate_batch(
    batch: pd.DataFrame, *, domain_override: Optional[str], allowed_domains: Optional[tuple[str, ...]]
) -> pd.DataFrame:
    """Return the batch in canonical types with a ``_reason`` column."""
    n = len(batch)
    out = pd.DataFrame(index=range(n))
    reason = np.full(n, "", dtype=object)

    def flag(mask: np.ndarray, why: str) -> None:
        reason[(reason == "") & mask] = why

    out["user_id"], bad = _ids(batch["user_id"].reset_index(drop=True))
    flag(bad, "null_user_id")
    out["item_id"], bad = _ids(batch["item_id"].reset_index(drop=True))
    flag(bad, "null_item_id")
    if domain_override and "domain" not in batch.columns:
        out["domain"] = domain_override
    else:
        out["domain"], bad = _ids(batch["domain"].reset_index(drop=True))
        flag(bad, "null_domain")
    if allowed_domains:
        flag(~out["domain"].isin(allowed_domains).to_numpy(), "unknown_domain")
    if "timestamp" in batch.columns:
        out["timestamp"], bad = _timestamps(batch["timestamp"].reset_index(drop=True))
        flag(bad, "bad_timestamp")
    else:
        out["timestamp"] = np.zeros(n, dtype="int64")
    if "weight" in batch.columns:
        weight = pd.to_numeric(batch["weight"].reset_index(drop=True), errors="coerce").to_numpy("float64")
        flag(np.isnan(weight) | (weight < 0), "bad_weight")
        out["weight"] = np.nan_to_num(weight, nan=0.0)
    else:
        out["weight"] = np.ones(n, dtype="float64")
    if "split" in batch.columns:
        split = batch["split"].reset_index(drop=True).astype("string").str.strip().str.lower()
        flag(~split.isin(SPLITS).fillna(False).to_numpy(dtype=bool), "bad_split")
        out["split"] = split.fillna("")
    else:
        out["split"] = ""
    out[REASON] = reason.astype(str)
    for column in ("user_id", "item_id", "domain", "split"):
        out[column] = out[column].astype(str)
    return out


def _arrow_ids(column: pa.ChunkedArray) -> tuple[pa.ChunkedArray, pa.ChunkedArray]:
    """Ids as trimmed strings; mask of null/empty ids."""
    text = pc.utf8_trim_whitespace(pc.cast(column, pa.large_string()))
    bad = pc.or_kleene(pc.is_null(text), pc.equal(text, ""))
    return pc.fill_null(text, ""), pc.fill_null(bad, True)


def _arrow_numbers(column: pa.ChunkedArray, parse) -> tuple[np.ndarray, np.ndarray]:
    """float64 values and a missing-or-unparsable mask. Numeric columns convert in
    Arrow; text columns (rare: a bad value made the reader keep text) go through
    the pandas parser ``parse``."""
    if pa.types.is_integer(column.type) or pa.types.is_floating(column.type):
        values = pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False)
        return values, np.isnan(values)
    return parse(column.to_pandas())


def validate_table(table: pa.Table, *, domain_override: Optional[str], allowed_domains: Optional[tuple[str, ...]]) -> pa.Table:
    """Arrow twin of :func:`validate_batch` (same columns, same reasons), used by
    ingest's Ray Data workers: it avoids two pandas conversions per batch."""
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
        ts, bad = _arrow_numbers(table["timestamp"], _timestamps)
        if ts.dtype != np.int64:
            ts = np.where(bad, 0, ts).astype(np.int64)
        flag(bad, "bad_timestamp")
        columns["timestamp"] = pa.array(ts, pa.int64())
    else:
        columns["timestamp"] = pa.array(np.zeros(n, dtype=np.int64))
    if "weight" in table.column_names:
        weight, _ = _arrow_numbers(table["weight"], lambda s: (pd.to_numeric(s, errors="coerce").to_numpy("float64"), None))
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
    if "path" in table.column_names:
        columns["path"] = table["path"]
    return pa.table(columns)
