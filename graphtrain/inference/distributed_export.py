"""`graphtrain export --partitions`: the model artifact written by Ray tasks.

The same artifact as :func:`graphtrain.inference.export.export` (tested equal), with
no process holding the graph or every vector:

1. layer-wise inference over the partitions (:mod:`graphtrain.inference.layerwise`);
2. every node array (``users@d``, ``items@d``, the fold-in's layer inputs) written
   shard by shard, one task per shard of dataset ids, each gathering its rows from
   the partitions' files;
3. each domain's seen-items CSR, one task per range of users, from the partitions'
   train edges: a first round counts, the driver turns counts into offsets, a second
   writes ``seen_indptr``, ``seen_indices`` and ``seen_alpha`` shards;
4. the id maps copied shard by shard.

The driver holds the manifest, per-range counts, and per-item popularity.
"""

from __future__ import annotations

import time

import numpy as np

from graphtrain import storage
from graphtrain.config import absolute
from graphtrain.errors import ArtifactError
from graphtrain.inference import artifact, layerwise
from graphtrain.inference.foldin import PARAM, USER_INPUT, layer_input_name, seen_weights_name
from graphtrain.models.alpha import alpha_of
from graphtrain.names import USER, item_type

TASK_RETRIES = 2
USERS_PER_CSR_TASK = 1 << 20


def _node_shard(work_uri, partitions_uri, staging, array, stage, file_name, ntype, index, begin, end) -> dict:
    """Rows [begin, end) of one node array, gathered from the partitions' files."""
    partitions_dir = layerwise.local_partitions(partitions_uri)
    rows = layerwise.gather_rows(work_uri, partitions_dir, stage, file_name, ntype, np.arange(begin, end))
    if not np.isfinite(rows).all():
        raise ArtifactError(f"export: rows of {array!r} in [{begin}, {end}) are NaN or infinite: training diverged; "
                            "lower --learning-rate, or export an earlier epoch")
    return artifact.write_shard(staging, array, index, begin, rows.astype(np.float32, copy=False))


def _user_range_filter(d_idx: int, begin: int, end: int) -> list:
    return [("domain", "=", d_idx), ("user_idx", ">=", begin), ("user_idx", "<", end)]


def _edges_of(partitions_uri: str, parts: int, d_idx: int, begin: int, end: int):
    """(users, items, weights) of one domain's train edges of users [begin, end), sorted by (user, item)."""
    from graphtrain.graph.train_shards import read_train_edges

    filters = _user_range_filter(d_idx, begin, end)
    pieces = [read_train_edges(partitions_uri, p, ("user_idx", "item_idx", "weight"), filters) for p in range(parts)]
    users = np.concatenate([p["user_idx"] for p in pieces]).astype(np.int64)
    items = np.concatenate([p["item_idx"] for p in pieces]).astype(np.int64)
    weights = np.concatenate([p["weight"] for p in pieces]).astype(np.float32)
    order = np.lexsort((items, users))
    return users[order], items[order], weights[order]


def _csr_count(partitions_uri: str, parts: int, d_idx: int, begin: int, end: int) -> int:
    """How many of one domain's train edges users [begin, end) have (one column read)."""
    from graphtrain.graph.train_shards import read_train_edges

    filters = _user_range_filter(d_idx, begin, end)
    return sum(len(read_train_edges(partitions_uri, p, ("user_idx",), filters)["user_idx"]) for p in range(parts))


def _csr_shard(partitions_uri, staging, parts, domain, d_idx, index, begin, end, offset, mode) -> list[tuple[str, dict]]:
    users, items, weights = _edges_of(partitions_uri, parts, d_idx, begin, end)
    indptr = offset + np.concatenate([[0], np.cumsum(np.bincount(users - begin, minlength=end - begin))[:-1]])
    entries = [(f"seen_indptr@{domain}", artifact.write_shard(staging, f"seen_indptr@{domain}", index, begin, indptr))]
    if len(items):
        entries.append((f"seen_indices@{domain}", artifact.write_shard(staging, f"seen_indices@{domain}", index, offset, items)))
        if mode != "none":
            entries.append((seen_weights_name(domain),
                            artifact.write_shard(staging, seen_weights_name(domain), index, offset, alpha_of(weights, mode))))
    return entries


