"""`graphtrain ingest`: interaction logs -> dataset artifact, on Ray.

1. Ray Data maps over the input files: each file is read, validated and its good
   rows shuffled into user buckets by a task of its own (:mod:`.read`, :mod:`.buckets`).
2. Ray tasks per user bucket dedupe, run k-core rounds and write their sorted keys.
3. Ray tasks per key range build the id maps (numbered in sorted order, earlier maps
   kept), and per bucket index, split and write the edge shards.

The driver holds per-file, per-bucket and per-range figures only, never rows, so the
stage scales with the cluster. Everything is written under a staging prefix on the
output's storage and committed at the end (``storage.staged_artifact``).
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from urllib.parse import urlparse

import numpy as np
import pyarrow.fs as pafs

from graphtrain import storage
from graphtrain.config import IngestConfig
from graphtrain.data import buckets
from graphtrain.data import dataset as layout
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


BUCKET_INPUT_BYTES = 32 << 20
TASK_RETRIES = 3


def _input_files(config: IngestConfig) -> list[tuple[str, str, int]]:
    """(path inside the filesystem, format, size in bytes) of every input file, sorted."""
    fs, _ = storage.filesystem(config.inputs[0], config.storage_options)
    files = []
    for fmt, paths in expand_inputs(config.inputs, config.storage_options).items():
        files.extend((p, fmt) for p in paths)
    sizes = {info.path: info.size for info in fs.get_file_info([p for p, _ in files])}
    return [(p, fmt, int(sizes.get(p) or 0)) for p, fmt in sorted(files)]


def _allowed_domains(config: IngestConfig) -> tuple[str, ...] | None:
    """The run's domains (rows of any other are quarantined); None: any domain."""
    return tuple(d for d in (config.source_domain, config.target_domain) if d) or None


def _check_inputs(config: IngestConfig) -> None:
    allowed = _allowed_domains(config)
    if config.domain and allowed and config.domain not in allowed:
        raise DataContractError(f"--domain {config.domain!r} is neither the source nor the target domain {allowed}")
    # One filesystem for all inputs: it pickles to the workers with its endpoint and credentials.
    schemes = {urlparse(uri).scheme if not storage.is_local(uri) else "local" for uri in config.inputs}
    if len(schemes) > 1:
        raise DataContractError(f"inputs mix storage systems {sorted(schemes)}; ingest each into its own dataset")


def _read_files(ray, config: IngestConfig, work: buckets.Work, files: list, n_buckets: int) -> list[dict]:
    """Ray Data over the file list: each file is read, validated and bucketed by one
    task; the driver gets one small report per file."""
    import ray.data

    from graphtrain.ray_env import quiet_ray_data

    quiet_ray_data()

    allowed = _allowed_domains(config)
    input_fs_uri = config.inputs[0]

    def read_one(row: dict) -> dict:
        report = buckets.ingest_file(
            work, row["index"], row["path"], row["fmt"], n_buckets, config.domain, allowed,
            input_fs=(input_fs_uri, config.storage_options),
        )
        return {"report": json.dumps(report)}

    items = [{"index": i, "path": p, "fmt": fmt} for i, (p, fmt, _) in enumerate(files)]
    reports = (
        ray.data.from_items(items, override_num_blocks=max(1, len(items)))
        .map(read_one, num_cpus=1)
        .take_all()
    )
    return sorted((json.loads(r["report"]) for r in reports), key=lambda r: r["index"])


def _kth_smallest(ray, work, n_buckets: int, what: str, k: int, lo: int, hi: int, bins: int = 1 << 16) -> int:
    """The k-th smallest (0-based) of the values the buckets wrote (``write_values``),
    found by narrowing a histogram: the driver holds ``bins`` counts per bucket,
    never the values. A 2^53 range takes four rounds."""
    task = ray.remote(buckets.histogram).options(max_retries=TASK_RETRIES)
    below = 0  # values < lo
    while hi > lo:
        edges = np.unique(np.linspace(lo, hi + 1, min(bins, hi - lo + 1) + 1).astype(np.int64))
        answers = ray.get([task.remote(work, b, what, edges.tolist()) for b in range(n_buckets)])
        cumulative = below + np.cumsum(np.sum(answers, axis=0))
        at = int(np.searchsorted(cumulative, k + 1))  # the first bin holding the k-th value
        below = int(cumulative[at - 1]) if at else below
        lo, hi = int(edges[at]), int(edges[at + 1]) - 1
    return lo


