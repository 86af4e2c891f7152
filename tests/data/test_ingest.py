"""Ingest through Ray Data on the shared local Ray instance."""

import gzip
import json
import os

import numpy as np
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
    quarantine = pd.read_parquet(os.path.join(out, "quarantine"))
    assert len(quarantine) == 5 and quarantine["path"].str.contains("movies.csv|more.jsonl.gz").all()
    # Kept as read: the bad value itself, not what parsing made of it.
    assert quarantine.set_index("_reason").loc["bad_timestamp", "timestamp"] == "yesterday"
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


def _files(root):
    found = {}
    for directory, _, names in os.walk(root):
        for name in names:
            path = os.path.join(directory, name)
            with open(path, "rb") as f:
                found[os.path.relpath(path, root)] = f.read()
    return found


def test_rerun_with_same_inputs_is_byte_identical(tiny_logs_dir, tmp_path):
    runs = []
    for name in ("first", "again"):
        ingest(IngestConfig(inputs=[tiny_logs_dir], output=str(tmp_path / name), source_domain="books", target_domain="movies", buckets=3))
        runs.append(_files(tmp_path / name))
    assert runs[0].keys() == runs[1].keys() and len(runs[0]) > 6
    assert all(runs[0][name] == runs[1][name] for name in runs[0])


def test_the_bucket_count_changes_no_index_split_or_figure(tiny_logs_dir, tiny_dataset, tmp_path):
    meta = ingest(IngestConfig(inputs=[tiny_logs_dir], output=str(tmp_path / "d"), source_domain="books", target_domain="movies", buckets=5))
    other = Dataset.load(str(tmp_path / "d"))
    pd.testing.assert_frame_equal(other.users, tiny_dataset.users)
    pd.testing.assert_frame_equal(other.items, tiny_dataset.items)
    key = ["domain", "user_idx", "item_idx"]
    pd.testing.assert_frame_equal(
        other.edges.sort_values(key).reset_index(drop=True), tiny_dataset.edges.sort_values(key).reset_index(drop=True)
    )
    ignored = ("inputs", "buckets", "seconds")
    assert {k: v for k, v in meta.items() if k not in ignored} == {k: v for k, v in tiny_dataset.meta.items() if k not in ignored}
    # Without earlier id maps, indices are the ids' sorted order.
    assert tiny_dataset.users["user_id"].tolist() == sorted(tiny_dataset.users["user_id"])


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


def _write(path, rows):
    pd.DataFrame(rows).to_parquet(path, index=False)


def _pairs(pairs, domain="a"):
    return [{"user_id": u, "item_id": i, "domain": domain, "timestamp": t} for t, (u, i) in enumerate(pairs)]


def _ids(dataset):
    uid = dataset.users.set_index("user_idx")["user_id"]
    iid = dataset.items.set_index(["domain", "item_idx"])["item_id"]
    edges = dataset.edges
    return {(uid[u], d, iid[(d, i)]) for u, d, i in zip(edges["user_idx"], edges["domain"], edges["item_idx"])}


def test_k_core_is_iterated_to_a_fixed_point_across_buckets(tmp_path):
    # u3 has one interaction; removing it leaves item c with one -> removed too.
    _write(tmp_path / "in.parquet", _pairs([("u1", "a"), ("u1", "b"), ("u2", "a"), ("u2", "b"), ("u3", "c"), ("u1", "c")]))
    meta = ingest(IngestConfig(inputs=[str(tmp_path / "in.parquet")], output=str(tmp_path / "d"), min_interactions=2, buckets=3))
    kept = Dataset.load(str(tmp_path / "d"))
    assert _ids(kept) == {("u1", "a", "a"), ("u1", "a", "b"), ("u2", "a", "a"), ("u2", "a", "b")}
    assert kept.users["user_id"].tolist() == ["u1", "u2"]  # ids removed by the k-core get no index
    assert meta["k_core_removed"] == 2


def test_id_maps_keep_known_indices_and_append_new_ones_in_sorted_order(tmp_path):
    _write(tmp_path / "first.parquet", _pairs([("u2", "x"), ("u1", "y")]))
    ingest(IngestConfig(inputs=[str(tmp_path / "first.parquet")], output=str(tmp_path / "first"), buckets=2))
    later = tmp_path / "later"
    later.mkdir()
    _write(later / "a.parquet", _pairs([("u0", "y"), ("u2", "z")]))
    _write(later / "b.parquet", _pairs([("u1", "q")], domain="b"))
    ingest(IngestConfig(inputs=[str(later)], output=str(tmp_path / "next"), id_maps=str(tmp_path / "first"), buckets=3))
    after = Dataset.load(str(tmp_path / "next"))
    assert dict(zip(after.users["user_id"], after.users["user_idx"])) == {"u1": 0, "u2": 1, "u0": 2}
    a = after.items[after.items["domain"] == "a"]
    assert dict(zip(a["item_id"], a["item_idx"])) == {"x": 0, "y": 1, "z": 2}  # x is kept though unused
    assert after.items[after.items["domain"] == "b"]["item_idx"].tolist() == [0]
    assert _ids(after) == {("u0", "a", "y"), ("u2", "a", "z"), ("u1", "b", "q")}


