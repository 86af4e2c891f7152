"""Full-graph inference: every node's representation from a trained checkpoint."""

from __future__ import annotations

import torch

from graphtrain.data.dataset import Dataset
from graphtrain.graph.batch import LayerEdges
from graphtrain.models.alpha import edge_alpha
from graphtrain.models.gnn import MigrationGNN
from graphtrain.names import etype_domain


def full_graph_layers(dataset: Dataset, num_layers: int, edge_weights: str = "none") -> list[LayerEdges]:
    """The whole training graph as ``num_layers`` identical layers (all nodes are
    sources and destinations), in the plain-tensor form the model takes, with the
    edges' alpha weights for ``edge_weights`` (:data:`graphtrain.config.EDGE_WEIGHTS`)."""
    edges = dataset.train_edge_index()
    alpha = edge_alpha(dataset, edge_weights)
    weights = {} if alpha is None else {et: torch.from_numpy(alpha[etype_domain(et)]) for et in edges}
    layer = LayerEdges(edges, dict(dataset.num_nodes), weights)
    return [layer] * num_layers


def embed(model: MigrationGNN, dataset: Dataset) -> dict[str, dict[str, torch.Tensor]]:
    """User representations per scoring domain and item representations per domain."""
    model.eval()
    device = model.device_anchor.device
    layers = full_graph_layers(dataset, model.config.num_layers, model.config.edge_weights)
    return model.embed([layer.apply(lambda t: t.to(device)) for layer in layers])
