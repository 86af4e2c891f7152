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
