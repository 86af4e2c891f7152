"""The Ray Serve app against a bare FastAPI + uvicorn app doing the same top-K.

For each catalogue size a model artifact is generated (low-rank item vectors plus a
popularity bias column, as export writes them; 10,000 users with a few seen items
each). Both servers load it with the same ``Recommender`` (exact top-K up to
``--approximate-above`` items, faiss HNSW above it) and answer ``GET /recommend`` for
random known users; the bare app is one uvicorn process, ours is one Serve replica
behind Serve's proxy. An aiohttp client sends a bounded number of requests (and
stops after a time bound) at 1, 8 and 32 concurrent clients on loopback. Also: the
HNSW index's recall@10 against exact search at the largest size.

    python bench/serve.py [--sizes 100000,1000000] [--clients 1,8,32] [--requests 1500] [--seconds 20]

Prints p50/p95/p99 latency (ms) and requests/s per server, size and concurrency;
ratio = Serve's requests/s / the bare app's at the largest concurrency and size.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from bench.common import write_result  # noqa: E402

N_USERS, DIM, RANK = 10_000, 64, 16


def make_model(uri: str, n_items: int, seed: int = 0) -> None:
    import pandas as pd

    from graphtrain import storage
    from graphtrain.inference import artifact
    from graphtrain.ranking.metrics import seen_csr

    rng = np.random.default_rng(seed)
    basis = rng.normal(size=(RANK, DIM)).astype(np.float32)

    def vectors(n, bias):
        v = (rng.normal(size=(n, RANK)).astype(np.float32) @ basis) / 4 + 0.3 * rng.normal(size=(n, DIM)).astype(np.float32)
        return np.hstack([v, bias[:, None].astype(np.float32)])

    popularity = rng.zipf(1.5, n_items).clip(max=100_000).astype(np.float32)
    users = rng.integers(0, N_USERS, 5 * N_USERS)
    items = rng.integers(0, n_items, 5 * N_USERS)
    arrays = {
        "users@movies": vectors(N_USERS, np.ones(N_USERS)),
        "items@movies": vectors(n_items, 0.1 * np.log1p(popularity)),
        "popularity@movies": popularity,
    }
    arrays["seen_indptr@movies"], arrays["seen_indices@movies"] = seen_csr(users, items, N_USERS)
    manifest = {"version": f"bench-{n_items}", "domains": ["movies"], "source_domain": None, "target_domain": "movies"}
    with storage.atomic_artifact(uri) as staging:
        artifact.write(
            staging, manifest=manifest,
            users=pd.DataFrame({"user_id": [f"u{n}" for n in range(N_USERS)], "user_idx": range(N_USERS)}),
            items=pd.DataFrame({"domain": "movies", "item_id": [f"i{n}" for n in range(n_items)], "item_idx": range(n_items)}),
            arrays=arrays,
        )


def recall_at_10(model: str, approximate_above: int, queries: int = 200) -> dict:
    """HNSW (built here once, then kept in the cache the servers read) vs exact."""
    import faiss

    from graphtrain.serve.index import exact_top_k
    from graphtrain.serve.recommender import Recommender

    faiss.omp_set_num_threads(os.cpu_count() or 1)
    start = time.perf_counter()
    rec = Recommender.load(model, approximate_above=approximate_above)
    build_s = time.perf_counter() - start
    index = rec.indexes["movies"]
    users = np.asarray(rec.artifact.user_vectors("movies").rows(0, queries), dtype=np.float32)
    got, _ = index.search(users, 10)
    exact, _ = exact_top_k(index.vectors, users, 10)
    recall = float(np.mean([len(set(g) & set(e)) / 10 for g, e in zip(got, exact)]))
    faiss.omp_set_num_threads(1)
    return {"method": index.method, "recall@10": round(recall, 4), "load_and_build_s": round(build_s, 1)}


async def load(url: str, clients: int, requests: int, seconds: float) -> dict:
    import aiohttp

    latencies, errors, sent = [], 0, 0
    deadline = time.perf_counter() + seconds
    rng = random.Random(0)

    async def client(session):
        nonlocal errors, sent
        while sent < requests and time.perf_counter() < deadline:
            sent += 1
            started = time.perf_counter()
            async with session.get(url, params={"user_id": f"u{rng.randrange(N_USERS)}", "k": 10}) as response:
                await response.read()
                if response.status != 200:
                    errors += 1
            latencies.append(time.perf_counter() - started)

    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector) as session:
        for _ in range(20):  # warm up
            async with session.get(url, params={"user_id": "u1", "k": 10}) as response:
                await response.read()
        start = time.perf_counter()
        await asyncio.gather(*(client(session) for _ in range(clients)))
        wall = time.perf_counter() - start
    ms = np.array(latencies) * 1000
    return {
        "requests": len(latencies), "errors": errors, "req_per_s": round(len(latencies) / wall, 1),
        "p50_ms": round(float(np.percentile(ms, 50)), 2), "p95_ms": round(float(np.percentile(ms, 95)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
    }


def wait_ready(url: str, timeout: float = 600) -> None:
    import urllib.request

    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"{url} never answered")


def measure(server: str, base: str, size: int, concurrency: list[int], args) -> list[dict]:
    wait_ready(base + "/health")
    rows = []
    for clients in concurrency:
        cell = asyncio.run(load(base + "/recommend", clients, args.requests, args.seconds))
        rows.append({"server": server, "items": size, "clients": clients, **cell})
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--clients", default="1,8,32")
    parser.add_argument("--requests", type=int, default=1500, help="at most this many requests per cell")
    parser.add_argument("--seconds", type=float, default=20.0, help="and at most this long per cell")
    parser.add_argument("--approximate-above", type=int, default=200_000)
    parser.add_argument("--name", default="serve")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    concurrency = [int(c) for c in args.clients.split(",")]

    from graphtrain.config import ServeConfig
    from graphtrain.net import free_port
    from graphtrain.ray_env import ensure_ray
    from graphtrain.serve import app

    ensure_ray(num_cpus=2)
    work = tempfile.mkdtemp(prefix="bench-serve-")
    rows, recall = [], {}
    for size in sizes:
        model = os.path.join(work, f"model-{size}")
        make_model(model, size)
        if size > args.approximate_above:
            recall[size] = recall_at_10(model, args.approximate_above)
            print(f"{size} items: {recall[size]}", flush=True)
        port = free_port()
        bare = subprocess.Popen(
            [sys.executable, os.path.join(os.path.dirname(__file__), "serve_bare.py"), model, str(port),
             str(args.approximate_above)],
        )
        try:
            rows += measure("bare", f"http://127.0.0.1:{port}", size, concurrency, args)
        finally:
            bare.terminate()
            bare.wait()
        base = app.start(ServeConfig(model=model, port=free_port(), approximate_above=args.approximate_above))
        try:
            rows += measure("serve", base, size, concurrency, args)
        finally:
            app.stop()

    print(f"\n{'server':<6} {'items':>8} {'clients':>7} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'errors':>6}")
    for r in rows:
        print(f"{r['server']:<6} {r['items']:>8} {r['clients']:>7} {r['req_per_s']:>8} {r['p50_ms']:>8} "
              f"{r['p95_ms']:>8} {r['p99_ms']:>8} {r['errors']:>6}")
    cell = {(r["server"], r["items"], r["clients"]): r for r in rows}
    ratios = {
        f"{size}_items_{c}_clients": round(cell[("serve", size, c)]["req_per_s"] / cell[("bare", size, c)]["req_per_s"], 3)
        for size in sizes for c in concurrency
    }
    top = (sizes[-1], concurrency[-1])
    result = write_result(
        args.name, "requests/s", cell[("serve", *top)]["req_per_s"], cell[("bare", *top)]["req_per_s"],
        params={"sizes": sizes, "clients": concurrency, "requests": args.requests, "seconds": args.seconds,
                "approximate_above": args.approximate_above, "users": N_USERS, "dim": DIM + 1},
        extra={"rows": rows, "throughput_ratio": ratios, "ann": {str(k): v for k, v in recall.items()}},
    )
    print("\nthroughput ratio (serve / bare):", ratios)
    print("ann:", result["ann"])


if __name__ == "__main__":
    main()
