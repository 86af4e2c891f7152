"""The worker side of ingest: every function here runs in a Ray task and touches
one input file, one user bucket or one key range, never the whole input.

Rows are shuffled once, by a hash of ``user_id`` into ``B`` user buckets, when the
files are read. Everything keyed by user then runs inside its bucket: dedupe by
(user, item, domain), the users' side of k-core, leave-one-out and the cold-start
protocol. What crosses buckets goes through small files:

- k-core: each bucket writes its item counts; each bucket sums the counts of its own
  items from every bucket's file, one file at a time.
- Id maps: ids are indexed in sorted order (known ids from ``--id-maps`` keep their
  index, new ones are appended in sorted order). Each bucket writes its sorted unique
  keys; the driver picks range boundaries from a sample of them; each range task
  unions its keys from every bucket, numbers them (the driver adds the offsets of
  the ranges before it) and writes the map shard plus, per bucket, the map of that
  bucket's keys.

All paths live under one work URI on the output's own storage, so any node can run
any task. Items are keyed ``domain + "\\0" + item_id``, which sorts by domain, then
item id.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from graphtrain import storage
from graphtrain.data import dataset as layout
from graphtrain.data import normalise as norm
from graphtrain.data import read, schema, splits
from graphtrain.errors import DataContractError

SEP = "\0"
USERS, ITEMS = layout.USERS, layout.ITEMS
SAMPLES_PER_BUCKET = 256
ROW_SCHEMA = pa.schema(schema.CANONICAL_TYPES)
QUARANTINE_SCHEMA = pa.schema(
    [(c, pa.large_string()) for c in (*schema.CANONICAL, schema.RAW, schema.REASON, schema.PATH)]
)


@dataclass(frozen=True)
class Work:
    """Where the staged artifact (``root``) and its scratch files (``root/_work``) live."""

    uri: str
    storage_options: dict = field(default_factory=dict)

    def fs(self) -> tuple[pafs.FileSystem, str]:
        return self._fs_and_root

    @cached_property
    def _fs_and_root(self) -> tuple[pafs.FileSystem, str]:
        # Built once per process: an S3 filesystem per path was most of a small task.
        return storage.filesystem(self.uri, self.storage_options or None)

    def path(self, *parts: str) -> str:
        return "/".join([self.fs()[1], *parts])

    def scratch(self, *parts: str) -> str:
        return self.path(storage.SCRATCH, *parts)


# ---------------------------------------------------------------- small file helpers


def write_table(fs: pafs.FileSystem, path: str, table: pa.Table) -> None:
    storage.prepare_parent(fs, path)
    pq.write_table(table, path, filesystem=fs)


def read_tables(fs: pafs.FileSystem, paths: list[str], schema_: pa.Schema | None = None) -> pa.Table:
    tables = [pq.read_table(p, filesystem=fs) for p in paths]
    if not tables:
        return schema_.empty_table() if schema_ is not None else pa.table({})
    return pa.concat_tables(tables, promote_options="default")


def user_bucket(user_ids, buckets: int) -> np.ndarray:
    """Bucket of each user id: a fixed hash, the same on every machine and run."""
    values = np.asarray(user_ids, dtype=object)
    return (pd.util.hash_array(values, categorize=False) % np.uint64(buckets)).astype(np.int64)


RANK_BITS = 53


def seeded_rank(keys, seed: int) -> np.ndarray:
    """An int64 in [0, 2^53) per key, fixed by (key, seed): a shuffle that needs no
    global state, so every bucket draws the same as a single process would."""
    hashed = pd.util.hash_array(np.asarray(keys, dtype=object), hash_key=f"{seed % 10**16:016d}", categorize=False)
    return (hashed >> np.uint64(64 - RANK_BITS)).astype(np.int64)


def seeded_unit(keys, seed: int) -> np.ndarray:
    """``seeded_rank`` as a number in [0, 1)."""
    return seeded_rank(keys, seed).astype(np.float64) / float(1 << RANK_BITS)


# ---------------------------------------------------------------- 1. read one file


def ingest_file(
    work: Work, index: int, path: str, fmt: str, buckets: int, domain_override: str | None,
    allowed_domains: tuple[str, ...] | None, input_fs: tuple[str, dict],
) -> dict:
    """Read, validate and bucket one input file.

    Good rows go to ``_work/rows/bNNNNN/fIIIIII.parquet``; bad rows, as read, to the
    artifact's ``quarantine/part-IIIIII.parquet``. Returns the file's counts, or an
    ``error`` (unreadable: everything written from it is removed) or a
    ``contract_error`` (a required column is missing). ``input_fs`` is (any URI on
    the inputs' storage, its options).
    """
    fs, _ = work.fs()
    source_fs, _ = storage.filesystem(input_fs[0], input_fs[1] or None)
    writers: dict[int, pq.ParquetWriter] = {}
    targets: dict[int, str] = {}
    quarantine_path = work.path(layout.QUARANTINE, f"part-{index:06d}.parquet")
    report = {"index": index, "path": path, "rows": 0, "reasons": Counter()}

    def writer(key: int, target: str, schema_: pa.Schema) -> pq.ParquetWriter:
        if key not in writers:
            storage.prepare_parent(fs, target)
            writers[key] = pq.ParquetWriter(target, schema_, filesystem=fs)
            targets[key] = target
        return writers[key]

    def discard() -> None:
        for w in writers.values():
            w.close()
        for target in targets.values():
            fs.delete_file(target)

    try:
        for chunk in read.read_chunks(source_fs, path, fmt, domain_override):
            good, bad = schema.split_valid(chunk, domain_override=domain_override, allowed_domains=allowed_domains)
            report["rows"] += chunk.num_rows
            if bad.num_rows:
                report["reasons"].update(bad[schema.REASON].to_pylist())
                bad = bad.append_column(schema.PATH, pa.array([path] * bad.num_rows, pa.large_string()))
                writer(-1, quarantine_path, QUARANTINE_SCHEMA).write_table(bad.select(QUARANTINE_SCHEMA.names))
            if good.num_rows:
                owner = user_bucket(good["user_id"].to_numpy(zero_copy_only=False), buckets)
                for b in np.unique(owner):
                    target = work.scratch("rows", f"b{b:05d}", f"f{index:06d}.parquet")
                    writer(int(b), target, ROW_SCHEMA).write_table(good.filter(pa.array(owner == b)))
    except read.UnreadableFile as err:
        discard()
        return {"index": index, "path": path, "error": str(err)}
    except DataContractError as err:
        discard()
        return {"index": index, "path": path, "contract_error": str(err)}
    for w in writers.values():
        w.close()
    report["reasons"] = dict(report["reasons"])
    return report


# ---------------------------------------------------------------- 2. dedupe, k-core


def _kept(work: Work, round_: int, b: int) -> str:
    return work.scratch("kept", f"r{round_:03d}", f"b{b:05d}.parquet")


def _item_counts_dir(work: Work, round_: int) -> str:
    return work.scratch("item_counts", f"r{round_:03d}")


def _write_item_counts(work: Work, fs, round_: int, b: int, rows: pd.DataFrame) -> None:
    counts = rows.groupby(["domain", "item_id"], sort=True).size().rename("n").reset_index()
    write_table(fs, f"{_item_counts_dir(work, round_)}/b{b:05d}.parquet", pa.Table.from_pandas(counts, preserve_index=False))


def _write_kept(work: Work, fs, round_: int, b: int, rows: pd.DataFrame) -> None:
    table = pa.Table.from_pandas(rows, schema=ROW_SCHEMA, preserve_index=False)
    write_table(fs, _kept(work, round_, b), table)


def dedupe_bucket(work: Work, b: int, mode: str, min_interactions: int) -> dict:
    """One row per (user, item, domain) in bucket ``b``: ``kept/r000``."""
    fs, _ = work.fs()
    rows = read_tables(fs, storage.list_parquet(fs, work.scratch("rows", f"b{b:05d}")), ROW_SCHEMA).to_pandas()
    if rows.empty:  # a bucket no user hashed to
        kept = rows
    else:
        encoded = norm.Encoded.from_rows(rows)
        deduped = norm.dedupe(encoded, mode)
        kept = pd.DataFrame(
            {
                "user_id": encoded.user_ids[deduped.user],
                "item_id": encoded.item_ids[deduped.item],
                "domain": encoded.domains[deduped.domain],
                "timestamp": deduped.timestamp,
                "weight": deduped.weight,
                "split": np.asarray(norm.SPLIT_VALUES, dtype=object)[deduped.split],
            }
        )
    _write_kept(work, fs, 0, b, kept)
    if min_interactions > 1:
        _write_item_counts(work, fs, 0, b, kept)
    return {"rows": len(rows), "kept": len(kept)}


def kcore_round(work: Work, b: int, round_: int, k: int) -> dict:
    """One k-core round: drop rows whose user (counted here) or item (counted over
    every bucket's item counts of this round) has fewer than ``k`` rows."""
    fs, _ = work.fs()
    rows = pq.read_table(_kept(work, round_, b), filesystem=fs).to_pandas()
    mine = rows[["domain", "item_id"]].drop_duplicates()
    wanted = pa.Table.from_pandas(mine, preserve_index=False)
    totals = None
    for path in storage.list_parquet(fs, _item_counts_dir(work, round_)):
        counts = pq.read_table(path, filesystem=fs)
        counts = counts.join(wanted, keys=["domain", "item_id"], join_type="inner").to_pandas()
        totals = counts if totals is None else pd.concat([totals, counts]).groupby(["domain", "item_id"], as_index=False)["n"].sum()
    item_n = rows.merge(totals, on=["domain", "item_id"], how="left")["n"].fillna(0).to_numpy()
    user_n = rows.groupby("user_id")["user_id"].transform("size").to_numpy()
    keep = (user_n >= k) & (item_n >= k)
    kept = rows[keep].reset_index(drop=True)
    _write_kept(work, fs, round_ + 1, b, kept)
    _write_item_counts(work, fs, round_ + 1, b, kept)
    return {"kept": len(kept), "changed": bool(len(kept) != len(rows))}


# ---------------------------------------------------------------- 3. id maps


def _evenly(values: np.ndarray, n: int) -> list:
    if len(values) <= n:
        return list(values)
    return list(values[np.linspace(0, len(values) - 1, n).astype(np.int64)])


def bucket_keys(work: Work, b: int, round_: int) -> dict:
    """Write bucket ``b``'s sorted unique user and item keys; return samples of both
    (for the range boundaries) and the bucket's figures."""
    fs, _ = work.fs()
    rows = pq.read_table(_kept(work, round_, b), filesystem=fs).to_pandas()
    users = np.sort(rows["user_id"].unique().astype(object))
    items = np.sort((rows["domain"] + SEP + rows["item_id"]).unique().astype(object))
    for kind, keys in ((USERS, users), (ITEMS, items)):
        write_table(fs, work.scratch("keys", kind, f"b{b:05d}.parquet"), pa.table({"key": pa.array(keys, pa.large_string())}))
    return {
        "rows": len(rows),
        "without_split": int((rows["split"] == "").sum()),
        "domains": sorted(rows["domain"].unique().tolist()),
        "samples": {USERS: _evenly(users, SAMPLES_PER_BUCKET), ITEMS: _evenly(items, SAMPLES_PER_BUCKET)},
        "timestamps": [int(rows["timestamp"].min()), int(rows["timestamp"].max())] if len(rows) else None,
    }


def _range_of(keys: np.ndarray, boundaries: list[str]) -> np.ndarray:
    return np.searchsorted(np.asarray(boundaries, dtype=object), keys, side="right")


def split_keys(
    work: Work, kind: str, source: str, name: str, boundaries: list[str], known: bool, source_work: Work | None = None
) -> None:
    """Cut one key file (a bucket's keys, or a shard of the earlier id maps, which
    lives on ``source_work``'s storage) into ``pieces/<kind>/rRRRRR/<name>.parquet``."""
    fs, _ = work.fs()
    table = pq.read_table(source, filesystem=(source_work or work).fs()[0])
    if known:  # an earlier dataset's map shard: user_id/user_idx or domain/item_id/item_idx
        if kind == USERS:
            key, idx = pc.cast(table["user_id"], pa.large_string()), table["user_idx"]
        else:
            key = pc.binary_join_element_wise(
                pc.cast(table["domain"], pa.large_string()), pc.cast(table["item_id"], pa.large_string()),
                pa.scalar(SEP, pa.large_string()),
            )
            idx = table["item_idx"]
        table = pa.table({"key": key, "idx": pc.cast(idx, pa.int64())})
    ranges = _range_of(table["key"].to_numpy(zero_copy_only=False).astype(object), boundaries)
    for r in np.unique(ranges):
        write_table(fs, work.scratch("pieces", kind, f"r{r:05d}", f"{name}.parquet"), table.filter(pa.array(ranges == r)))


def _domain_of(keys: np.ndarray, kind: str) -> np.ndarray:
    if kind == USERS:
        return np.full(len(keys), "", dtype=object)
    return np.array([k.split(SEP, 1)[0] for k in keys], dtype=object)


def _range_keys(work: Work, kind: str, r: int) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, list[str]]]:
    """(known keys with their index, new keys sorted, bucket -> its keys)."""
    fs, _ = work.fs()
    known, found = [], {}
    for path in storage.list_parquet(fs, work.scratch("pieces", kind, f"r{r:05d}")):
        name = os.path.basename(path)[: -len(".parquet")]
        table = pq.read_table(path, filesystem=fs).to_pandas()
        if name.startswith("known"):
            known.append(table)
        else:
            found[name] = table["key"].to_numpy(dtype=object)
    known_df = pd.concat(known, ignore_index=True) if known else pd.DataFrame({"key": [], "idx": []}).astype({"idx": np.int64})
    everything = np.unique(np.concatenate(list(found.values()))) if found else np.array([], dtype=object)
    new = everything[~pd.Index(everything).isin(known_df["key"])]  # sorted: np.unique sorts
    return known_df, pd.DataFrame({"key": new}), found


