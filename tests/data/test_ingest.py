"""Ingest through Ray Data on the shared local Ray instance."""

import gzip
import json
import os

import pandas as pd
import pytest

from graphtrain.config import IngestConfig
from graphtrain.data.dataset import Dataset
from graphtrain.data.ingest import ingest
from graphtrain.errors import DataContractError

pytestmark = pytest.mark.usefixtures("ray_session")


def test_dataset_contract(tiny_dataset, tiny_logs):
    edges = tiny_dataset.edges
    assert list(edges.columns) == ["user_idx", "item_idx", "domain", "timestamp", "weight", "split"]
    assert tiny_dataset.domains == ["books", "movies"]
    assert tiny_dataset.num_users == tiny_logs["user_id"].nunique()
    for domain in tiny_dataset.domains:
        items = edges.loc[edges["domain"] == domain, "item_idx"]
        assert items.max() < tiny_dataset.num_items(domain)
    assert set(edges["split"]) == {"train", "valid", "test"}
    assert len(edges) == len(tiny_logs)
    meta = tiny_dataset.meta
    assert meta["quarantined"] == {} and meta["cold_start_users"] > 0


def test_cold_start_users_have_no_target_training_edges(tiny_dataset):
    edges = tiny_dataset.edges
    target_train_users = set(edges[(edges["domain"] == "movies") & (edges["split"] == "train")]["user_idx"])
    target_test_users = set(edges[(edges["domain"] == "movies") & (edges["split"] == "test")]["user_idx"])
    cold = target_test_users - target_train_users
    assert len(cold) == tiny_dataset.meta["cold_start_users"]
    source_train_users = set(edges[(edges["domain"] == "books") & (edges["split"] == "train")]["user_idx"])
    assert cold <= source_train_users


def _corrupted_inputs(directory):
    good = pd.DataFrame(
        {"user_id": ["u1", "u1", "u2", "u2", "u3"], "item_id": ["a", "b", "a", "c", "b"], "timestamp": [1, 2, 3, 4, 5]}
    )
    good.assign(domain="books").to_parquet(os.path.join(directory, "books.parquet"), index=False)
    with open(os.path.join(directory, "movies.csv"), "w") as f:
        f.write("user_id,item_id,domain,timestamp,weight\n")
        f.write("u1,m1,movies,10,1.0\n")
        f.write(",m2,movies,11,1.0\n")  # null user
        f.write("u2,m1,movies,yesterday,1.0\n")  # bad timestamp
        f.write("u3,m3,movies,12,-1\n")  # negative weight
        f.write("u3,m3,games,12,1\n")  # domain not in the run
        f.write("u2,m2,movies,13,1.0\n")
        f.write("u2,m2,movies,14,1.0\n")  # duplicate, later
    with gzip.open(os.path.join(directory, "more.jsonl.gz"), "wt") as f:
        f.write(json.dumps({"user_id": "u4", "item_id": "m1", "domain": "movies", "timestamp": 20}) + "\n")
        f.write(json.dumps({"user_id": "u4", "item_id": None, "domain": "movies", "timestamp": 21}) + "\n")