def test_temporal_split_cuts_where_a_global_quantile_would(tmp_path):
    rng = np.random.default_rng(0)
    rows = pd.DataFrame({"user_id": rng.integers(0, 50, 997).astype(str), "item_id": np.arange(997).astype(str), "domain": "a",
                         "timestamp": rng.integers(10**9, 10**9 + 10**6, 997)})
    rows.to_parquet(tmp_path / "in.parquet", index=False)
    ingest(IngestConfig(inputs=[str(tmp_path / "in.parquet")], output=str(tmp_path / "d"), split="temporal", buckets=4))
    edges = Dataset.load(str(tmp_path / "d")).edges
    ts = edges["timestamp"].to_numpy()
    train_cut, valid_cut = np.quantile(ts, [0.8, 0.9])
    expected = np.select([ts <= train_cut, ts <= valid_cut], ["train", "valid"], "test")
    assert (edges["split"].to_numpy() == expected).all()


def test_drifting_types_quarantine_only_the_bad_values(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    # A JSON field that is a number in one row and text in the next.
    with open(raw / "drift.jsonl", "w") as f:
        for row in (
            {"user_id": 1, "item_id": "a", "domain": "books", "timestamp": 10, "weight": 1.5},
            {"user_id": "u2", "item_id": 7, "domain": "books", "timestamp": "2024-01-02", "weight": "2"},
            {"user_id": "u3", "item_id": "b", "domain": "books", "timestamp": "soon", "weight": 1},
            {"user_id": "u4", "item_id": "b", "domain": "books", "timestamp": 12, "weight": "heavy"},
        ):
            f.write(json.dumps(row) + "\n")
        f.write("{not json\n")
    # A CSV column that is numeric in one file and text in another.
    (raw / "one.csv").write_text("user_id,item_id,domain,timestamp\nu5,a,books,100\nu6,b,books,101\n")
    (raw / "two.csv").write_text("user_id,item_id,domain,timestamp\nu7,a,books,2024-03-04T05:06:07\nu8,b,books,later\n")
    meta = ingest(IngestConfig(inputs=[str(raw)], output=str(tmp_path / "d"), buckets=2))
    assert meta["quarantined"] == {"bad_timestamp": 2, "bad_weight": 1, "malformed_row": 1}
    assert meta["rows_kept"] == 5
    kept = Dataset.load(str(tmp_path / "d"))
    assert {u for u, _, _ in _ids(kept)} == {"1", "u2", "u5", "u6", "u7"}
    quarantine = pd.read_parquet(tmp_path / "d" / "quarantine")
    assert set(quarantine["timestamp"].dropna()) == {"soon", "later", "12"}
    assert quarantine.loc[quarantine["_reason"] == "malformed_row", "raw"].tolist() == ["{not json"]


def test_empty_truncated_and_malformed_files_do_not_end_the_run(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    _write(raw / "good.parquet", _pairs([("u1", "a"), ("u2", "b"), ("u1", "b")]))
    (raw / "header_only.csv").write_text("user_id,item_id,domain\n")
    (raw / "zero_bytes.csv").write_text("")
    (raw / "ragged.csv").write_text("user_id,item_id,domain\nu3,a,a\nu4,b\nu5,c,a,extra\n")
    whole = gzip.compress(("user_id,item_id,domain\n" + "".join(f"u{i},x,a\n" for i in range(5000))).encode())
    (raw / "truncated.csv.gz").write_bytes(whole[: len(whole) // 2])
    meta = ingest(IngestConfig(inputs=[str(raw)], output=str(tmp_path / "d"), buckets=2))
    assert meta["rows_kept"] == 4 and meta["quarantined"] == {"malformed_row": 2}
    assert [f["path"].rsplit("/", 1)[1] for f in meta["unreadable_files"]] == ["truncated.csv.gz"]
    assert not any("x" == i for _, _, i in _ids(Dataset.load(str(tmp_path / "d"))))  # nothing kept from it
    with pytest.raises(DataContractError, match="truncated.csv.gz"):
        ingest(IngestConfig(inputs=[str(raw)], output=str(tmp_path / "strict"), strict=True))
    assert not (tmp_path / "strict").exists()
