"""`graphtrain ingest`: interaction logs -> dataset artifact, with Ray Data.

Ray Data reads every input file in parallel and validates each batch in the
workers (:func:`graphtrain.data.schema.validate_table`). The driver then builds the
id maps, dedupes, splits and writes the artifact atomically (``storage``).
"""

from __future__ import annotations

import os
import time
from collections import Counter
from functools import partial
from urllib.parse import urlparse

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs

from graphtrain import storage
from graphtrain.config import IngestConfig
from graphtrain.data import dataset as layout
from graphtrain.data import normalise as norm
from graphtrain.data import schema, splits
from graphtrain.data.dataset import Dataset
from graphtrain.errors import DataContractError

FORMATS = {
    ".parquet": "parquet",
    ".csv": "csv",
    ".csv.gz": "csv",
    ".json": "json",
    ".jsonl": "json",
    ".jsonl.gz": "json",
    ".json.gz": "json",
}


def _format_of(path: str) -> str | None:
    name = path.lower()
    for suffix in sorted(FORMATS, key=len, reverse=True):
        if name.endswith(suffix):
            return FORMATS[suffix]
    return None


def expand_inputs(uris: tuple[str, ...], storage_options: dict | None = None) -> dict[str, list[str]]:
    """Group the input files by format; directories are searched recursively.

    Paths are returned inside their filesystem (no scheme), ready for Ray Data's
    ``filesystem=`` argument.
    """
    by_format: dict[str, list[str]] = {}
    for uri in uris:
        fs, path = storage.filesystem(uri, storage_options)
        info = fs.get_file_info(path)
        if info.type == pafs.FileType.NotFound:
            raise DataContractError(f"input {uri!r} does not exist")
        if info.type == pafs.FileType.Directory:
            files = [
                f.path
                for f in fs.get_file_info(pafs.FileSelector(path, recursive=True))
                if f.type == pafs.FileType.File and not os.path.basename(f.path).startswith((".", "_"))
            ]
        else:
            files = [path]
        for file in sorted(files):
            fmt = _format_of(file)
            if fmt is None:
                if info.type == pafs.FileType.Directory:
                    continue
                raise DataContractError(f"input {uri!r}: unknown format; use .parquet, .csv[.gz] or .jsonl[.gz]")
            by_format.setdefault(fmt, []).append(file)
    if not by_format:
        raise DataContractError(f"no .parquet/.csv/.jsonl files found under {list(uris)}")
    return by_format


def _read(fmt: str, paths: list[str], fs: pafs.FileSystem):
    import ray.data

    reader = {"parquet": ray.data.read_parquet, "csv": ray.data.read_csv, "json": ray.data.read_json}[fmt]
    return reader(paths, filesystem=fs, include_paths=True)




def read_validated(config: IngestConfig) -> pd.DataFrame:
    """All input rows in canonical types, each tagged with its quarantine reason."""
    from graphtrain.ray_env import ensure_ray

    ray = ensure_ray()
    allowed = tuple(d for d in (config.source_domain, config.target_domain) if d) or None
    if config.domain and allowed and config.domain not in allowed:
        raise DataContractError(f"--domain {config.domain!r} is neither the source nor the target domain {allowed}")
    # One filesystem object for all inputs: it pickles to the Ray Data workers with
    # its endpoint and credentials.
    schemes = {urlparse(uri).scheme if not storage.is_local(uri) else "local" for uri in config.inputs}
    if len(schemes) > 1:
        raise DataContractError(f"inputs mix storage systems {sorted(schemes)}; ingest each into its own dataset")
    fs, _ = storage.filesystem(config.inputs[0], config.storage_options)
    tables = []
    for fmt, paths in expand_inputs(config.inputs, config.storage_options).items():
        ds = _read(fmt, paths, fs)
        schema.check_columns(ds.columns(), domain_override=config.domain, where=f"{fmt} inputs {paths[:3]}")
        # Validation runs in the workers on Arrow batches; the driver converts to
        # pandas once, after concatenating.
        validate = partial(schema.validate_table, domain_override=config.domain, allowed_domains=allowed)
        refs = ds.map_batches(validate, batch_format="pyarrow").to_arrow_refs()
        tables.extend(ray.get(refs))
    return pa.concat_tables(tables, promote_options="default").to_pandas()


def split_labels(edges: pd.DataFrame, config: IngestConfig) -> tuple[np.ndarray, np.ndarray]:
    """Split labels and the users made cold by the cold-start protocol."""
    has_column = bool((edges["split"] != "").to_numpy().all())
    if config.split == "column" and not has_column:
        raise DataContractError("--split column: some rows have no `split` value; fill it or pick another --split")
    if config.split == "column" or (config.split == "auto" and has_column):
        return edges["split"].array, np.array([], dtype=np.int64)  # honoured exactly
    if config.split == "ratio":
        labels = splits.random_ratio(edges, config.split_fractions, config.seed)
    elif config.split == "temporal":
        labels = splits.temporal(edges, config.split_fractions)
    else:
        labels = splits.leave_one_out(edges, config.seed)
    if not config.source_domain:
        return labels, np.array([], dtype=np.int64)
    return splits.cold_start(edges, labels, config.source_domain, config.target_domain, config.cold_start_fraction, config.seed)


