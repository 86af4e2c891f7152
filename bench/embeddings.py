"""Replicated vs KVStore embedding tables, trained through Ray Train on graph servers.

Same graph, partitions, workers, batch size, fanouts and epochs, in one run:

  replicated   nn.Embedding tables on every worker; DDP all-reduces their dense
               gradients (the whole tables) every step; Adam
  distributed  DistEmbedding tables in the graph servers' KVStore; each step pulls
               the batch's rows and DGL's SparseAdam pushes only their updates

Prints seeds/s per worker (ratio = distributed / replicated), epoch and sampling
seconds, the replicated tables' bytes per worker, and the valid NDCG@10 of the last
epoch when the dataset has valid rows.

    python bench/embeddings.py [--graph sport_cloth] [--workers 2] [--epochs 2] [--embedding-dim 64] [--name embeddings]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from bench.common import write_result  # noqa: E402
from bench.sampling import SHARED, build  # noqa: E402


def train_mode(mode: str, uri: str, parts: str, work: str, args) -> dict:
    from graphtrain.config import ModelConfig, TrainConfig
    from graphtrain.data.dataset import Dataset
    from graphtrain.train.trainer import train

    meta = Dataset.load(uri).meta
    result = train(
        TrainConfig(
            dataset=uri, partitions=parts, output=os.path.join(work, mode), source_domain=meta["protocol"]["source_domain"],
            target_domain=meta["protocol"]["target_domain"], workers=args.workers, epochs=args.epochs, batch_size=args.batch_size,
            fanouts=args.fanouts, patience=0, embeddings=mode, model=ModelConfig(embedding_dim=args.embedding_dim),
        )
    )
    with open(os.path.join(result["last_checkpoint"], "state.json")) as f:
        history = json.load(f)["history"]  # rank 0's epochs
    return {
        "seeds_per_s_per_worker": float(np.mean([m["seeds_per_s"] for m in history])),
        "epoch_seconds": [round(m["epoch_seconds"], 1) for m in history],
        "sample_seconds": [round(m["sample_seconds"], 1) for m in history],
        "valid_ndcg@10": history[-1].get("valid_ndcg@10"),
        "train_seconds": round(result["seconds"], 1),
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--graph", default="sport_cloth" if os.path.isdir(SHARED) else "generated:200000")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--embedding-dim", type=int, default=64, help="wider tables: more for DDP to all-reduce")
    parser.add_argument("--name", default="embeddings", help="results in bench/results/<name>.json")
    parser.add_argument("--fanouts", type=lambda t: tuple(int(x) for x in t.split(",")), default=(10, 10))
    args = parser.parse_args(argv)

    from graphtrain.config import PartitionConfig
    from graphtrain.data.dataset import Dataset
    from graphtrain.graph.partition import partition
    from graphtrain.ray_env import ensure_ray
    from graphtrain.train.embeddings import replicated_bytes

    ensure_ray()
    work = tempfile.mkdtemp(prefix="graphtrain-bench-embeddings-")
    try:
        uri = build(args.graph, work)
        parts = os.path.join(work, "partitions")
        partition(PartitionConfig(dataset=uri, output=parts, num_parts=1))
        results = {mode: train_mode(mode, uri, parts, work, args) for mode in ("replicated", "distributed")}
        num_nodes = Dataset.load(uri).num_nodes
    finally:
        shutil.rmtree(work, ignore_errors=True)
    table_mib = replicated_bytes(num_nodes, args.embedding_dim) / 2**20
    ours, base = results["distributed"], results["replicated"]
    for mode, r in results.items():
        print(f"{mode:<12} {r['seeds_per_s_per_worker']:>9,.0f} seeds/s per worker   epochs {r['epoch_seconds']} s "
              f"(sampling {r['sample_seconds']} s)   valid NDCG@10 {r['valid_ndcg@10']}")
    ratio = ours["seeds_per_s_per_worker"] / base["seeds_per_s_per_worker"]
    print(f"{args.graph}: {sum(num_nodes.values()):,} nodes, replicated tables + Adam state {table_mib:,.0f} MiB per worker; "
          f"seeds/s distributed / replicated = {ratio:.2f}")
    write_result(
        args.name, "seeds/s per worker", ours["seeds_per_s_per_worker"], base["seeds_per_s_per_worker"],
        {"graph": args.graph, "embedding_dim": args.embedding_dim, "workers": args.workers, "epochs": args.epochs, "batch_size": args.batch_size,
         "fanouts": list(args.fanouts), "nodes": num_nodes, "replicated_table_mib": round(table_mib, 1), **results},
    )


if __name__ == "__main__":
    main()
