"""Kill a training run after an epoch's checkpoint, rerun, and continue from there."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from graphtrain.config import ModelConfig, PartitionConfig, TrainConfig
from graphtrain.graph.partition import partition
from graphtrain.train.trainer import train

pytestmark = pytest.mark.integration


def _epochs_on_disk(run_dir):
    if not os.path.isdir(run_dir):
        return []
    return sorted(int(p.split("_")[1]) for p in os.listdir(run_dir) if p.startswith("epoch_"))


def _registered_epoch(run_dir):
    """The newest checkpoint Ray Train's controller has registered, from the snapshot it
    keeps beside the checkpoints (Ray 2.60: checkpoint_manager_snapshot.json); -1 if none yet."""
    try:
        with open(run_dir / "checkpoint_manager_snapshot.json") as f:
            latest = json.load(f)["latest_checkpoint_result"]
    except (OSError, ValueError):  # not written yet, or caught mid-write
        return -1
    return int(latest["checkpoint_dir_name"].split("_")[1]) if latest else -1


def test_killed_run_resumes_at_the_next_epoch(ray_session, tiny_dataset_uri, tmp_path):
    parts = str(tmp_path / "partitions")
    partition(PartitionConfig(dataset=tiny_dataset_uri, output=parts, num_parts=1))
    out = tmp_path / "checkpoints"
    args = [
        "train", "--dataset", tiny_dataset_uri, "--partitions", parts, "--output", str(out),
        "--source-domain", "books", "--target-domain", "movies", "--workers", "2", "--epochs", "200", "--batch-size", "64",
        "--patience", "0",  # no early stop: this test is about resuming
        "--lr-schedule", "constant",  # cosine depends on --epochs, which the rerun changes
    ]
    # A second driver joins the session's Ray instance, as `ray job submit` would.
    env = {**os.environ, "RAY_ADDRESS": ray_session.get_runtime_context().gcs_address}
    driver = subprocess.Popen([sys.executable, "-m", "graphtrain.cli", *args], env=env, start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run_dir = out / "train"
    deadline = time.monotonic() + 240
    # Kill once the controller has registered the checkpoint of epoch 2 or later. It may
    # lag behind the epochs on disk (it polls the workers), so the rerun must restore what
    # it registered, not the newest directory.
    try:
        while _registered_epoch(run_dir) < 2:
            assert driver.poll() is None, "training ended before it could be killed"
            assert time.monotonic() < deadline, "no third checkpoint registered within 240 s"
            time.sleep(0.05)
    finally:
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait()
    time.sleep(1)  # let a checkpoint being written land before reading
    on_disk = _epochs_on_disk(run_dir)
    last = on_disk[-1]
    assert last < 199, "the kill landed after the last epoch: nothing was interrupted"
    before = {}
    for epoch in on_disk:
        with open(run_dir / f"epoch_{epoch:04d}" / "state.json") as f:
            before[epoch] = json.load(f)["history"]
    time.sleep(5)  # Ray cleans up the dead driver's actors (controller, train workers, graph servers)
    registered = _registered_epoch(run_dir)  # what Ray Train restores on the rerun
    assert 2 <= registered <= last

    def config(output):
        return TrainConfig(
            dataset=tiny_dataset_uri, partitions=parts, output=str(output), source_domain="books", target_domain="movies",
            model=ModelConfig(), workers=2, epochs=last + 3, batch_size=64, patience=0, lr_schedule="constant",
        )

    result = train(config(out))
    assert result["last_checkpoint"].endswith(f"epoch_{last + 2:04d}")
    with open(os.path.join(result["last_checkpoint"], "state.json")) as f:
        history = json.load(f)["history"]
    assert [m["epoch"] for m in history] == list(range(last + 3))
    # Ray restores the newest checkpoint its controller had registered, and its epochs
    # come back exactly as the killed run recorded them; the epochs after it are trained
    # again (their timings differ, so the restored prefix is the longest that matches).
    restored = max(k for k in before if history[: k + 1] == before[k])
    assert restored == registered
    # Every epoch reseeds from (seed, epoch, rank), and with one partition the workers
    # draw neighbours in-process: the resumed run ends bitwise where a straight one does.
    straight = train(config(tmp_path / "straight"))
    resumed_weights = torch.load(os.path.join(result["last_checkpoint"], "model.pt"), weights_only=True)
    straight_weights = torch.load(os.path.join(straight["last_checkpoint"], "model.pt"), weights_only=True)
    assert resumed_weights.keys() == straight_weights.keys()
    assert all(torch.equal(resumed_weights[k], straight_weights[k]) for k in straight_weights)
