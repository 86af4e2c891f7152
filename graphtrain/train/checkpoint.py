"""Per-epoch checkpoints: model, optimiser, progress, the model's shape and id maps.

A checkpoint directory holds ``model.pt`` and ``optimizer.pt`` (tensor state dicts,
loaded with ``weights_only=True``), ``state.json`` (epoch, metrics history),
``model.json`` (everything needed to rebuild the model without the dataset) and the
id maps the embedding rows belong to (``users.parquet``, ``items.parquet``: the
dataset's own tables), so a checkpoint is never read against other ids.
There is no RNG state to store: the loop reseeds every epoch from (seed, epoch, rank)
(:func:`graphtrain.train.loop.seed_epoch`).
"""

from __future__ import annotations

import json
import os

import pandas as pd
import torch

from graphtrain import storage
from graphtrain.config import ModelConfig
from graphtrain.errors import ArtifactError
from graphtrain.models.gnn import MigrationGNN

LATEST = "latest.json"
USERS = "users.parquet"
ITEMS = "items.parquet"


def dir_name(epoch: int) -> str:
    """The directory of one epoch's checkpoint under the run."""
    return f"epoch_{epoch:04d}"


def save(
    directory: str,
    model: MigrationGNN,
    optimizer: torch.optim.Optimizer,
    epoch: int,
    history: list[dict],
    extra: dict | None = None,
    id_maps: tuple[pd.DataFrame, pd.DataFrame] | None = None,
) -> None:
    """Write one checkpoint; ``id_maps`` is the dataset's (users, items) tables."""
    os.makedirs(directory, exist_ok=True)
    if id_maps is not None:
        users, items = id_maps
        users.to_parquet(os.path.join(directory, USERS), index=False)
        items.to_parquet(os.path.join(directory, ITEMS), index=False)
    torch.save(model.full_state_dict(), os.path.join(directory, "model.pt"))
    torch.save(optimizer.state_dict(), os.path.join(directory, "optimizer.pt"))
    storage.write_json(os.path.join(directory, "state.json"), {"epoch": epoch, "history": history, **(extra or {})})
    storage.write_json(
        os.path.join(directory, "model.json"),
        {
            "model": model.config.to_dict(),
            "num_nodes": model.num_nodes,
            "source_domain": model.source_domain,
            "target_domain": model.target_domain,
        },
    )


def resolve_uri(uri: str, which: str = "checkpoint") -> str:
    """The URI of one checkpoint directory, from a checkpoint dir or a checkpoints root;
    nothing is downloaded.

    Under a root, ``latest.json`` names ``checkpoint`` (the best validated epoch, what
    export uses) and ``last`` (the newest epoch); a checkpoint dir is both.
    """
    if storage.exists(storage.join(uri, "model.pt")):
        return uri
    latest = storage.join(uri, LATEST)
    if storage.exists(latest):
        pointer = storage.read_json(latest)
        return pointer.get(which, pointer["checkpoint"])
    raise ArtifactError(f"no checkpoint at {uri!r}: expected model.pt or {LATEST}; run `graphtrain train` first")


def resolve(uri: str, which: str = "checkpoint") -> str:
    """A local directory holding one checkpoint (only that one is downloaded if remote)."""
    return storage.materialize(resolve_uri(uri, which))


def read_state(uri: str, which: str = "checkpoint") -> dict:
    """``state.json`` of a checkpoint (epoch, history), read without the weights."""
    return storage.read_json(storage.join(resolve_uri(uri, which), "state.json"))


def _load_tensors(path: str) -> dict:
    """``torch.load`` of a checkpoint file, or an ArtifactError naming it and the fix."""
    if not os.path.exists(path):
        raise ArtifactError(f"checkpoint file {path!r} is missing: the checkpoint is incomplete; train again or pick another")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated zip, bad pickle, wrong file: all mean the same to the user
        raise ArtifactError(f"checkpoint file {path!r} cannot be read ({type(err).__name__}: {err}); "
                            "it is truncated or not a graphtrain checkpoint: train again or pick another") from err


def load_model(uri: str, map_location: str = "cpu") -> MigrationGNN:
    directory = resolve(uri)
    try:
        with open(os.path.join(directory, "model.json")) as f:
            shape = json.load(f)
    except (OSError, ValueError) as err:
        raise ArtifactError(f"checkpoint {uri!r} has no readable model.json ({err}); train again or pick another") from err
    model = MigrationGNN(ModelConfig(**shape["model"]), shape["num_nodes"], shape["source_domain"], shape["target_domain"])
    model.load_state_dict({k: v.to(map_location) for k, v in _load_tensors(os.path.join(directory, "model.pt")).items()})
    return model


