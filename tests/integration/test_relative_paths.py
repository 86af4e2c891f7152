"""The README's stage-by-stage commands, typed with relative paths as a person would.

Ray Train workers, graph-server actors and Serve replicas have working directories of
their own; every config resolves local paths against the caller's before they leave.
"""

import os
import subprocess
import sys

import pytest

from graphtrain.config import ServeConfig, TrainConfig
from graphtrain.data.synthetic import SyntheticSpec, generate, write_logs
from graphtrain.net import free_port
from graphtrain.pipeline import http_get_json


def _graphtrain(cwd, *args):
    env = {**os.environ, "RAY_ADDRESS": ""}  # each command starts (and stops) its own local Ray
    done = subprocess.run([sys.executable, "-m", "graphtrain.cli", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, f"graphtrain {args[0]} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout + done.stderr


def test_configs_resolve_local_paths_and_leave_uris(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = TrainConfig(dataset="ds", partitions="./parts", output="s3://bucket/out", source_domain="a", target_domain="b")
    assert config.dataset == str(tmp_path / "ds") and config.partitions == str(tmp_path / "parts")
    assert config.output == "s3://bucket/out"


def test_readme_stage_commands_with_relative_paths(ray_session, tmp_path):
    write_logs(generate(SyntheticSpec(num_users=300, items_per_domain=80, seed=5)), str(tmp_path / "logs"))
    domains = ["--source-domain", "books", "--target-domain", "movies"]
    _graphtrain(tmp_path, "ingest", "--input", "logs", "--output", "ds", *domains)
    _graphtrain(tmp_path, "partition", "--dataset", "ds", "--output", "parts", "--num-parts", "1")
    said = _graphtrain(tmp_path, "train", "--dataset", "ds", "--partitions", "parts", "--output", "ckpt", *domains,
                       "--workers", "1", "--epochs", "2")
    # Quiet by default: rank 0's epochs reach the driver through Ray, the workers' and
    # Ray's own chatter does not (it did: over a hundred lines).
    lines = said.strip().splitlines()
    assert any(line.strip().startswith("epoch 1/2  loss") for line in lines), said
    assert any(line.strip().startswith("epoch 2/2  loss") and line.endswith("done") for line in lines), said
    assert len(lines) < 40 and not any("RayTrainWorker" in line or "Reporting training result" in line for line in lines), said
    _graphtrain(tmp_path, "export", "--dataset", "ds", "--checkpoint", "ckpt", "--output", "model", "--partitions", "parts")
    table = _graphtrain(tmp_path, "evaluate", "--dataset", "ds", "--model", "model", "--output", "reports")
    assert "graphtrain" in table and (tmp_path / "reports" / "report.json").exists()

    from graphtrain.serve import app

    here = os.getcwd()
    os.chdir(tmp_path)
    try:
        base = app.start(ServeConfig(model="model", port=free_port()))
    finally:
        os.chdir(here)
    try:
        assert http_get_json(f"{base}/health")["status"] == "ok"
        answer = http_get_json(f"{base}/recommend?user_id=nobody&k=3&domain=movies")
        assert len(answer["items"]) == 3
    finally:
        app.stop()


@pytest.mark.parametrize("field", ["dataset", "partitions", "output"])
def test_train_config_paths_are_absolute(tmp_path, monkeypatch, field):
    monkeypatch.chdir(tmp_path)
    config = TrainConfig(dataset="d", partitions="p", output="o", source_domain="a", target_domain="b")
    assert os.path.isabs(getattr(config, field))
