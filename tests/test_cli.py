import os

from graphtrain import config as cfg
from graphtrain.cli import build_parser, config_from_args, main, model_from_args


def test_run_flags_map_onto_the_run_config():
    args = build_parser().parse_args(
        ["run", "--input", "a", "--input", "b", "--source-domain", "books", "--target-domain", "movies",
         "--workdir", "w", "--workers", "3", "--fanouts", "5,4", "--num-parts", "2", "--partition-method", "random",
         "--batches-per-draw", "1"]
    )
    run = config_from_args(cfg.RunConfig, args, inputs=args.input)
    # Local paths are resolved against the caller's working directory (workers have their own).
    assert run.inputs == (os.path.abspath("a"), os.path.abspath("b")) and run.workers == 3 and run.fanouts == (5, 4)
    assert run.num_parts == 2 and run.partition_method == "random"
    train = run.train_config("d", "p", "o")  # what `run` hands its train stage
    assert (train.workers, train.fanouts, train.source_domain, train.output) == (3, (5, 4), "books", os.path.abspath("o"))
    assert train.batches_per_draw == 1


def test_training_flags_reach_the_train_config_and_the_model():
    args = build_parser().parse_args(
        ["train", "--dataset", "d", "--partitions", "p", "--output", "o", "--source-domain", "books",
         "--target-domain", "movies", "--fanouts", "5,5,5", "--learning-rate", "0.02", "--weight-decay", "0.01",
         "--lr-schedule", "constant", "--patience", "0", "--negatives", "popularity", "--embedding-dim", "32",
         "--layer", "gnn", "--no-transfer", "--embeddings", "distributed", "--transfer-loss-weight", "0.5", "--alignment-loss-weight", "0.2",
         "--edge-weights", "log1p", "--batches-per-draw", "2"]
    )
    train = config_from_args(cfg.TrainConfig, args, model=model_from_args(args))
    assert (train.learning_rate, train.weight_decay, train.lr_schedule) == (0.02, 0.01, "constant")
    assert train.patience == 0 and train.negatives == "popularity" and train.embeddings == "distributed"
    assert train.transfer_loss_weight == 0.5 and train.alignment_loss_weight == 0.2 and train.batches_per_draw == 2
    assert train.model == cfg.ModelConfig(embedding_dim=32, num_layers=3, lightgcn=False, transfer=False, edge_weights="log1p")
    defaults = build_parser().parse_args(
        ["train", "--dataset", "d", "--partitions", "p", "--output", "o", "--source-domain", "b", "--target-domain", "m"]
    )
    assert model_from_args(defaults) == cfg.ModelConfig()


def test_bad_value_exits_2_naming_field_value_and_fix(capsys):
    code = main(["partition", "--dataset", "d", "--output", "o", "--num-parts", "0"])
    assert code == 2
    err = capsys.readouterr().err
    assert "num_parts=0" in err and "must be > 0" in err


def test_missing_artifact_says_which_stage_makes_it(tmp_path, capsys):
    code = main(["export", "--dataset", str(tmp_path / "none"), "--checkpoint", str(tmp_path), "--output", str(tmp_path / "m")])
    assert code == 2
    assert "graphtrain ingest" in capsys.readouterr().err


def test_run_rejects_a_bad_training_flag_before_any_stage_runs(tmp_path, capsys):
    workdir = tmp_path / "work"
    code = main(["run", "--input", str(tmp_path / "logs"), "--source-domain", "books", "--target-domain", "movies",
                 "--workdir", str(workdir), "--learning-rate", "-1"])
    assert code == 2
    assert "learning_rate=-1" in capsys.readouterr().err
    assert not workdir.exists()  # nothing was ingested