def normalise(rows: pd.DataFrame, config: IngestConfig) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, dict]:
    """Good rows -> (edges, users, items, counts). Deterministic for the same input."""
    encoded = norm.Encoded.from_rows(rows)
    deduped = norm.dedupe(encoded, config.dedupe)
    cored = norm.k_core(deduped, config.min_interactions)
    previous_users = previous_items = None
    if config.id_maps:
        earlier = Dataset.load(config.id_maps, config.storage_options)
        previous_users, previous_items = earlier.users, earlier.items
    edges, users, items = norm.index(cored, previous_users, previous_items)
    labels, cold = split_labels(edges, config)
    edges["split"] = labels
    edges = edges[["user_idx", "item_idx", "domain", "timestamp", "weight", "split"]]
    counts = {
        "duplicates_removed": len(rows) - len(deduped),
        "k_core_removed": len(deduped) - len(cored),
        "cold_start_users": int(len(cold)),
    }
    return edges, users, items, counts


def _summary_counts(edges: pd.DataFrame, users: pd.DataFrame, items: pd.DataFrame) -> dict:
    per_domain = {
        str(d): {str(s): int(n) for s, n in sorted(part["split"].value_counts().items(), key=lambda x: str(x[0])) if n}
        for d, part in edges.groupby("domain", sort=True, observed=True)
    }
    domain_users = edges.groupby("domain", observed=True)["user_idx"].unique()
    overlap = set.intersection(*(set(u) for u in domain_users)) if len(domain_users) > 1 else set()
    return {
        "domains": sorted(per_domain),
        "num_users": int(len(users)),
        "num_items": {d: int(n) for d, n in items.groupby("domain").size().items()},
        "edges": per_domain,
        "overlap_users": len(overlap),
    }


def ingest(config: IngestConfig) -> dict:
    """Run the ingest stage; returns the artifact's ``meta.json`` content."""
    clock = time.perf_counter()
    seconds = {}

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        seconds[name] = round(now - clock, 3)
        clock = now

    rows = read_validated(config)
    lap("read_validate")
    bad = rows[schema.REASON] != ""
    quarantine = rows[bad]
    reasons = dict(sorted(Counter(quarantine[schema.REASON]).items()))
    if config.strict and reasons:
        first = quarantine.groupby([schema.REASON, "path"]).size().sort_values(ascending=False)
        details = "; ".join(f"{path}: {reason} x{n}" for (reason, path), n in first.head(5).items())
        raise DataContractError(f"--strict: {int(bad.sum())} bad rows ({details})")
    good = rows[~bad].drop(columns=[schema.REASON, "path"])
    if good.empty:
        raise DataContractError(f"no usable rows in {list(config.inputs)}; quarantined by reason: {reasons}")
    edges, users, items, counts = normalise(good, config)
    lap("normalise_split")
    meta = {
        **_summary_counts(edges, users, items),
        "rows_read": int(len(rows)),
        "rows_kept": int(len(edges)),
        "quarantined": reasons,
        **counts,
        "protocol": {
            "split": config.split,
            "split_fractions": list(config.split_fractions),
            "dedupe": config.dedupe,
            "min_interactions": config.min_interactions,
            "id_maps": config.id_maps,
            "cold_start_fraction": config.cold_start_fraction if config.source_domain else 0.0,
            "source_domain": config.source_domain,
            "target_domain": config.target_domain,
            "seed": config.seed,
        },
        "inputs": list(config.inputs),
    }
    with storage.atomic_artifact(config.output, config.storage_options) as staging:
        Dataset.write_edges(edges, staging)
        users.to_parquet(os.path.join(staging, layout.USERS), index=False)
        items.to_parquet(os.path.join(staging, layout.ITEMS), index=False)
        quarantine.to_parquet(os.path.join(staging, layout.QUARANTINE), index=False)
        storage.write_json(os.path.join(staging, layout.META), meta)
    lap("write")
    # Timings describe this run, not the data: kept out of meta.json (idempotence).
    return {**meta, "seconds": seconds}


def format_summary(meta: dict) -> str:
    lines = [
        f"rows read {meta['rows_read']:,}  kept {meta['rows_kept']:,}  duplicates removed "
        f"{meta['duplicates_removed']:,}  below k-core {meta['k_core_removed']:,}",
        "quarantined: " + (", ".join(f"{r} {n:,}" for r, n in meta["quarantined"].items()) or "none"),
        f"users {meta['num_users']:,} (in every domain: {meta['overlap_users']:,}; cold-start: {meta['cold_start_users']:,})",
    ]
    for domain in meta["domains"]:
        splits_ = ", ".join(f"{s} {n:,}" for s, n in meta["edges"][domain].items())
        lines.append(f"  {domain}: items {meta['num_items'][domain]:,}; edges {splits_}")
    return "\n".join(lines)