def range_counts(work: Work, kind: str, r: int) -> dict:
    """Per domain: new keys in range ``r`` and the largest known index."""
    known, new, _ = _range_keys(work, kind, r)
    new_domains = Counter(_domain_of(new["key"].to_numpy(dtype=object), kind))
    known_max = {}
    if len(known):
        frame = known.assign(domain=_domain_of(known["key"].to_numpy(dtype=object), kind))
        known_max = {str(d): int(v) for d, v in frame.groupby("domain")["idx"].max().items()}
    return {"new": dict(new_domains), "known_max": known_max}


def write_range(work: Work, kind: str, r: int, offsets: dict[str, int]) -> dict:
    """Number range ``r``'s new keys from ``offsets`` (per domain) and write its map
    shard into the artifact and each bucket's share into ``maps/<kind>/bNNNNN/``."""
    fs, _ = work.fs()
    known, new, found = _range_keys(work, kind, r)
    keys = new["key"].to_numpy(dtype=object)
    domains = _domain_of(keys, kind)
    rank = pd.Series(np.ones(len(keys), dtype=np.int64)).groupby(domains).cumsum().to_numpy() - 1 if len(keys) else np.array([], dtype=np.int64)
    start = np.array([offsets.get(d, 0) for d in domains], dtype=np.int64)
    table = pd.concat([known, pd.DataFrame({"key": keys, "idx": start + rank})], ignore_index=True)
    table = table.sort_values("key", kind="stable").reset_index(drop=True)
    if kind == USERS:
        shard = pa.table({"user_id": pa.array(table["key"], pa.large_string()), "user_idx": pa.array(table["idx"], pa.int64())})
    else:
        parts = table["key"].str.split(SEP, n=1, expand=True) if len(table) else pd.DataFrame({0: [], 1: []})
        shard = pa.table({
            "domain": pa.array(parts[0].astype(object), pa.large_string()),
            "item_id": pa.array(parts[1].astype(object), pa.large_string()),
            "item_idx": pa.array(table["idx"], pa.int64()),
        })
    write_table(fs, work.path(kind, f"part-{r:05d}.parquet"), shard)
    index = pd.Index(table["key"])
    for name, bucket_keys_ in found.items():
        idx = table["idx"].to_numpy()[index.get_indexer(bucket_keys_)]
        piece = pa.table({"key": pa.array(bucket_keys_, pa.large_string()), "idx": pa.array(idx, pa.int64())})
        write_table(fs, work.scratch("maps", kind, name, f"r{r:05d}.parquet"), piece)
    return {"keys": len(table), "per_domain": dict(Counter(_domain_of(table["key"].to_numpy(dtype=object), kind)))}


