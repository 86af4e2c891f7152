"""The cross-domain heterograph of a dataset's training edges."""

from __future__ import annotations

from graphtrain.data.dataset import Dataset
from graphtrain.graph.dgl_compat import import_dgl


def train_graph(dataset: Dataset):
    """DGL heterograph of the ``train`` edges: user<->item per domain, forward and
    reverse edges sharing ids (:meth:`Dataset.train_edge_index`)."""
    dgl = import_dgl()
    return dgl.heterograph(dataset.train_edge_index(), num_nodes_dict=dataset.num_nodes)
