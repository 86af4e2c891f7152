"""The model registry: numbered versions written once, an atomic current pointer,
promotion rules, on a local path and on a real S3-protocol server (moto, loopback)."""

import json
import os

import pytest

from graphtrain.errors import ArtifactError, ConfigError
from graphtrain.registry import Registry
from tests.small_model import write_small_model

REPORT = {"models": {"graphtrain": {"warm": {"ndcg@10": 0.2}, "cold": {"ndcg@10": 0.1}}}}


def _add(registry, tmp_path, name, accepted=True):
    model = write_small_model(str(tmp_path / name / "model"), version=name)
    gate = {"accepted": accepted, "reason": "test" if accepted else "worse than the current version"}
    return registry.add(model, None, REPORT, {"gate": gate, "metrics": {"warm": 0.2, "cold": 0.1}})


def test_versions_are_numbered_in_order_and_the_pointer_moves(tmp_path):
    registry = Registry(str(tmp_path / "registry"))
    assert registry.numbers() == [] and registry.current() is None
    with pytest.raises(ArtifactError, match="no current version"):
        registry.current_model()
    first, second = _add(registry, tmp_path, "a"), _add(registry, tmp_path, "b")
    assert (first.number, second.number) == (1, 2)
    assert registry.numbers() == [1, 2]
    registry.promote(1, "first")
    pointer = registry.promote(2, "better")
    assert pointer["version"] == 2 and pointer["previous"] == 1
    assert registry.current_model() == os.path.join(registry.uri, "models", "2", "model")
    rollback = registry.promote(1, "rollback")
    assert rollback["version"] == 1 and [h["version"] for h in rollback["history"]] == [2, 1]
    # The artifact is copied whole and committed; the pointer file is complete JSON.
    assert os.path.exists(os.path.join(registry.uri, "models", "1", "model", "_SUCCESS"))
    assert json.load(open(os.path.join(registry.uri, "current.json")))["version"] == 1
    assert not [f for f in os.listdir(registry.uri) if ".tmp" in f]


def test_a_rejected_version_is_kept_and_needs_force(tmp_path):
    registry = Registry(str(tmp_path / "registry"))
    _add(registry, tmp_path, "a")
    registry.promote(1, "first")
    rejected = _add(registry, tmp_path, "b", accepted=False)
    with pytest.raises(ConfigError, match="rejected .*--force"):
        registry.promote(rejected.number, "by hand")
    assert registry.current().number == 1
    rows = registry.listing()
    assert [(r["version"], r["current"], r["accepted"]) for r in rows] == [(1, True, True), (2, False, False)]
    assert registry.promote(2, "forced", force=True)["version"] == 2


def test_unknown_versions_and_uncommitted_folders(tmp_path):
    registry = Registry(str(tmp_path / "registry"))
    _add(registry, tmp_path, "a")
    os.makedirs(os.path.join(registry.uri, "models", "7"))  # a writer that died before _SUCCESS
    assert registry.numbers() == [1]
    with pytest.raises(ConfigError, match=r"version=7: the registry .* has versions \[1\]"):
        registry.promote(7, "x")


def test_models_cli_lists_and_rolls_back(tmp_path, capsys):
    from graphtrain.cli import main

    registry = Registry(str(tmp_path / "registry"))
    _add(registry, tmp_path, "a")
    _add(registry, tmp_path, "b")
    assert main(["models", "promote", "--registry", registry.uri, "--version", "2"]) == 0
    assert main(["models", "promote", "--registry", registry.uri, "--version", "1"]) == 0
    assert "is now 1 (was 2)" in capsys.readouterr().out
    assert main(["models", "list", "--registry", registry.uri]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].startswith("*") and lines[1].split()[1] == "1" and not lines[2].startswith("*")
    assert main(["models", "promote", "--registry", registry.uri, "--version", "9"]) == 2


def test_registry_on_s3(tmp_path, monkeypatch):
    import pyarrow.fs as pafs

    from tests.s3_server import moto_s3_server

    with moto_s3_server() as options:
        pafs.S3FileSystem(**options).create_dir("models-bucket")
        for key, value in {
            "AWS_ENDPOINT_URL": f"http://{options['endpoint_override']}", "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1",
        }.items():
            monkeypatch.setenv(key, value)
        registry = Registry("s3://models-bucket/registry")
        _add(registry, tmp_path, "a")
        _add(registry, tmp_path, "b")
        registry.promote(2, "s3")
        assert registry.numbers() == [1, 2]
        assert registry.current_model() == "s3://models-bucket/registry/models/2/model"
        from graphtrain.inference.artifact import ModelArtifact
        from graphtrain import storage

        local = storage.materialize(registry.current_model())
        assert ModelArtifact.load(local).manifest["version"] == "b"
