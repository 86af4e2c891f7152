import dataclasses

import numpy as np
import pytest
import torch

from graphtrain.config import ModelConfig
from graphtrain.graph.batch import LayerEdges
from graphtrain.graph.build import train_graph
from graphtrain.graph.sampling import EdgeBatchSampler, LocalGraphSource
from graphtrain.models.alpha import edge_alpha
from graphtrain.models.gnn import MigrationGNN, scatter_mean
from graphtrain.models.inference import embed, full_graph_layers
from graphtrain.names import USER, item_type


def test_scatter_mean_averages_and_leaves_isolated_rows_zero():
    values = torch.tensor([[1.0], [3.0], [5.0]])
    out = scatter_mean(values, torch.tensor([0, 0, 2]), 4)
    assert out.squeeze(1).tolist() == [2.0, 0.0, 5.0, 0.0]


def test_weighted_scatter_mean_uses_alpha_and_ignores_zero_weights():
    values = torch.tensor([[1.0], [3.0], [5.0], [7.0]])
    index = torch.tensor([0, 0, 2, 3])
    out = scatter_mean(values, index, 5, weights=torch.tensor([3.0, 1.0, 0.0, 2.0]))
    # row 0: (3*1 + 1*3) / 4; row 2 has only a zero-weight edge; row 3: one edge
    assert out.squeeze(1).tolist() == [1.5, 0.0, 0.0, 7.0, 0.0]
    equal = scatter_mean(values, index, 5, weights=torch.full((4,), 2.5))
    torch.testing.assert_close(equal, scatter_mean(values, index, 5))


def _with_random_weights(dataset, seed=0):
    edges = dataset.edges.copy()
    edges["weight"] = np.random.default_rng(seed).choice([0.5, 1.0, 3.0, 5.0], len(edges))
    return dataclasses.replace(dataset, edges=edges)


@pytest.mark.parametrize("lightgcn, edge_weights", [(False, "none"), (True, "none"), (True, "weight"), (False, "log1p")])
def test_sampled_forward_with_full_fanout_equals_full_graph_inference(tiny_dataset, lightgcn, edge_weights):
    """(Weighted) mean aggregation makes the sampled computation exact when nothing is dropped."""
    torch.manual_seed(0)
    dataset = _with_random_weights(tiny_dataset)
    config = ModelConfig(embedding_dim=16, num_layers=2, lightgcn=lightgcn, edge_weights=edge_weights)
    model = MigrationGNN(config, dataset.num_nodes, "books", "movies")
    model.eval()
    full = embed(model, dataset)
    source = LocalGraphSource(train_graph(dataset))
    num_items = {d: dataset.num_items(d) for d in dataset.domains}
    sampler = EdgeBatchSampler(
        source, dataset.domains, num_items, fanouts=[-1, -1], num_negatives=1,
        edge_weights=edge_alpha(dataset, edge_weights),
    )
    seeds = {USER: np.arange(0, 40), item_type("movies"): np.arange(0, 30)}
    input_nodes, layers = sampler.neighbourhood(seeds, exclude={})
    with torch.no_grad():
        final, source_message = model.propagate(input_nodes, layers)
        users = model.user_representation(final[USER], source_message, "movies")
    torch.testing.assert_close(users, full["users"]["movies"][:40], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(final[item_type("movies")], full["items"]["movies"][:30], rtol=1e-4, atol=1e-5)
    if edge_weights != "none":  # the weights change the function
        unweighted = embed(_same_parameters_unweighted(model), dataset)
        assert not torch.allclose(unweighted["items"]["movies"], full["items"]["movies"], atol=1e-3)


def _same_parameters_unweighted(model):
    plain = MigrationGNN(dataclasses.replace(model.config, edge_weights="none"), model.num_nodes, "books", "movies")
    plain.load_state_dict(model.state_dict())
    return plain.eval()


def test_lightgcn_has_no_layer_weights_and_transfer_is_target_only(tiny_dataset):
    model = MigrationGNN(ModelConfig(embedding_dim=8, lightgcn=True), tiny_dataset.num_nodes, "books", "movies")
    assert model.weights is None
    reps = embed(model, tiny_dataset)
    with torch.no_grad():
        transfer = model.transfer(_source_messages(model, tiny_dataset))
    # The last column is the constant 1 scored against the item bias.
    torch.testing.assert_close(reps["users"]["books"][:, :-1], reps["users"]["movies"][:, :-1] - transfer)
    assert bool((reps["users"]["movies"][:, -1] == 1).all())
    no_transfer = MigrationGNN(ModelConfig(embedding_dim=8, transfer=False), tiny_dataset.num_nodes, "books", "movies")
    reps = embed(no_transfer, tiny_dataset)
    torch.testing.assert_close(reps["users"]["books"], reps["users"]["movies"])


def _source_messages(model, dataset):
    layers = full_graph_layers(dataset, model.config.num_layers)
    ids = {nt: torch.arange(n) for nt, n in dataset.num_nodes.items()}
    with torch.no_grad():
        _, message = model.propagate(ids, layers)
        return message


def test_layer_edges_for_the_full_graph_cover_every_train_edge(tiny_dataset):
    layers = full_graph_layers(tiny_dataset, 3)
    assert len(layers) == 3 and isinstance(layers[0], LayerEdges)
    n_train = int((tiny_dataset.edges["split"] == "train").sum())
    assert sum(len(s) for s, _ in layers[0].edges.values()) == 2 * n_train


def test_item_bias_starts_at_log_popularity_and_is_scored_by_the_dot_product(tiny_dataset):
    model = MigrationGNN(ModelConfig(embedding_dim=8), tiny_dataset.num_nodes, "books", "movies")
    counts = torch.arange(tiny_dataset.num_items("movies"), dtype=torch.float32)
    model.init_item_bias({item_type("movies"): counts})
    reps = embed(model, tiny_dataset)
    items, users = reps["items"]["movies"], reps["users"]["movies"]
    assert items.shape[1] == users.shape[1] == 9
    torch.testing.assert_close(items[:, -1], torch.log1p(counts))
    # score = u·i + b_i with one matmul
    scores = users @ items.T
    torch.testing.assert_close(scores, users[:, :-1] @ items[:, :-1].T + torch.log1p(counts))
    plain = MigrationGNN(ModelConfig(embedding_dim=8, item_bias=False), tiny_dataset.num_nodes, "books", "movies")
    assert embed(plain, tiny_dataset)["items"]["movies"].shape[1] == 8


def test_unknown_edge_weights_mode_names_the_field():
    from graphtrain.errors import ConfigError

    with pytest.raises(ConfigError, match="edge_weights"):
        ModelConfig(edge_weights="rating")


def test_chunked_aggregation_without_grad_equals_the_one_shot(monkeypatch):
    from graphtrain.models import gnn

    torch.manual_seed(0)
    h = torch.randn(30, 4)
    src, dst = torch.randint(0, 30, (500,)), torch.randint(0, 12, (500,))
    weights = torch.rand(500)
    for w in (None, weights):
        whole = gnn.scatter_mean(h[src], dst, 12, w)
        monkeypatch.setattr(gnn, "EDGE_CHUNK", 64)
        with torch.no_grad():
            torch.testing.assert_close(gnn.aggregate(h, src, dst, 12, w), whole)
        monkeypatch.setattr(gnn, "EDGE_CHUNK", 1 << 20)
