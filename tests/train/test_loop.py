"""The per-worker loop without Ray (as it runs on a GPU machine that has no Ray)."""

import numpy as np
import pytest
import torch

from graphtrain.graph.build import train_graph
from graphtrain.graph.sampling import LocalGraphSource
from graphtrain.train import checkpoint
from graphtrain.train.loop import train_worker
from tests.train.configs import tiny_train_config


_config = tiny_train_config


def test_loss_falls_and_metrics_are_reported(tiny_dataset):
    reported = []
    history = train_worker(
        _config(batches_per_draw=5), tiny_dataset, LocalGraphSource(train_graph(tiny_dataset)),
        report=lambda epoch, metrics, *rest: reported.append(epoch),
    )
    assert reported == [0, 1, 2]
    assert history[-1]["loss"] < history[0]["loss"]
    n_train = int((tiny_dataset.edges["split"] == "train").sum())
    assert all(m["seeds"] == n_train for m in history)
    # Batches are drawn 5 at a time; the last group is short.
    batches = -(-n_train // 256)
    assert batches % 5 and all(m["steps"] == batches for m in history)
    assert all(m["seeds_per_s"] > 0 and m["device"] == "cpu" for m in history)


def test_resume_continues_after_the_last_checkpointed_epoch(tiny_dataset, tmp_path):
    source = LocalGraphSource(train_graph(tiny_dataset))
    saved = {}

    def save(epoch, metrics, model, optimizer, history):
        path = tmp_path / f"epoch_{epoch}"
        checkpoint.save(str(path), model, optimizer, epoch, history)
        saved[epoch] = path

    train_worker(_config(epochs=2), tiny_dataset, source, report=save)  # "killed" after epoch 1
    epochs_run = []

    def resume(model, optimizer):
        return checkpoint.load_progress(str(saved[1]), model, optimizer)

    history = train_worker(
        _config(epochs=4), tiny_dataset, source, resume=resume,
        report=lambda epoch, metrics, model, *rest: epochs_run.append(epoch),
    )
    assert epochs_run == [2, 3]
    assert [m["epoch"] for m in history] == [0, 1, 2, 3]
    restored = checkpoint.load_model(str(saved[1]))
    state = torch.load(saved[1] / "model.pt", weights_only=True)
    for name, tensor in restored.state_dict().items():
        assert torch.equal(tensor, state[name])


class _Killed(Exception):
    pass


def test_resumed_run_ends_where_an_uninterrupted_one_does(tiny_dataset, tmp_path):
    """Batches, negatives and in-process neighbours are seeded from (seed, epoch, rank),
    so killing a run after epoch 1 and resuming it changes nothing in the trained weights."""
    source = LocalGraphSource(train_graph(tiny_dataset))
    config = _config(epochs=4, patience=0)
    final = {}

    def keep(key):
        def report(epoch, metrics, model, optimizer, history):
            final[key] = {k: v.clone() for k, v in model.state_dict().items()}
            if key == "killed" and epoch == 1:
                checkpoint.save(str(tmp_path / "ckpt"), model, optimizer, epoch, history)
                raise _Killed
        return report

    train_worker(config, tiny_dataset, source, report=keep("straight"))
    with pytest.raises(_Killed):
        train_worker(config, tiny_dataset, source, report=keep("killed"))
    train_worker(
        config, tiny_dataset, source, report=keep("resumed"),
        resume=lambda model, optimizer: checkpoint.load_progress(str(tmp_path / "ckpt"), model, optimizer),
    )
    assert final["straight"].keys() == final["resumed"].keys()
    for name, tensor in final["straight"].items():
        assert torch.equal(tensor, final["resumed"][name]), name
    assert not torch.equal(final["straight"]["embeddings.user.weight"], final["killed"]["embeddings.user.weight"])


def _transfer_gap(model, dataset):
    """Mean ||T(m_u) - h_u||^2 over users with source and target training edges."""
    from graphtrain.models.inference import full_graph_layers

    with torch.no_grad():
        ids = {nt: torch.arange(n) for nt, n in dataset.num_nodes.items()}
        final, message = model.propagate(ids, full_graph_layers(dataset, model.config.num_layers))
        target_users = np.unique(dataset.split_edges("train", "movies")[0])
        source_users = np.unique(dataset.split_edges("train", "books")[0])
        both = torch.from_numpy(np.intersect1d(target_users, source_users))
        return float((model.transfer(message[both]) - final["user"][both]).pow(2).sum(1).mean())


def test_alignment_loss_pulls_the_transfer_head_toward_the_target_side(tiny_dataset):
    source = LocalGraphSource(train_graph(tiny_dataset))
    trained, gaps = {}, {}
    for weight in (0.0, 1.0):
        train_worker(
            _config(epochs=3, patience=0, alignment_loss_weight=weight), tiny_dataset, source,
            report=lambda epoch, metrics, model, *rest, weight=weight: trained.update({weight: model}),
        )
        gaps[weight] = _transfer_gap(trained[weight], tiny_dataset)
    print(f"mean ||T(m_u) - h_u||^2 by alignment weight: {gaps}")  # shown with -s
    assert gaps[1.0] < 0.5 * gaps[0.0], gaps


def test_same_seed_same_first_epoch(tiny_dataset):
    source = LocalGraphSource(train_graph(tiny_dataset))
    a = train_worker(_config(epochs=1), tiny_dataset, source)
    b = train_worker(_config(epochs=1), tiny_dataset, source)
    assert np.isclose(a[0]["loss"], b[0]["loss"])