def _write_values(ray, work, n_buckets: int, round_: int, what: str, **params) -> int:
    task = ray.remote(buckets.write_values).options(max_retries=TASK_RETRIES)
    return sum(ray.get([task.remote(work, b, round_, what, **params) for b in range(n_buckets)]))


def _temporal_cuts(ray, work, n_buckets: int, round_: int, bucket_figures: list[dict], fractions) -> tuple[int, int]:
    """The cuts of ``ts <= np.quantile(ts, q)`` (linear interpolation) for the two
    split fractions: the order statistic floor((n - 1) q) (the quantile lies between
    it and the next one, so no timestamp falls between)."""
    n = _write_values(ray, work, n_buckets, round_, "timestamp")
    spans = [f["timestamps"] for f in bucket_figures if f["timestamps"]]
    lo, hi = min(s[0] for s in spans), max(s[1] for s in spans)
    return tuple(
        _kth_smallest(ray, work, n_buckets, "timestamp", int(np.floor((n - 1) * min(q, 1.0))), lo, hi)
        for q in (fractions[0], fractions[0] + fractions[1])
    )


def _cold_rank_cut(ray, work, n_buckets: int, round_: int, config: IngestConfig) -> int | None:
    """The cold-start draw at or below which an overlapping user becomes cold:
    exactly round(fraction x overlapping users) of them, the same for any bucket
    count (None: nobody)."""
    params = {"source": config.source_domain, "target": config.target_domain, "seed": config.seed + 1}
    overlap = _write_values(ray, work, n_buckets, round_, "cold_rank", **params)
    chosen = int(round(config.cold_start_fraction * overlap))
    if chosen == 0:
        return None
    return _kth_smallest(ray, work, n_buckets, "cold_rank", chosen - 1, 0, (1 << buckets.RANK_BITS) - 1)


def _boundaries(samples: list, n_ranges: int) -> list:
    """``n_ranges - 1`` cut keys from the buckets' samples (empty: one range)."""
    merged = np.unique(np.asarray(samples, dtype=object)) if samples else np.array([], dtype=object)
    if n_ranges <= 1 or len(merged) == 0:
        return []
    picks = np.linspace(0, len(merged), n_ranges + 1)[1:-1].astype(np.int64)
    return sorted(set(merged[np.minimum(picks, len(merged) - 1)].tolist()))


def _known_maps(config: IngestConfig, kind: str) -> list[str]:
    """Paths (inside the filesystem) of the earlier dataset's map files of ``kind``."""
    storage.require_artifact(config.id_maps, "ingest", config.storage_options)
    return layout.map_files(config.id_maps, kind, config.storage_options)


def _index(ray, config: IngestConfig, work: buckets.Work, n_buckets: int, bucket_figures: list[dict]) -> dict:
    """Id maps for users and items, every range numbered after the ones before it."""
    split = ray.remote(buckets.split_keys).options(max_retries=TASK_RETRIES)
    count = ray.remote(buckets.range_counts).options(max_retries=TASK_RETRIES)
    write = ray.remote(buckets.write_range).options(max_retries=TASK_RETRIES)
    totals = {}
    for kind in (buckets.USERS, buckets.ITEMS):
        samples = [s for f in bucket_figures for s in f["samples"][kind]]
        cut = _boundaries(samples, n_buckets)
        n_ranges = len(cut) + 1
        jobs = [
            split.remote(work, kind, work.scratch("keys", kind, f"b{b:05d}.parquet"), f"b{b:05d}", cut, False)
            for b in range(n_buckets)
        ]
        if config.id_maps:
            known_work = buckets.Work(config.id_maps, config.storage_options)
            jobs += [
                split.remote(work, kind, path, f"known{j:05d}", cut, True, source_work=known_work)
                for j, path in enumerate(_known_maps(config, kind))
            ]
        ray.get(jobs)
        counts = ray.get([count.remote(work, kind, r) for r in range(n_ranges)])
        start = {}
        for c in counts:
            for d, m in c["known_max"].items():
                start[d] = max(start.get(d, 0), m + 1)
        offsets, running = [], dict(start)
        for c in counts:
            offsets.append(dict(running))
            for d, n in c["new"].items():
                running[d] = running.get(d, 0) + n
        written = ray.get([write.remote(work, kind, r, offsets[r]) for r in range(n_ranges)])
        per_domain: Counter = Counter()
        for w in written:
            per_domain.update(w["per_domain"])
        totals[kind] = dict(per_domain)
    return totals


