import numpy as np
import pytest
import torch

from graphtrain.config import ModelConfig
from graphtrain.graph.batch import LayerEdges
from graphtrain.graph.build import train_graph
from graphtrain.graph.names import USER, item_type
from graphtrain.graph.sampling import EdgeBatchSampler, LocalGraphSource
from graphtrain.models.gnn import MigrationGNN, scatter_mean
from graphtrain.models.inference import embed, full_graph_layers


def test_scatter_mean_averages_and_leaves_isolated_rows_zero():
    values = torch.tensor([[1.0], [3.0], [5.0]])
    out = scatter_mean(values, torch.tensor([0, 0, 2]), 4)
    assert out.squeeze(1).tolist() == [2.0, 0.0, 5.0, 0.0]


@pytest.mark.parametrize("lightgcn", [False, True])
def test_sampled_forward_with_full_fanout_equals_full_graph_inference(tiny_dataset, lightgcn):
    """Mean aggregation makes the sampled computation exact when nothing is dropped."""
    torch.manual_seed(0)
    model = MigrationGNN(ModelConfig(embedding_dim=16, num_layers=2, lightgcn=lightgcn), tiny_dataset.num_nodes, "books", "movies")
    model.eval()
    full = embed(model, tiny_dataset)
    source = LocalGraphSource(train_graph(tiny_dataset))
    num_items = {d: tiny_dataset.num_items(d) for d in tiny_dataset.domains}
    sampler = EdgeBatchSampler(source, tiny_dataset.domains, num_items, fanouts=[-1, -1], num_negatives=1)
    seeds = {USER: np.arange(0, 40), item_type("movies"): np.arange(0, 30)}
    input_nodes, layers = sampler.neighbourhood(seeds, exclude={})
    with torch.no_grad():
        final, source_message = model.propagate(input_nodes, layers)
        users = model.user_representation(final[USER], source_message, "movies")
    torch.testing.assert_close(users, full["users"]["movies"][:40], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(final[item_type("movies")], full["items"]["movies"][:30], rtol=1e-4, atol=1e-5)


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