# ---------------------------------------------------------------- 4. global order statistics


def _overlap_users(rows: pd.DataFrame, source: str, target: str) -> np.ndarray:
    """Users of ``rows`` with interactions in both the source and the target domain."""
    domain, user = rows["domain"].to_numpy(dtype=object), rows["user_id"].to_numpy(dtype=object)
    return np.intersect1d(user[domain == source], user[domain == target])


def _values_path(work: Work, what: str, b: int) -> str:
    return work.scratch("values", what, f"b{b:05d}.parquet")


def write_values(work: Work, b: int, round_: int, what: str, source: str | None = None, target: str | None = None,
                 seed: int = 0) -> int:
    """Write, sorted, the int64 values of bucket ``b`` whose global order statistics
    the driver needs: ``timestamp`` of every row, or ``cold_rank``, the cold-start
    draw (``seeded_rank`` of the user id) of every user in both domains. Returns how
    many there are."""
    fs, _ = work.fs()
    if what == "timestamp":
        values = pq.read_table(_kept(work, round_, b), columns=["timestamp"], filesystem=fs)["timestamp"].to_numpy()
    else:
        rows = pq.read_table(_kept(work, round_, b), columns=["user_id", "domain"], filesystem=fs).to_pandas()
        values = seeded_rank(_overlap_users(rows, source, target), seed)
    values = np.sort(np.asarray(values, dtype=np.int64))
    write_table(fs, _values_path(work, what, b), pa.table({"value": values}))
    return len(values)