def _copy_map(dataset_uri: str, staging: str, kind: str) -> None:
    """The dataset's id map as one Parquet file, copied a shard at a time."""
    import pyarrow.parquet as pq

    from graphtrain.data.dataset import map_files

    fs, _ = storage.filesystem(dataset_uri)
    out_fs, out_path = storage.filesystem(storage.join(staging, f"{kind}.parquet"))
    storage.prepare_parent(out_fs, out_path)
    writer = None
    columns = ["user_id", "user_idx"] if kind == "users" else ["domain", "item_id", "item_idx"]
    try:
        for path in map_files(dataset_uri, kind):
            table = pq.read_table(path, filesystem=fs, columns=columns)
            table = table.cast(table.schema)  # dictionary columns stay as written
            if writer is None:
                writer = pq.ParquetWriter(out_path, table.schema, filesystem=out_fs)
            writer.write_table(table)
    finally:
        if writer is not None:
            writer.close()


def _check_id_maps(checkpoint_uri: str, dataset_uri: str) -> None:
    """The checkpoint's rows must belong to the dataset's ids (one task holds both maps)."""
    from graphtrain.data.dataset import Dataset
    from graphtrain.train import checkpoint

    users, items = Dataset.load_id_maps(dataset_uri)
    checkpoint.check_id_maps(checkpoint.resolve(checkpoint_uri), users, items, dataset_uri)