def test_bad_rows_are_quarantined_by_reason_never_dropped(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    _corrupted_inputs(str(raw))
    out = str(tmp_path / "dataset")
    meta = ingest(IngestConfig(inputs=[str(raw)], output=out, source_domain="books", target_domain="movies"))
    assert meta["quarantined"] == {"bad_timestamp": 1, "bad_weight": 1, "null_item_id": 1, "null_user_id": 1, "unknown_domain": 1}
    assert meta["duplicates_removed"] == 1
    assert meta["rows_read"] == 5 + 7 + 2
    assert meta["rows_kept"] + sum(meta["quarantined"].values()) + meta["duplicates_removed"] == meta["rows_read"]
    quarantine = pd.read_parquet(os.path.join(out, "quarantine.parquet"))
    assert len(quarantine) == 5 and quarantine["path"].str.contains("movies.csv|more.jsonl.gz").all()
    edges = Dataset.load(out).edges
    assert edges.loc[edges["domain"] == "movies", "timestamp"].max() == 20  # kept the later duplicate (14) and u4


def test_strict_fails_naming_file_reason_and_count(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    _corrupted_inputs(str(raw))
    with pytest.raises(DataContractError) as err:
        ingest(IngestConfig(inputs=[str(raw)], output=str(tmp_path / "d"), source_domain="books", target_domain="movies", strict=True))
    assert "movies.csv" in str(err.value) and "bad_timestamp x1" in str(err.value)
    assert not (tmp_path / "d").exists()


def test_missing_required_column_fails_before_work(tmp_path):
    path = tmp_path / "logs.parquet"
    pd.DataFrame({"user": ["u1"], "item_id": ["i"], "domain": ["a"]}).to_parquet(path)
    with pytest.raises(DataContractError, match="user_id"):
        ingest(IngestConfig(inputs=[str(path)], output=str(tmp_path / "d")))


def test_rerun_with_same_inputs_is_identical(tiny_logs_dir, tiny_dataset_uri, tmp_path):
    again = str(tmp_path / "again")
    ingest(IngestConfig(inputs=[tiny_logs_dir], output=again, source_domain="books", target_domain="movies", seed=0))
    for name in ("edges/part-00000.parquet", "users.parquet", "items.parquet"):
        pd.testing.assert_frame_equal(
            pd.read_parquet(os.path.join(tiny_dataset_uri, name)), pd.read_parquet(os.path.join(again, name))
        )
    first, second = Dataset.load(tiny_dataset_uri).meta, Dataset.load(again).meta
    first.pop("inputs"), second.pop("inputs")
    assert first == second


def test_split_column_is_honoured_exactly(tmp_path):
    rows = pd.DataFrame(
        {"user_id": ["u1", "u1", "u2", "u2"], "item_id": ["a", "b", "a", "b"], "domain": "books",
         "split": ["train", "test", "valid", "train"]}
    )
    rows.to_parquet(tmp_path / "logs.parquet")
    ingest(IngestConfig(inputs=[str(tmp_path / "logs.parquet")], output=str(tmp_path / "d")))
    edges = Dataset.load(str(tmp_path / "d")).edges
    assert sorted(edges["split"]) == ["test", "train", "train", "valid"]


def test_reingest_with_earlier_id_maps_keeps_every_index(tiny_logs, tiny_dataset_uri, tmp_path):
    extra = pd.DataFrame(
        {"user_id": ["brand-new-user", tiny_logs["user_id"].iloc[0]], "item_id": ["m-new", "b-new"],
         "domain": ["movies", "books"], "timestamp": [1, 2], "weight": 1.0}
    )
    raw = tmp_path / "raw"
    raw.mkdir()
    pd.concat([tiny_logs, extra]).to_parquet(raw / "all.parquet")
    out = str(tmp_path / "next")
    ingest(IngestConfig(inputs=[str(raw)], output=out, source_domain="books", target_domain="movies", id_maps=tiny_dataset_uri))
    before, after = Dataset.load(tiny_dataset_uri), Dataset.load(out)
    merged = before.users.merge(after.users, on="user_id", suffixes=("_before", "_after"))
    assert len(merged) == len(before.users)
    assert (merged["user_idx_before"] == merged["user_idx_after"]).all()
    assert after.users.set_index("user_id").loc["brand-new-user", "user_idx"] == len(before.users)
    items = before.items.merge(after.items, on=["domain", "item_id"], suffixes=("_before", "_after"))
    assert len(items) == len(before.items) and (items["item_idx_before"] == items["item_idx_after"]).all()
    assert after.num_items("movies") == before.num_items("movies") + 1


def test_ingest_from_and_to_s3_on_a_real_s3_protocol_server(tiny_logs_dir, tmp_path):
    import pyarrow.fs as pafs

    from tests.s3_server import moto_s3_server

    with moto_s3_server() as options:
        s3 = pafs.S3FileSystem(**options)
        s3.create_dir("logs-bucket")
        pafs.copy_files(tiny_logs_dir, "logs-bucket/raw", source_filesystem=pafs.LocalFileSystem(), destination_filesystem=s3)
        meta = ingest(
            IngestConfig(
                inputs=["s3://logs-bucket/raw/"], output="s3://logs-bucket/runs/dataset",
                source_domain="books", target_domain="movies", storage_options=options,
            )
        )
        local = ingest(IngestConfig(inputs=[tiny_logs_dir], output=str(tmp_path / "d"), source_domain="books", target_domain="movies"))
        assert meta["rows_kept"] == local["rows_kept"] and meta["edges"] == local["edges"]
        remote = Dataset.load("s3://logs-bucket/runs/dataset", options)
        pd.testing.assert_frame_equal(remote.edges, Dataset.load(str(tmp_path / "d")).edges)
        assert s3.get_file_info("logs-bucket/runs/dataset/_SUCCESS").type == pafs.FileType.File


def test_only_domains_keeps_indices_and_drops_the_other_domains(tiny_dataset):
    movies = tiny_dataset.only_domains(["movies"])
    assert movies.domains == ["movies"] and set(movies.edges["domain"]) == {"movies"}
    assert movies.num_users == tiny_dataset.num_users
    assert movies.num_nodes == {"user": tiny_dataset.num_users, "item@movies": tiny_dataset.num_items("movies")}
    assert (movies.split_edges("train", "movies")[1] == tiny_dataset.split_edges("train", "movies")[1]).all()
    with pytest.raises(ValueError, match="music"):
        tiny_dataset.only_domains(["music"])