def check_id_maps(directory: str, users: pd.DataFrame, items: pd.DataFrame, dataset_uri: str = "the dataset") -> None:
    """Raise :class:`ArtifactError` unless the checkpoint's id maps are ``users`` and
    ``items`` (a dataset's tables): the embedding rows would belong to other ids.
    Checkpoints written without id maps pass (nothing to compare)."""
    if not os.path.exists(os.path.join(directory, USERS)):
        return
    for name, ours, keys in (
        (USERS, users, ["user_idx", "user_id"]), (ITEMS, items, ["domain", "item_idx", "item_id"]),
    ):
        saved = _canonical(pd.read_parquet(os.path.join(directory, name)), keys)
        given = _canonical(ours, keys)
        if len(saved) != len(given):
            raise ArtifactError(
                f"checkpoint {directory!r} was trained on {len(saved)} rows of {name} but {dataset_uri} has "
                f"{len(given)}: export and resume need the dataset the run trained on"
            )
        differ = (saved != given).any(axis=1).to_numpy()
        if differ.any():
            row = int(differ.argmax())
            raise ArtifactError(
                f"checkpoint {directory!r} and {dataset_uri} map ids differently ({name}: checkpoint "
                f"{saved.iloc[row].to_dict()} vs dataset {given.iloc[row].to_dict()}): export and resume need "
                "the dataset the run trained on"
            )


def _canonical(table: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    table = table[keys].astype({k: str for k in keys if k in ("domain", "user_id", "item_id")})
    return table.sort_values(keys[:-1], kind="stable").reset_index(drop=True)


def load_progress(directory: str, model: MigrationGNN, optimizer: torch.optim.Optimizer) -> tuple[int, list[dict]]:
    """Restore model and optimiser in place; return (last finished epoch, history).

    KVStore tables are written back once (rank 0); the sparse optimiser's moments are
    restored by ``KVStoreEmbeddings.load_optimizer``.
    """
    model.load_full_state_dict(_load_tensors(os.path.join(directory, "model.pt")))
    optimizer.load_state_dict(_load_tensors(os.path.join(directory, "optimizer.pt")))
    with open(os.path.join(directory, "state.json")) as f:
        state = json.load(f)
    return int(state["epoch"]), list(state["history"])


# Tables with one row per node: a warm start copies the rows the old model had and
# keeps the fresh initialisation of the rest (ids the new dataset appended).
ROW_TABLES = ("embeddings.", "item_bias.")


def warm_start_state(uri: str, model: MigrationGNN, users: pd.DataFrame, items: pd.DataFrame) -> dict[str, torch.Tensor]:
    """``model``'s full state with every weight of the checkpoint at ``uri`` copied in.

    The dataset must have been ingested with the checkpoint's id maps (``--id-maps``):
    its old ids keep their indices and new ids come after, so row i of every node
    table is the same user or item in both. Raises :class:`ArtifactError` otherwise,
    or when the model's shape differs (another dim, layer count, transfer head).
    """
    directory = resolve(uri)
    _check_prefix(directory, users, items, uri)
    old = _load_tensors(os.path.join(directory, "model.pt"))
    state = {k: v.detach().clone() for k, v in model.full_state_dict().items()}
    for key, fresh in state.items():
        saved = old.get(key)
        if saved is None:
            raise ArtifactError(f"warm start from {uri!r}: it has no {key!r}; train with the same model shape or without --warm-start")
        if saved.shape == fresh.shape:
            state[key] = saved.to(fresh.dtype)
        elif key.startswith(ROW_TABLES) and saved.shape[1:] == fresh.shape[1:] and len(saved) <= len(fresh):
            fresh[: len(saved)] = saved.to(fresh.dtype)
        else:
            raise ArtifactError(
                f"warm start from {uri!r}: {key} is {tuple(saved.shape)} there but {tuple(fresh.shape)} here; "
                "train with the same model shape or without --warm-start"
            )
    return state


def _check_prefix(directory: str, users: pd.DataFrame, items: pd.DataFrame, uri: str) -> None:
    """Every id of the checkpoint keeps its index in ``users``/``items``."""
    if not os.path.exists(os.path.join(directory, USERS)):
        raise ArtifactError(f"warm start from {uri!r}: the checkpoint has no id maps ({USERS}); it cannot be matched to ids")
    for name, ours, keys in ((USERS, users, ["user_idx"]), (ITEMS, items, ["domain", "item_idx"])):
        ident = "user_id" if name == USERS else "item_id"
        saved = pd.read_parquet(os.path.join(directory, name))[[*keys, ident]]
        joined = saved.astype({ident: str}).merge(ours[[*keys, ident]].astype({ident: str}), on=keys, how="left", suffixes=("_old", ""))
        moved = joined[joined[ident] != joined[f"{ident}_old"]]
        if len(moved):
            row = moved.iloc[0]
            raise ArtifactError(
                f"warm start from {uri!r}: {ident} {row[f'{ident}_old']!r} has index {row[keys].to_dict()} there but not "
                f"in this dataset; ingest with --id-maps <the model it came from> so indices are kept"
            )
