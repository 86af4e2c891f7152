"""Finding a run's checkpoints through latest.json without downloading weights."""

import json

import pytest
import torch

from graphtrain.config import ModelConfig
from graphtrain.errors import ArtifactError
from graphtrain.models.gnn import MigrationGNN
from graphtrain.train import checkpoint


def _run_with_two_epochs(root):
    model = MigrationGNN(ModelConfig(embedding_dim=4), {"user": 3, "item@a": 2, "item@b": 2}, "a", "b")
    optimizer = torch.optim.Adam(model.parameters())
    history = [{"epoch": 0}, {"epoch": 1}]
    for epoch in (0, 1):
        checkpoint.save(str(root / checkpoint.dir_name(epoch)), model, optimizer, epoch, history[: epoch + 1])
    pointer = {"checkpoint": str(root / checkpoint.dir_name(0)), "last": str(root / checkpoint.dir_name(1)), "best_epoch": 0}
    (root / checkpoint.LATEST).write_text(json.dumps(pointer))
    return model


def test_latest_json_names_the_best_and_the_last_epoch(tmp_path):
    model = _run_with_two_epochs(tmp_path)
    assert checkpoint.resolve_uri(str(tmp_path)).endswith("epoch_0000")
    assert checkpoint.resolve_uri(str(tmp_path), "last").endswith("epoch_0001")
    assert checkpoint.read_state(str(tmp_path))["epoch"] == 0
    assert checkpoint.read_state(str(tmp_path), "last")["history"] == [{"epoch": 0}, {"epoch": 1}]
    # A checkpoint directory is both its own best and last.
    one = str(tmp_path / checkpoint.dir_name(1))
    assert checkpoint.resolve_uri(one) == one == checkpoint.resolve_uri(one, "last")
    loaded = checkpoint.load_model(str(tmp_path))
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor)


def test_no_checkpoint_says_which_stage_makes_one(tmp_path):
    with pytest.raises(ArtifactError, match="graphtrain train"):
        checkpoint.resolve_uri(str(tmp_path))


def _id_maps():
    import pandas as pd

    users = pd.DataFrame({"user_id": ["u0", "u1", "u2"], "user_idx": [0, 1, 2]})
    items = pd.DataFrame({"domain": ["a", "a", "b", "b"], "item_id": ["x", "y", "x", "z"], "item_idx": [0, 1, 0, 1]})
    return users, items


def test_checkpoint_holds_the_id_maps_and_refuses_other_ids(tmp_path):
    model = MigrationGNN(ModelConfig(embedding_dim=4), {"user": 3, "item@a": 2, "item@b": 2}, "a", "b")
    users, items = _id_maps()
    checkpoint.save(str(tmp_path), model, torch.optim.Adam(model.parameters()), 0, [], id_maps=(users, items))
    assert (tmp_path / checkpoint.USERS).exists() and (tmp_path / checkpoint.ITEMS).exists()
    # The same ids in another row order are the same maps.
    checkpoint.check_id_maps(str(tmp_path), users.iloc[::-1], items.sample(frac=1.0, random_state=0), "ds")
    swapped = users.assign(user_id=["u1", "u0", "u2"])
    with pytest.raises(ArtifactError, match=r"map ids differently.*'user_id': 'u0'.*'user_id': 'u1'"):
        checkpoint.check_id_maps(str(tmp_path), swapped, items, "ds")
    with pytest.raises(ArtifactError, match="trained on 4 rows of items.parquet but ds has 3"):
        checkpoint.check_id_maps(str(tmp_path), users, items.iloc[:3], "ds")
    # Checkpoints written without id maps (in-process runs) have nothing to compare.
    checkpoint.save(str(tmp_path / "plain"), model, torch.optim.Adam(model.parameters()), 0, [])
    checkpoint.check_id_maps(str(tmp_path / "plain"), swapped, items, "ds")