def _split_mode(config: IngestConfig, rows: int, without_split: int) -> str:
    has_column = rows > 0 and without_split == 0
    if config.split == "column" and not has_column:
        raise DataContractError(
            f"--split column: {without_split:,} rows have no `split` value; fill it or pick another --split"
        )
    if config.split == "column" or (config.split == "auto" and has_column):
        return "column"  # honoured exactly
    return {"auto": "leave_one_out"}.get(config.split, config.split)


def _fail_on_bad_files(reports: list[dict], config: IngestConfig) -> None:
    contract = [r for r in reports if "contract_error" in r]
    if contract:
        raise DataContractError(contract[0]["contract_error"])
    if config.strict:
        unreadable = [r for r in reports if "error" in r]
        if unreadable:
            raise DataContractError(f"--strict: {len(unreadable)} unreadable file(s): {unreadable[0]['path']}: {unreadable[0]['error']}")
        bad = Counter()
        for r in reports:
            for reason, n in r.get("reasons", {}).items():
                bad[(reason, r["path"])] += n
        if bad:
            details = "; ".join(f"{path}: {reason} x{n}" for (reason, path), n in bad.most_common(5))
            raise DataContractError(f"--strict: {sum(bad.values())} bad rows ({details})")


def ingest(config: IngestConfig) -> dict:
    """Run the ingest stage; returns the artifact's ``meta.json`` content."""
    from graphtrain.ray_env import ensure_ray

    clock = time.perf_counter()
    seconds = {}

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        seconds[name] = round(now - clock, 3)
        clock = now

    _check_inputs(config)
    files = _input_files(config)
    total_bytes = sum(size for _, _, size in files)
    n_buckets = config.buckets or max(2, -(-total_bytes // BUCKET_INPUT_BYTES))
    ray = ensure_ray()
    with storage.staged_artifact(config.output, config.storage_options) as staging:
        work = buckets.Work(staging, config.storage_options)
        reports = _read_files(ray, config, work, files, n_buckets)
        _fail_on_bad_files(reports, config)
        lap("read_validate")
        reasons = Counter()
        for r in reports:
            reasons.update(r.get("reasons", {}))
        rows_read = sum(r.get("rows", 0) for r in reports)
        good_rows = rows_read - sum(reasons.values())
        if good_rows == 0:
            raise DataContractError(
                f"no usable rows in {list(config.inputs)}; quarantined by reason: {dict(sorted(reasons.items()))}"
                + "".join(f"; unreadable {r['path']}: {r['error']}" for r in reports if "error" in r)
            )

        deduped = ray.get([
            ray.remote(buckets.dedupe_bucket).options(max_retries=TASK_RETRIES).remote(
                work, b, config.dedupe, config.min_interactions)
            for b in range(n_buckets)
        ])
        kept = sum(d["kept"] for d in deduped)
        round_ = 0
        if config.min_interactions > 1:
            kcore = ray.remote(buckets.kcore_round).options(max_retries=TASK_RETRIES)
            while True:
                results = ray.get([kcore.remote(work, b, round_, config.min_interactions) for b in range(n_buckets)])
                round_ += 1
                if not any(r["changed"] for r in results):
                    break
        figures = ray.get([
            ray.remote(buckets.bucket_keys).options(max_retries=TASK_RETRIES).remote(work, b, round_)
            for b in range(n_buckets)
        ])
        rows_kept = sum(f["rows"] for f in figures)
        if rows_kept == 0:
            raise DataContractError(f"no rows left after --min-interactions {config.min_interactions}")
        lap("dedupe_kcore")
        totals = _index(ray, config, work, n_buckets, figures)
        lap("index")
        mode = _split_mode(config, rows_kept, sum(f["without_split"] for f in figures))
        domains = tuple(sorted({d for f in figures for d in f["domains"]}))
        cold_cut = None
        if mode != "column" and config.source_domain and config.cold_start_fraction > 0:
            cold_cut = _cold_rank_cut(ray, work, n_buckets, round_, config)
        plan = buckets.SplitPlan(
            mode=mode, fractions=config.split_fractions, seed=config.seed, domains=domains,
            temporal_cuts=_temporal_cuts(ray, work, n_buckets, round_, figures, config.split_fractions) if mode == "temporal" else None,
            source_domain=config.source_domain, target_domain=config.target_domain, cold_rank_cut=cold_cut,
        )
        finished = ray.get([
            ray.remote(buckets.finish_bucket).options(max_retries=TASK_RETRIES).remote(work, b, round_, plan)
            for b in range(n_buckets)
        ])
        per_domain: dict = {d: Counter() for d in domains}
        for f in finished:
            for d, counts in f["edges"].items():
                per_domain[d].update(counts)
        meta = {
            "domains": list(domains),
            "num_users": int(totals[buckets.USERS].get("", 0)),
            "num_items": {d: int(n) for d, n in sorted(totals[buckets.ITEMS].items())},
            "edges": {d: {s: int(n) for s, n in sorted(c.items()) if n} for d, c in per_domain.items()},
            "overlap_users": sum(f["overlap_users"] for f in finished),
            "rows_read": int(rows_read),
            "rows_kept": int(rows_kept),
            "quarantined": dict(sorted(reasons.items())),
            "unreadable_files": [{"path": r["path"], "error": r["error"]} for r in reports if "error" in r],
            "duplicates_removed": int(good_rows - kept),
            "k_core_removed": int(kept - rows_kept),
            "cold_start_users": sum(f["cold_start_users"] for f in finished),
            "buckets": n_buckets,
            "protocol": {
                "split": config.split,
                "split_fractions": list(config.split_fractions),
                "dedupe": config.dedupe,
                "min_interactions": config.min_interactions,
                "id_maps": config.id_maps,
                "cold_start_fraction": config.cold_start_fraction if config.source_domain else 0.0,
                "cold_start_users": "the round(fraction x overlapping) with the lowest seeded hash of user_id",
                "source_domain": config.source_domain,
                "target_domain": config.target_domain,
                "seed": config.seed,
            },
            "inputs": list(config.inputs),
        }
        fs, root = work.fs()
        with fs.open_output_stream(f"{root}/{layout.META}") as f:
            f.write((json.dumps(meta, indent=2, sort_keys=True) + "\n").encode())
        lap("split_write")
    # Timings describe this run, not the data: kept out of meta.json (idempotence).
    return {**meta, "seconds": seconds}


def format_summary(meta: dict) -> str:
    lines = [
        f"rows read {meta['rows_read']:,}  kept {meta['rows_kept']:,}  duplicates removed "
        f"{meta['duplicates_removed']:,}  below k-core {meta['k_core_removed']:,}",
        "quarantined: " + (", ".join(f"{r} {n:,}" for r, n in meta["quarantined"].items()) or "none"),
        *(f"unreadable, left out whole: {f['path']} ({f['error']})" for f in meta.get("unreadable_files", [])),
        f"users {meta['num_users']:,} (in every domain: {meta['overlap_users']:,}; cold-start: {meta['cold_start_users']:,})",
    ]
    for domain in meta["domains"]:
        splits_ = ", ".join(f"{s} {n:,}" for s, n in meta["edges"][domain].items())
        lines.append(f"  {domain}: items {meta['num_items'][domain]:,}; edges {splits_}")
    return "\n".join(lines)
