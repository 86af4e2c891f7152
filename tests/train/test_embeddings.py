"""Where embedding tables live: the automatic choice and its errors (unit), and
replicated vs KVStore tables trained through Ray Train on graph servers (integration)."""

import json

import pytest
import torch

from graphtrain.config import ModelConfig, PartitionConfig, TrainConfig
from graphtrain.errors import ConfigError
from graphtrain.eval.evaluate import evaluate_scorers
from graphtrain.graph.partition import partition
from graphtrain.models.inference import embed
from graphtrain.models.popularity import item_popularity
from graphtrain.ranking.scorers import embedding_scorer, popularity_scorer
from graphtrain.train.checkpoint import load_model
from graphtrain.train.embeddings import DISTRIBUTED, REPLICATED, placement, replicated_bytes
from graphtrain.train.trainer import train
from tests.train.configs import tiny_train_config

NODES = {"user": 2**20, "item@books": 2**19, "item@movies": 2**19}  # 2**21 rows


def test_replicated_bytes_count_weights_gradient_and_adam_moments():
    assert replicated_bytes({"user": 10, "item@a": 5}, dim=8) == 15 * 8 * 4 * 4


def test_auto_goes_distributed_only_when_tables_are_too_big_and_servers_can_hold_them():
    def auto(limit_mb):
        return tiny_train_config(embeddings="auto", replicated_embeddings_mb=limit_mb, model=ModelConfig(embedding_dim=64))

    # 2**21 rows x 64 dims x 16 bytes = 2048 MiB (weights, gradient, two Adam moments).
    assert placement(auto(2047), NODES, True) == DISTRIBUTED
    assert placement(auto(2048), NODES, True) == REPLICATED
    # The in-process loop has no KVStore: auto stays replicated however big the tables.
    assert placement(auto(1), NODES, False) == REPLICATED
    assert TrainConfig.embeddings == "auto"


def test_forced_modes_are_kept():
    assert placement(tiny_train_config(embeddings="replicated", replicated_embeddings_mb=1), NODES, True) == REPLICATED
    assert placement(tiny_train_config(embeddings="distributed"), {"user": 3}, True) == DISTRIBUTED


def test_distributed_without_graph_servers_names_the_field_and_the_fix():
    with pytest.raises(ConfigError) as err:
        placement(tiny_train_config(embeddings="distributed"), NODES, False)
    assert "embeddings='distributed'" in str(err.value) and "graphtrain train" in str(err.value)


def test_unknown_mode_is_rejected():
    with pytest.raises(ConfigError) as err:
        tiny_train_config(embeddings="sharded")
    assert "embeddings='sharded'" in str(err.value) and "replicated" in str(err.value)



def _config(mode, dataset_uri, parts, out, epochs=6):
    return tiny_train_config(
        dataset=dataset_uri, partitions=parts, output=str(out), workers=2, epochs=epochs, weight_decay=0.01, patience=0,
        embeddings=mode,
    )


def _train_and_score(mode, dataset_uri, dataset, parts, out):
    result = train(_config(mode, dataset_uri, parts, out))
    model = load_model(result["checkpoint"])  # a plain nn.Embedding model in both modes
    vectors = embed(model, dataset)
    return result, vectors


@pytest.mark.integration
def test_replicated_and_kvstore_tables_reach_matching_metrics(ray_session, tiny_dataset_uri, tiny_dataset, tmp_path):
    parts = str(tmp_path / "partitions")
    partition(PartitionConfig(dataset=tiny_dataset_uri, output=parts, num_parts=1))
    scorers, results = {"popularity": popularity_scorer(item_popularity(tiny_dataset, "movies"))}, {}
    for mode in ("replicated", "distributed"):
        results[mode], vectors = _train_and_score(mode, tiny_dataset_uri, tiny_dataset, parts, tmp_path / mode)
        scorers[mode] = embedding_scorer(vectors["users"]["movies"].numpy(), vectors["items"]["movies"].numpy())
        assert results[mode]["metrics"]["embeddings"] == mode
    report = evaluate_scorers(tiny_dataset, "movies", scorers, ks=(10,))
    ndcg = {name: report[name]["cold"]["ndcg@10"] for name in scorers}
    warm = {name: report[name]["warm"]["ndcg@10"] for name in scorers}
    speed = {mode: results[mode]["metrics"]["seeds_per_s"] for mode in results}
    print(f"cold NDCG@10 {ndcg}\nwarm NDCG@10 {warm}\nseeds/s of rank 0, last epoch {speed}")  # shown with -s
    # Both learn (well above popularity on the generated clusters) and land close together.
    for mode in ("replicated", "distributed"):
        assert ndcg[mode] > 1.5 * ndcg["popularity"], ndcg
        assert warm[mode] > 1.5 * warm["popularity"], warm
    assert abs(ndcg["distributed"] - ndcg["replicated"]) <= 0.15 * ndcg["replicated"], ndcg
    assert abs(warm["distributed"] - warm["replicated"]) <= 0.15 * warm["replicated"], warm
    # The KVStore run's checkpoint holds whole tables under the replicated names.
    state = torch.load(f"{results['distributed']['checkpoint']}/model.pt", weights_only=True)
    assert state["embeddings.user.weight"].shape == (tiny_dataset.num_nodes["user"], 16)


@pytest.mark.integration
def test_kvstore_tables_resume_from_the_checkpoint(ray_session, tiny_dataset_uri, tmp_path):
    parts = str(tmp_path / "partitions")
    partition(PartitionConfig(dataset=tiny_dataset_uri, output=parts, num_parts=1))
    first = train(_config("distributed", tiny_dataset_uri, parts, tmp_path / "out", epochs=3))
    resumed = train(_config("distributed", tiny_dataset_uri, parts, tmp_path / "out", epochs=4))
    assert resumed["last_checkpoint"].endswith("epoch_0003")
    with open(f"{resumed['last_checkpoint']}/state.json") as f:
        history = json.load(f)["history"]
    assert [m["epoch"] for m in history] == [0, 1, 2, 3]
    # The tables written back into the KVStore are the trained ones: epoch 3 starts where
    # epoch 2 ended (a fresh table would score near epoch 0's first validation).
    assert first["metrics"]["valid_ndcg@10"] == history[2]["valid_ndcg@10"]
    # Each worker's share of SparseAdam's moments sits in the merged checkpoint; the
    # shares split the table rows between the two workers and hold trained moments.
    shares = [torch.load(f"{resumed['last_checkpoint']}/sparse_optimizer.pt_{rank}") for rank in (0, 1)]
    user_table = next(name for name in shares[0]["emb_states"] if name.endswith("-user"))
    ids = [share["emb_states"][user_table]["ids"] for share in shares]
    assert len(ids[0]) + len(ids[1]) == len(torch.unique(torch.cat(ids)))
    moments = [share["emb_states"][user_table]["states"] for share in shares]
    assert all(any(float(t.abs().sum()) > 0 for t in m.values()) for m in moments)
    valid = [m["valid_ndcg@10"] for m in history]
    print(f"valid NDCG@10 by epoch (resumed at 3): {valid}")  # shown with -s
    assert valid[2] > valid[0] and valid[3] > 0.9 * valid[2]
