"""`graphtrain run` on generated data through the demo's code path, then Ray Serve over HTTP."""

import json
import os
import urllib.error
import urllib.parse

import pandas as pd
import pytest

from graphtrain.config import ModelConfig, RunConfig, ServeConfig
from graphtrain.data.synthetic import SyntheticSpec, generate, source_only_users, write_logs
from graphtrain.data.dataset import Dataset
from graphtrain.net import free_port
from graphtrain.pipeline import http_get_json, run, warm_test_user

pytestmark = pytest.mark.integration


def test_run_then_serve_over_http(ray_session, tmp_path):
    # Rated interactions, and alpha weighted by them: the DistGraph workers map every
    # sampled edge back to its dataset weight.
    spec = SyntheticSpec(num_users=800, items_per_domain=200, ratings=True, seed=11)
    logs = generate(spec)
    raw = tmp_path / "raw"
    write_logs(logs, str(raw))
    workdir = tmp_path / "work"
    config = RunConfig(
        inputs=[str(raw)], source_domain="books", target_domain="movies", workdir=str(workdir),
        workers=2, epochs=3, num_parts=1, model=ModelConfig(embedding_dim=32, edge_weights="weight"),
    )
    report = run(config, log=lambda *_: None)
    for name in ("dataset", "partitions", "checkpoints", "model", "reports"):
        assert (workdir / name).is_dir(), name
    on_disk = json.loads((workdir / "reports" / "report.json").read_text())
    assert set(on_disk["models"]) == {"graphtrain", "popularity"}
    assert on_disk["train"]["epochs"] == 3 and on_disk["train"]["workers"] == 2
    models = report["models"]
    for protocol in ("warm", "cold", "warm_sampled", "cold_sampled"):
        assert set(models["graphtrain"][protocol]) >= {"recall@20", "ndcg@10", "hr@10", "mrr"}, protocol
    assert models["graphtrain"]["cold"]["ndcg@10"] > models["popularity"]["cold"]["ndcg@10"], models
    assert models["graphtrain"]["cold_sampled"]["ndcg@10"] > models["popularity"]["cold_sampled"]["ndcg@10"], models
    # Export takes the epoch with the best valid NDCG@10.
    manifest = json.loads((workdir / "model" / "manifest.json").read_text())
    history = manifest["train"]["history"]
    assert manifest["epoch"] == max(range(3), key=lambda e: (history[e]["valid_ndcg@10"], -e))
    assert (workdir / "reports" / "metrics.png").stat().st_size > 0
    epochs = sorted(p for p in os.listdir(workdir / "checkpoints" / "train") if p.startswith("epoch_"))
    assert epochs == ["epoch_0000", "epoch_0001", "epoch_0002"]
    assert manifest["model"]["edge_weights"] == "weight"
    dataset = Dataset.load(str(workdir / "dataset"))
    for epoch in epochs:  # every checkpoint carries the id maps its rows belong to
        saved = pd.read_parquet(workdir / "checkpoints" / "train" / epoch / "users.parquet")
        pd.testing.assert_frame_equal(saved, dataset.users)

    from graphtrain.serve import app

    base = app.start(ServeConfig(model=str(workdir / "model"), port=free_port()))
    try:
        assert http_get_json(f"{base}/health")["status"] == "ok"
        cold_user = source_only_users(logs, "books", "movies")[0]
        warm_user = warm_test_user(dataset, "movies")
        answers = {}
        for user in (warm_user, cold_user, "nobody"):
            query = urllib.parse.urlencode({"user_id": user, "k": 7, "domain": "movies"})
            answers[user] = http_get_json(f"{base}/recommend?{query}")
        assert answers[warm_user]["reason"] == "warm", answers[warm_user]
        assert answers[cold_user]["reason"] == "transfer"
        assert answers["nobody"]["reason"] == "popular"
        assert all(len(a["items"]) == 7 for a in answers.values())
        user_idx = dataset.users.set_index("user_id").loc[warm_user, "user_idx"]
        users, items = dataset.split_edges("train", "movies")
        item_ids = dataset.items[dataset.items["domain"] == "movies"].set_index("item_idx")["item_id"]
        trained_on = set(item_ids[items[users == user_idx]])
        assert trained_on and not trained_on & {i["item_id"] for i in answers[warm_user]["items"]}
        with pytest.raises(urllib.error.HTTPError) as err:
            http_get_json(f"{base}/recommend?user_id=x&domain=games")
        assert err.value.code == 404
    finally:
        app.stop()



def test_a_rerun_skips_what_is_done_and_redoes_what_changed(ray_session, tmp_path):
    import dataclasses

    spec = SyntheticSpec(num_users=300, items_per_domain=80, seed=4)
    raw = tmp_path / "raw"
    write_logs(generate(spec), str(raw))
    workdir = tmp_path / "work"
    config = RunConfig(inputs=[str(raw)], source_domain="books", target_domain="movies", workdir=str(workdir),
                       workers=1, epochs=2, model=ModelConfig(embedding_dim=8))
    first = run(config, log=lambda *_: None)
    lines: list[str] = []
    again = run(config, log=lines.append)
    stages = ("ingest", "partition", "train", "export", "evaluate")
    assert [s for s in stages if any(line.startswith(f"== {s}: up to date") for line in lines)] == list(stages)
    assert again["stage_seconds"] == dict.fromkeys(stages, 0.0)
    assert {k: v for k, v in again.items() if k != "stage_seconds"} == {k: v for k, v in first.items() if k != "stage_seconds"}

    lines.clear()
    longer = run(dataclasses.replace(config, epochs=3), log=lines.append)  # a training setting changed
    skipped = [s for s in stages if any(line.startswith(f"== {s}: up to date") for line in lines)]
    assert skipped == ["ingest", "partition"]
    assert longer["train"]["epochs"] == 3
    aside = [p for p in os.listdir(tmp_path / "work") if p.startswith("checkpoints-")]
    assert len(aside) == 1 and os.path.exists(tmp_path / "work" / aside[0] / "latest.json")  # the old run is kept