def histogram(work: Work, b: int, what: str, edges: list[int]) -> list[int]:
    """How many of bucket ``b``'s values (``write_values``) fall in each
    [edges[i], edges[i+1])."""
    fs, _ = work.fs()
    values = pq.read_table(_values_path(work, what, b), filesystem=fs)["value"].to_numpy()
    return np.diff(np.searchsorted(values, np.asarray(edges, dtype=np.int64), side="left")).tolist()


# ---------------------------------------------------------------- 5. split and write


@dataclass(frozen=True)
class SplitPlan:
    """What every bucket needs to split its rows the same way."""

    mode: str  # "column", "ratio", "temporal", "leave_one_out"
    fractions: tuple[float, float, float]
    seed: int
    domains: tuple[str, ...]  # every domain with edges, sorted: the shards' order
    temporal_cuts: tuple[int, int] | None = None
    source_domain: str | None = None
    target_domain: str | None = None
    # Users in both domains whose cold-start draw is at most this become cold (None: none).
    cold_rank_cut: int | None = None


def _lookup(work: Work, fs, kind: str, b: int, keys: np.ndarray) -> np.ndarray:
    empty = pa.schema([("key", pa.large_string()), ("idx", pa.int64())])
    maps = read_tables(fs, storage.list_parquet(fs, work.scratch("maps", kind, f"b{b:05d}")), empty).to_pandas()
    position = pd.Index(maps["key"]).get_indexer(keys)
    if (position < 0).any():
        raise RuntimeError(f"bucket {b}: {int((position < 0).sum())} {kind} keys have no index (a lost map piece)")
    return maps["idx"].to_numpy(np.int64)[position]