def test_export_refuses_a_dataset_with_other_ids_and_takes_the_matching_one(tiny_dataset_uri, tiny_dataset, tmp_path, capsys):
    from graphtrain.cli import main

    model = MigrationGNN(ModelConfig(embedding_dim=4), tiny_dataset.num_nodes, "books", "movies")
    optimizer = torch.optim.Adam(model.parameters())
    reordered = tiny_dataset.users.assign(user_id=tiny_dataset.users["user_id"].to_numpy()[::-1])
    other = tmp_path / "other_ids"
    checkpoint.save(str(other), model, optimizer, 0, [{"epoch": 0, "epoch_seconds": 1.0}], id_maps=(reordered, tiny_dataset.items))
    assert main(["export", "--dataset", tiny_dataset_uri, "--checkpoint", str(other), "--output", str(tmp_path / "m1")]) == 2
    assert "map ids differently" in capsys.readouterr().err
    assert not (tmp_path / "m1").exists()

    same = tmp_path / "same_ids"
    checkpoint.save(str(same), model, optimizer, 0, [{"epoch": 0, "epoch_seconds": 1.0}], id_maps=(tiny_dataset.users, tiny_dataset.items))
    assert main(["export", "--dataset", tiny_dataset_uri, "--checkpoint", str(same), "--output", str(tmp_path / "m2")]) == 0
    assert (tmp_path / "m2" / "_SUCCESS").exists()


def test_a_run_the_cluster_can_never_hold_fails_at_once_naming_the_field(ray_session, tmp_path):
    import time

    from graphtrain.config import TrainConfig
    from graphtrain.errors import ConfigError
    from graphtrain.train.trainer import train

    base = {"dataset": str(tmp_path / "d"), "partitions": str(tmp_path / "p"), "output": str(tmp_path / "o"),
            "source_domain": "books", "target_domain": "movies"}
    started = time.monotonic()
    with pytest.raises(ConfigError, match=r"workers=5: the Ray cluster has 2 CPUs"):
        train(TrainConfig(**base, workers=5))
    with pytest.raises(ConfigError, match=r"gpu=True: .* 0 GPUs"):
        train(TrainConfig(**base, workers=1, gpu=True))
    assert time.monotonic() - started < 10


def test_warm_start_keeps_old_rows_and_initialises_appended_ids(tmp_path):
    import pandas as pd

    old = MigrationGNN(ModelConfig(embedding_dim=4), {"user": 3, "item@a": 2, "item@b": 2}, "a", "b")
    users, items = _id_maps()
    checkpoint.save(str(tmp_path), old, torch.optim.Adam(old.parameters()), 0, [], id_maps=(users, items))
    # The new dataset kept every index (ingest --id-maps) and appended one user and one item of b.
    new_users = pd.concat([users, pd.DataFrame({"user_id": ["u9"], "user_idx": [3]})], ignore_index=True)
    new_items = pd.concat([items, pd.DataFrame({"domain": ["b"], "item_id": ["w"], "item_idx": [2]})], ignore_index=True)
    torch.manual_seed(1)
    new = MigrationGNN(ModelConfig(embedding_dim=4), {"user": 4, "item@a": 2, "item@b": 3}, "a", "b")
    fresh = {k: v.clone() for k, v in new.full_state_dict().items()}
    state = checkpoint.warm_start_state(str(tmp_path), new, new_users, new_items)
    saved = old.full_state_dict()
    assert torch.equal(state["embeddings.user.weight"][:3], saved["embeddings.user.weight"])
    assert torch.equal(state["embeddings.user.weight"][3], fresh["embeddings.user.weight"][3])
    assert torch.equal(state["embeddings.item@b.weight"][:2], saved["embeddings.item@b.weight"])
    for key in saved:
        if not key.startswith(checkpoint.ROW_TABLES):
            assert torch.equal(state[key], saved[key]), key
    new.load_full_state_dict(state)

    moved = new_users.assign(user_id=["u1", "u0", "u2", "u9"])
    with pytest.raises(ArtifactError, match="user_id 'u0' has index .* ingest with --id-maps"):
        checkpoint.warm_start_state(str(tmp_path), new, moved, new_items)
    wider = MigrationGNN(ModelConfig(embedding_dim=8), {"user": 4, "item@a": 2, "item@b": 3}, "a", "b")
    with pytest.raises(ArtifactError, match="same model shape"):
        checkpoint.warm_start_state(str(tmp_path), wider, new_users, new_items)


@pytest.mark.parametrize("damage", ["truncate", "delete", "garbage"])
def test_a_damaged_checkpoint_fails_at_load_naming_the_file(tmp_path, damage):
    _run_with_two_epochs(tmp_path)
    weights = tmp_path / checkpoint.dir_name(0) / "model.pt"
    if damage == "truncate":
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    elif damage == "delete":
        weights.unlink()
    else:
        weights.write_bytes(b"not a checkpoint")
    with pytest.raises(ArtifactError, match=r"model\.pt.*(cannot be read|missing)"):
        checkpoint.load_model(str(tmp_path))
