"""`graphtrain export`: checkpoint -> model artifact (full-graph embeddings + id maps)."""

from __future__ import annotations

import time

import numpy as np

from graphtrain import storage
from graphtrain.data.dataset import Dataset
from graphtrain.errors import ArtifactError
from graphtrain.inference import artifact
from graphtrain.inference.foldin import fold_in_arrays, seen_weights_name
from graphtrain.models.alpha import edge_alpha
from graphtrain.models.inference import embed
from graphtrain.models.popularity import item_popularity
from graphtrain.ranking.metrics import seen_csr
from graphtrain.train import checkpoint


def model_arrays(model, reps: dict, train_edges: dict, alpha: dict | None, popularity: dict, num_users: int) -> dict:
    """Every array of the artifact (see :mod:`graphtrain.inference.artifact`) from the
    full-graph representations ``reps`` (``MigrationGNN.embed``), each domain's train
    edges ``(users, items)``, their alpha weights (None: plain means) and item counts."""
    arrays = fold_in_arrays(model, reps["layer_inputs"])
    for domain, (users, items) in train_edges.items():
        arrays[f"users@{domain}"] = reps["users"][domain].cpu().numpy().astype(np.float32)
        arrays[f"items@{domain}"] = reps["items"][domain].cpu().numpy().astype(np.float32)
        arrays[f"popularity@{domain}"] = popularity[domain]
        arrays[f"seen_indptr@{domain}"], arrays[f"seen_indices@{domain}"] = seen_csr(users, items, num_users)
        if alpha is not None:  # in the CSR's (user, item) order, for the fold-in
            arrays[seen_weights_name(domain)] = alpha[domain][np.lexsort((items, users))]
    return arrays


def check_finite(arrays: dict[str, np.ndarray], checkpoint_dir: str) -> None:
    """Refuse to write NaN or infinite vectors: served, they would rank at random."""
    for name, array in sorted(arrays.items()):
        if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
            bad = int((~np.isfinite(array)).reshape(len(array), -1).any(1).sum()) if array.ndim else 1
            raise ArtifactError(f"export: {bad} row(s) of {name!r} are NaN or infinite in checkpoint {checkpoint_dir!r}: "
                                "training diverged; lower --learning-rate, or export an earlier epoch")


def export(dataset_uri: str, checkpoint_uri: str, output: str, partitions: str | None = None) -> dict:
    """Write the model artifact; returns its manifest. With ``partitions`` (the
    dataset's partition artifact) Ray tasks write it, layer by layer over the
    partitions (:mod:`graphtrain.inference.distributed_export`); without, this process
    runs full-graph inference."""
    if partitions is not None:
        from graphtrain.inference.distributed_export import export_distributed

        return export_distributed(dataset_uri, checkpoint_uri, partitions, output)
    dataset = Dataset.load(dataset_uri)
    checkpoint_dir = checkpoint.resolve(checkpoint_uri)
    checkpoint.check_id_maps(checkpoint_dir, dataset.users, dataset.items, dataset_uri)
    model = checkpoint.load_model(checkpoint_dir)
    reps = embed(model, dataset)
    train_edges = {d: dataset.split_edges("train", d) for d in dataset.domains}
    popularity = {d: item_popularity(dataset, d) for d in dataset.domains}
    alpha = edge_alpha(dataset, model.config.edge_weights)
    arrays = model_arrays(model, reps, train_edges, alpha, popularity, dataset.num_users)
    check_finite(arrays, checkpoint_dir)
    state = checkpoint.read_state(checkpoint_dir)
    # The whole run's history lives in the newest checkpoint (the exported one may be earlier).
    history = checkpoint.read_state(checkpoint_uri, "last")["history"]
    manifest = {
        "version": time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()),
        "trained_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "domains": dataset.domains,
        "source_domain": model.source_domain,
        "target_domain": model.target_domain,
        "embedding_dim": model.config.embedding_dim,
        "model": model.config.to_dict(),
        "checkpoint": checkpoint_dir,
        "epoch": state["epoch"],
        "dataset": dataset_uri,
        "train": {
            "epochs": len(history),
            "best_epoch": state["epoch"],
            "seconds": round(sum(m["epoch_seconds"] for m in history), 3),
            "workers": state.get("workers", 1),
            "device": state.get("device", "cpu"),
            "stopped": history[-1].get("stopped", "epochs") if history else None,
            "history": history,
        },
    }
    with storage.atomic_artifact(output) as staging:
        artifact.write(staging, manifest=manifest, users=dataset.users, items=dataset.items, arrays=arrays)
    return manifest