def finish_bucket(work: Work, b: int, round_: int, plan: SplitPlan) -> dict:
    """Index, split and write bucket ``b``'s edges: ``edges/part-DDD-BBBBB.parquet``
    per domain, sorted by (user_idx, item_idx)."""
    fs, _ = work.fs()
    rows = pq.read_table(_kept(work, round_, b), filesystem=fs).to_pandas()
    user_ids = rows["user_id"].to_numpy(dtype=object)
    item_keys = (rows["domain"] + SEP + rows["item_id"]).to_numpy(dtype=object)
    edges = pd.DataFrame(
        {
            "user_idx": _lookup(work, fs, USERS, b, user_ids),
            "item_idx": _lookup(work, fs, ITEMS, b, item_keys),
            "domain": rows["domain"].to_numpy(dtype=object),
            "timestamp": rows["timestamp"].to_numpy(np.int64),
            "weight": rows["weight"].to_numpy(np.float64),
        }
    )
    tiebreak = seeded_unit(rows["user_id"] + SEP + item_keys, plan.seed)
    if plan.mode == "column":
        labels = rows["split"].to_numpy(dtype=object)
    elif plan.mode == "ratio":
        labels = np.asarray(splits.random_ratio(edges, plan.fractions, tiebreak), dtype=object)
    elif plan.mode == "temporal":
        labels = np.asarray(splits.temporal_cut(edges, plan.temporal_cuts), dtype=object)
    else:
        labels = np.asarray(splits.leave_one_out(edges, tiebreak), dtype=object)
    cold_users = 0
    if plan.mode != "column" and plan.source_domain and plan.cold_rank_cut is not None:
        chosen = seeded_rank(user_ids, plan.seed + 1) <= plan.cold_rank_cut
        labels, cold = splits.cold_start(edges, labels, plan.source_domain, plan.target_domain, chosen, tiebreak)
        cold_users = len(cold)
    edges["split"] = labels
    figures: dict = {"edges": {}, "cold_start_users": cold_users}
    for d, domain in enumerate(plan.domains):
        part = edges[edges["domain"] == domain].sort_values(["user_idx", "item_idx"], kind="stable")
        if part.empty:
            continue
        table = pa.table({
            "user_idx": pa.array(part["user_idx"], pa.int64()),
            "item_idx": pa.array(part["item_idx"], pa.int64()),
            "domain": pa.array(part["domain"], pa.string()).dictionary_encode(),
            "timestamp": pa.array(part["timestamp"], pa.int64()),
            "weight": pa.array(part["weight"], pa.float64()),
            "split": pa.array(part["split"], pa.string()).dictionary_encode(),
        })
        write_table(fs, work.path(layout.EDGES, f"part-{d:03d}-{b:05d}.parquet"), table)
        figures["edges"][domain] = {str(s): int(n) for s, n in part["split"].value_counts().items()}
    in_domains = edges.groupby("user_idx")["domain"].nunique()
    figures["overlap_users"] = int((in_domains == len(plan.domains)).sum()) if len(plan.domains) > 1 else 0
    return figures
