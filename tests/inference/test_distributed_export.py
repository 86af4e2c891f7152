"""Export by Ray tasks over the partitions equals the one-process full-graph export."""

import dataclasses

import numpy as np
import pytest
import torch

from graphtrain.config import ModelConfig, PartitionConfig
from graphtrain.graph.partition import partition
from graphtrain.inference.artifact import ModelArtifact
from graphtrain.inference.export import export
from graphtrain.models.gnn import MigrationGNN
from graphtrain.train import checkpoint

pytestmark = pytest.mark.usefixtures("ray_session")


def _checkpoint(dataset, path, config):
    """A checkpoint of a model moved off its initial weights (so W, biases and T matter)."""
    torch.manual_seed(0)
    model = MigrationGNN(config, dataset.num_nodes, "books", "movies")
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    history = [{"epoch": 0, "epoch_seconds": 1.0}]
    checkpoint.save(str(path), model, torch.optim.Adam(model.parameters()), 0, history, id_maps=(dataset.users, dataset.items))
    return str(path)


@pytest.mark.parametrize("method,config", [
    ("metis", ModelConfig(embedding_dim=8, transfer_hidden=6, lightgcn=False, edge_weights="log1p")),
    ("hash", ModelConfig(embedding_dim=8, transfer_hidden=6, num_layers=3)),
])
def test_layerwise_export_over_partitions_equals_full_graph_export(rated_dataset_uri, tmp_path, method, config):
    from graphtrain.data.dataset import Dataset

    dataset = Dataset.load(rated_dataset_uri)
    ckpt = _checkpoint(dataset, tmp_path / "ckpt", config)
    parts = str(tmp_path / "parts")
    partition(PartitionConfig(dataset=rated_dataset_uri, output=parts, num_parts=2, method=method))
    export(rated_dataset_uri, ckpt, str(tmp_path / "one"))
    export(rated_dataset_uri, ckpt, str(tmp_path / "many"), partitions=parts)
    one, many = ModelArtifact.load(str(tmp_path / "one")), ModelArtifact.load(str(tmp_path / "many"))
    assert many.manifest["inference"]["num_parts"] == 2
    assert set(many.arrays) == set(one.arrays) and len(one.arrays) > 10
    for name in sorted(one.arrays):
        expected, got = np.asarray(one.arrays[name]), np.asarray(many.arrays[name])
        assert got.shape == expected.shape and got.dtype == expected.dtype, name
        if np.issubdtype(expected.dtype, np.floating):
            np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5, err_msg=name)
        else:
            np.testing.assert_array_equal(got, expected, err_msg=name)
    for kind, key in (("users", ["user_idx"]), ("items", ["domain", "item_idx"])):
        a = getattr(one, kind).sort_values(key).reset_index(drop=True)
        b = getattr(many, kind).sort_values(key).reset_index(drop=True)
        assert a.astype(str).equals(b[a.columns].astype(str)), kind
    assert many.manifest["model"] == dataclasses.asdict(config) or many.manifest["model"] == config.to_dict()
