"""graphtrain ingest vs a plain pyarrow/pandas script, same files, same run.

Both read the same generated Parquet files (with ~1 % bad rows and ~2 % repeated
rows), validate them against the data contract, dedupe (keep latest) and build id
maps. graphtrain also splits (leave-one-out + cold start), writes the quarantine and
commits the artifact: that work is in its time and not in the baseline's.

    python bench/ingest.py --rows 1000000 10000000

Prints rows/s, peak memory (process tree: Ray's processes included for graphtrain;
and the largest single process per role: the driver, Ray workers) and the ratio
ours / baseline; writes bench/results/ingest.json and ingest.png.
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import sys
import tempfile
import time

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import RESULTS, PeakMemory, write_result  # noqa: E402

FILES = 8


def generate(rows: int, directory: str, seed: int = 0) -> None:
    """Vectorised logs: users ~ rows/20, 50k items per domain, 1 % bad, ~2 % repeats."""
    rng = np.random.default_rng(seed)
    n_users = max(rows // 20, 10)
    per_file = -(-rows // FILES)
    for f in range(FILES):
        n = min(per_file, rows - f * per_file)
        users = rng.integers(0, n_users, n)
        domain = np.where(rng.random(n) < 0.5, "books", "movies")
        items = rng.zipf(1.2, n) % 50_000
        repeats = rng.random(n) < 0.02
        items[repeats] = items[np.roll(np.flatnonzero(repeats), 1)] if repeats.any() else items[repeats]
        user_ids = pd.array([f"u{u}" for u in users], dtype="string")
        item_ids = pd.array([f"{d[0]}{i}" for d, i in zip(domain, items)], dtype="string")
        weight = rng.random(n)
        bad = rng.random(n)
        user_ids[bad < 0.004] = None
        weight[(bad >= 0.004) & (bad < 0.008)] = -1.0
        table = pa.table(
            {
                "user_id": pa.array(user_ids),
                "item_id": pa.array(item_ids),
                "domain": domain,
                "timestamp": rng.integers(1_600_000_000, 1_700_000_000, n),
                "weight": weight,
            }
        )
        pq.write_table(table, os.path.join(directory, f"part-{f:03d}.parquet"))


def baseline(directory: str, output: str) -> int:
    """What a careful engineer would write by hand with pyarrow + pandas."""
    df = pq.read_table(directory).to_pandas()
    user = df["user_id"].astype("string").str.strip()
    item = df["item_id"].astype("string").str.strip()
    ok = user.notna() & (user != "") & item.notna() & (item != "")
    ok &= df["domain"].isin(["books", "movies"]) & df["timestamp"].notna()
    ok &= df["weight"].notna() & (df["weight"] >= 0)
    df[~ok].to_parquet(os.path.join(output, "quarantine.parquet"))
    good = df[ok].assign(user_id=user[ok], item_id=item[ok])
    good = good.sort_values(["user_id", "item_id", "domain", "timestamp"], kind="stable")
    good = good.drop_duplicates(["user_id", "item_id", "domain"], keep="last")
    good["user_idx"], _ = pd.factorize(good["user_id"], sort=True)
    good["item_idx"] = 0
    for _domain, part in good.groupby("domain"):
        codes, _ = pd.factorize(part["item_id"], sort=True)
        good.loc[part.index, "item_idx"] = codes
    good[["user_idx", "item_idx", "domain", "timestamp", "weight"]].to_parquet(os.path.join(output, "edges.parquet"))
    return len(good)


def ours(directory: str, output: str) -> dict:
    from graphtrain.config import IngestConfig
    from graphtrain.data.ingest import ingest

    return ingest(IngestConfig(inputs=[directory], output=output, source_domain="books", target_domain="movies"))


def _call(queue, fn, args) -> None:
    queue.put(fn(*args))


def _in_subprocess(fn, *args):
    """``fn(*args)`` in a fresh process (spawned: no copy of this one's heap)."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_call, args=(queue, fn, args))
    process.start()
    result = queue.get()
    process.join()
    if process.exitcode:
        raise RuntimeError(f"{fn.__name__} failed in its subprocess (exit {process.exitcode})")
    return result


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000])
    args = parser.parse_args(argv)
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    runs = []
    for rows in args.rows:
        work = tempfile.mkdtemp(prefix="graphtrain-bench-ingest-")
        try:
            raw = os.path.join(work, "raw")
            os.makedirs(raw)
            # Generation and the baseline run in processes of their own, so that what
            # they leave on the heap does not count as the driver's.
            _in_subprocess(generate, rows, raw)
            base_out = os.path.join(work, "baseline")
            os.makedirs(base_out)
            with PeakMemory() as base_mem:
                t0 = time.perf_counter()
                kept_base = _in_subprocess(baseline, raw, base_out)
                base_s = time.perf_counter() - t0
            gc.collect()
            from graphtrain.ray_env import ensure_ray

            t0 = time.perf_counter()
            ray = ensure_ray()
            ray_start_s = time.perf_counter() - t0
            with PeakMemory() as our_mem:
                t0 = time.perf_counter()
                meta = ours(raw, os.path.join(work, "dataset"))
                our_s = time.perf_counter() - t0
            ray.shutdown()
            run = {
                "rows": rows,
                "ours_rows_per_s": rows / our_s,
                "baseline_rows_per_s": rows / base_s,
                "ratio": base_s / our_s,
                "ours_seconds": round(our_s, 2),
                "baseline_seconds": round(base_s, 2),
                "ray_start_seconds": round(ray_start_s, 2),
                "ours_stage_seconds": meta["seconds"],
                "ours_peak_gib": our_mem.peak_gib,
                "ours_peak_gib_by_role": our_mem.role_gib(),
                "baseline_peak_gib": base_mem.peak_gib,
                "rows_kept": {"ours": meta["rows_kept"], "baseline": kept_base},
            }
            runs.append(run)
            print(
                f"{rows:>11,} rows  ours {run['ours_rows_per_s']:>10,.0f} rows/s ({our_s:6.1f} s, peak {our_mem.peak_gib:5.2f} GiB)"
                f"  baseline {run['baseline_rows_per_s']:>10,.0f} rows/s ({base_s:6.1f} s, peak {base_mem.peak_gib:5.2f} GiB)"
                f"  ratio {run['ratio']:.2f}  stages {meta['seconds']}  largest process per role {our_mem.role_gib()} GiB"
                f"  buckets {meta['buckets']}",
                flush=True,
            )
        finally:
            shutil.rmtree(work, ignore_errors=True)
    last = runs[-1]
    write_result("ingest", "rows/s", last["ours_rows_per_s"], last["baseline_rows_per_s"], {"runs": runs, "files": FILES})
    _plot(runs)
    print(f"wrote {os.path.join(RESULTS, 'ingest.json')}")


def _plot(runs) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r['rows']:,}" for r in runs]
    x = np.arange(len(runs))
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.bar(x - 0.2, [r["ours_rows_per_s"] for r in runs], 0.4, label="graphtrain ingest")
    ax.bar(x + 0.2, [r["baseline_rows_per_s"] for r in runs], 0.4, label="pyarrow + pandas")
    ax.set_xticks(x, labels)
    ax.set_xlabel("rows")
    ax.set_ylabel("rows/s")
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(RESULTS, "ingest.png"), dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