def test_run_config_checks_every_stage_field_when_built():
    """RunConfig hands each stage's fields to that stage's own config, so a bad value is
    refused by name before the first stage runs (and each check lives in one place)."""
    import pytest

    from graphtrain.errors import ConfigError

    good = dict(inputs=["logs"], source_domain="books", target_domain="movies", workdir="w")
    cases = [
        ("inputs", {"inputs": "logs"}),  # a string, not a list of URIs: ingest's check
        ("cold_start_fraction", {"cold_start_fraction": 1.5}),
        ("target_domain", {"target_domain": "books"}),
        ("num_parts", {"num_parts": 0}),  # partition's check
        ("partition_method", {"partition_method": "spectral"}),
        ("workers", {"workers": 0}),  # train's check
        ("batches_per_draw", {"batches_per_draw": 0}),
        ("batches_per_draw", {"batches_per_draw": 17}),  # more than the sampler's marks hold
    ]
    for field_name, bad in cases:
        with pytest.raises(ConfigError, match=field_name):
            cfg.RunConfig(**{**good, **bad})
    run = cfg.RunConfig(**good, num_parts=2, partition_method="random", cold_start_fraction=0.3, seed=4)
    assert run.ingest_config("d") == cfg.IngestConfig(
        inputs=("logs",), output="d", source_domain="books", target_domain="movies", cold_start_fraction=0.3, seed=4
    )
    assert run.partition_config("d", "p") == cfg.PartitionConfig(dataset="d", output="p", num_parts=2, method="random")


def test_serve_flags_map_onto_the_serve_config():
    args = build_parser().parse_args(
        ["serve", "--model", "m", "--max-k", "50", "--max-replicas", "4", "--min-replicas", "2",
         "--target-ongoing-requests", "3", "--max-ongoing-requests", "16", "--cpus-per-replica", "0.5",
         "--request-timeout-s", "5", "--interaction-log", "s3://b/log", "--approximate-above", "1000", "--ann", "ivf"]
    )
    serve = config_from_args(cfg.ServeConfig, args)
    assert serve.model == os.path.abspath("m") and serve.host == "127.0.0.1" and serve.max_k == 50
    assert (serve.min_replicas, serve.max_replicas, serve.target_ongoing_requests) == (2, 4, 3.0)
    assert (serve.max_ongoing_requests, serve.cpus_per_replica, serve.request_timeout_s) == (16, 0.5, 5.0)
    assert (serve.interaction_log, serve.approximate_above, serve.ann) == ("s3://b/log", 1000, "ivf")


def test_bad_serve_value_names_the_field(capsys):
    assert main(["serve", "--model", "m", "--max-replicas", "0", "--min-replicas", "1"]) == 2
    assert "max_replicas=0" in capsys.readouterr().err


def test_run_reads_a_config_file_and_typed_flags_override_it(tmp_path, monkeypatch):
    import pytest
    import yaml

    from graphtrain.cli import _given, run_config_from
    from graphtrain.errors import ConfigError
    from graphtrain.pipeline import write_config

    monkeypatch.chdir(tmp_path)
    (tmp_path / "run.yaml").write_text(yaml.safe_dump({
        "inputs": ["logs"], "source_domain": "books", "target_domain": "movies", "workdir": "w",
        "epochs": 7, "workers": 1, "fanouts": [4, 4, 4], "model": {"embedding_dim": 16, "lightgcn": False},
    }))

    def config(*argv):
        argv = ["run", "--config", "run.yaml", *argv]
        parser = build_parser()
        return run_config_from(parser.parse_args(argv), _given(parser, "run", argv))

    from_file = config()
    assert from_file.epochs == 7 and from_file.workers == 1 and from_file.fanouts == (4, 4, 4)
    assert from_file.model.embedding_dim == 16 and not from_file.model.lightgcn and from_file.model.num_layers == 3
    assert from_file.inputs == (str(tmp_path / "logs"),) and from_file.batch_size == 1024  # the rest: defaults
    overridden = config("--epochs", "5", "--embedding-dim=8", "--input", "other")
    assert overridden.epochs == 5 and overridden.model.embedding_dim == 8 and overridden.inputs == (str(tmp_path / "other"),)
    assert overridden.workers == 1 and not overridden.model.lightgcn  # untyped flags leave the file's values

    # A workdir's config.yaml reproduces the run: every field, read back the same.
    write_config(overridden, str(tmp_path / "config.yaml"))
    parser = build_parser()
    again = run_config_from(parser.parse_args(["run", "--config", "config.yaml"]), set())
    assert again == overridden

    (tmp_path / "bad.yaml").write_text("epochs: 3\nepoches: 4\n")
    with pytest.raises(ConfigError, match="epoches.*not a RunConfig field"):
        run_config_from(build_parser().parse_args(["run", "--config", "bad.yaml"]), set())
    (tmp_path / "partial.yaml").write_text("epochs: 3\n")
    with pytest.raises(ConfigError, match="--input"):
        run_config_from(build_parser().parse_args(["run", "--config", "partial.yaml"]), set())
