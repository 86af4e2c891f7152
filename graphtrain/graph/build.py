"""The cross-domain heterograph of a dataset's training edges."""

from __future__ import annotations

import torch

from graphtrain.data.dataset import Dataset
from graphtrain.graph.dgl_compat import import_dgl
from graphtrain.graph.names import forward_etype, reverse_etype


def train_graph(dataset: Dataset):
    """DGL heterograph of the ``train`` edges: user<->item per domain.

    Edge ``k`` of ``rates@d`` and of ``rated_by@d`` is the k-th train edge of domain
    ``d`` in the dataset's edge order, so forward and reverse share an edge id.
    """
    dgl = import_dgl()
    data = {}
    for domain in dataset.domains:
        users, items = dataset.split_edges("train", domain)
        u, i = torch.from_numpy(users.copy()), torch.from_numpy(items.copy())
        data[forward_etype(domain)] = (u, i)
        data[reverse_etype(domain)] = (i, u)
    return dgl.heterograph(data, num_nodes_dict=dataset.num_nodes)