def export_distributed(dataset_uri: str, checkpoint_uri: str, partitions_uri: str, output: str) -> dict:
    """Write the model artifact with Ray tasks over ``partitions_uri`` (the partition
    artifact of the dataset the checkpoint was trained on); returns its manifest."""
    from graphtrain.graph.partition import read_info
    from graphtrain.graph.train_shards import item_popularity
    from graphtrain.ray_env import actor_runtime_env, ensure_ray
    from graphtrain.train import checkpoint

    ray = ensure_ray()
    task = {"max_retries": TASK_RETRIES, "runtime_env": actor_runtime_env()}
    remote = lambda fn: ray.remote(fn).options(**task)  # noqa: E731
    meta = storage.read_json(storage.join(dataset_uri, "meta.json"))
    info = read_info(partitions_uri)
    if absolute(info["dataset"]) != absolute(dataset_uri):  # local_path would refuse an s3:// dataset
        raise ArtifactError(f"partitions {partitions_uri!r} were made from {info['dataset']!r}, not {dataset_uri!r}")
    checkpoint_dir = checkpoint.resolve(checkpoint_uri)
    chosen_uri = checkpoint.resolve_uri(checkpoint_uri)  # tasks resolve this one checkpoint themselves
    ray.get(remote(_check_id_maps).remote(chosen_uri, dataset_uri))
    model = layerwise.load_model_mapped(checkpoint_dir)
    domains, layers, mode = list(meta["domains"]), model.config.num_layers, model.config.edge_weights
    num_nodes = {USER: int(meta["num_users"]), **{item_type(d): int(meta["num_items"][d]) for d in domains}}

    with storage.staged_artifact(output) as staging:
        work = storage.join(staging, storage.SCRATCH, "layerwise")
        parts = layerwise.run_rounds(work, partitions_uri, chosen_uri, domains, layers)
        # Node arrays: (artifact name, round files, file name, node type).
        node_arrays = [(USER_INPUT, "layer0", USER, USER)]
        for d in domains:
            node_arrays += [(f"users@{d}", "final", f"users@{d}", USER), (f"items@{d}", "final", f"items@{d}", item_type(d))]
            node_arrays += [(layer_input_name(layer, d), f"layer{layer}", item_type(d), item_type(d)) for layer in range(layers)]
        jobs = []
        for name, stage, file_name, ntype in node_arrays:
            # scoring vectors carry the bias column (MigrationGNN.augment_users and the items' bias)
            width = model.config.embedding_dim + (1 if stage == "final" and model.item_bias is not None else 0)
            step = artifact.rows_per_shard((width,), np.float32)
            for index, begin in enumerate(range(0, max(num_nodes[ntype], 1), step)):
                end = min(begin + step, num_nodes[ntype])
                jobs.append((name, width, remote(_node_shard).remote(work, partitions_uri, staging, name, stage, file_name,
                                                                     ntype, index, begin, end)))
        listing: dict = {}
        for name, width, ref in jobs:
            shard = ray.get(ref)
            entry = listing.setdefault(name, {"shape": [0, width], "dtype": "float32", "shards": []})
            entry["shards"].append(shard)
            entry["shape"][0] = max(entry["shape"][0], shard["rows"][1])
        # The seen-items CSR per domain, by ranges of users.
        sorted_domains = sorted(domains)  # train_shards' domain column indexes these
        ranges = [(b, min(b + USERS_PER_CSR_TASK, num_nodes[USER])) for b in range(0, max(num_nodes[USER], 1), USERS_PER_CSR_TASK)]
        for d in domains:
            d_idx = sorted_domains.index(d)
            counts = ray.get([remote(_csr_count).remote(partitions_uri, parts, d_idx, b, e) for b, e in ranges])
            offsets = np.concatenate([[0], np.cumsum(counts)])
            shards = ray.get([remote(_csr_shard).remote(partitions_uri, staging, parts, d, d_idx, k, b, e, int(offsets[k]), mode)
                              for k, (b, e) in enumerate(ranges)])
            total = int(offsets[-1])
            last = artifact.write_shard(staging, f"seen_indptr@{d}", len(ranges), num_nodes[USER], np.array([total], np.int64))
            for name, dtype, rows in ((f"seen_indptr@{d}", "int64", num_nodes[USER] + 1), (f"seen_indices@{d}", "int64", total),
                                      (seen_weights_name(d), "float32", total)):
                if name == seen_weights_name(d) and mode == "none":
                    continue
                listing[name] = {"shape": [rows], "dtype": dtype,
                                 "shards": [e for shard in shards for n, e in shard if n == name] + ([last] if "indptr" in name else [])}
                if not listing[name]["shards"]:  # no edges at all in this domain
                    empty = np.zeros(0, np.int64 if dtype == "int64" else np.float32)
                    listing[name]["shards"] = [artifact.write_shard(staging, name, 0, 0, empty)]
        popularity = item_popularity(layerwise.local_partitions(partitions_uri), sorted_domains,
                                     {d: int(meta["num_items"][d]) for d in domains})
        for d in domains:
            listing[f"popularity@{d}"] = {"shape": [len(popularity[d])], "dtype": "float32",
                                          "shards": [artifact.write_shard(staging, f"popularity@{d}", 0, 0, popularity[d])]}
        for key, value in model.state_dict().items():  # the fold-in's dense weights
            if key.startswith("transfer.") or (key.startswith("weights.") and f".{USER}." in key):
                array = value.detach().numpy().astype(np.float32)
                listing[PARAM + key] = {"shape": list(array.shape), "dtype": "float32",
                                        "shards": [artifact.write_shard(staging, PARAM + key, 0, 0, array)]}
        ray.get([remote(_copy_map).remote(dataset_uri, staging, kind) for kind in ("users", "items")])
        state = checkpoint.read_state(checkpoint_uri)
        history = checkpoint.read_state(checkpoint_uri, "last")["history"]
        manifest = {
            "version": time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()),
            "trained_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "domains": domains, "source_domain": model.source_domain, "target_domain": model.target_domain,
            "embedding_dim": model.config.embedding_dim, "model": model.config.to_dict(), "checkpoint": checkpoint_dir,
            "epoch": state["epoch"], "dataset": dataset_uri,
            "inference": {"method": "layerwise", "partitions": partitions_uri, "num_parts": parts},
            "train": {
                "epochs": len(history), "best_epoch": state["epoch"],
                "seconds": round(sum(m["epoch_seconds"] for m in history), 3),
                "workers": state.get("workers", 1), "device": state.get("device", "cpu"),
                "stopped": history[-1].get("stopped", "epochs") if history else None, "history": history,
            },
        }
        storage.write_json(storage.join(staging, artifact.MANIFEST), {**manifest, artifact.ARRAYS: listing})
    return manifest
