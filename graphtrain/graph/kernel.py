"""DGL's uniform neighbour-sampling kernel, called without building DGL graphs.

``dgl.sampling.sample_neighbors`` wraps its C kernel in a new ``DGLGraph`` with copied
node and edge frames; reading the edges back costs 0.3-0.5 ms a call (measured on a
sport_cloth partition), as much as drawing 3,000 nodes. ``sample_in_edges`` calls the
kernel of DGL 2.1.0 (the only DGL on PyPI) and returns the drawn edges as tensors;
``tests/graph/test_kernel.py`` checks its draws and signature, ``test_typed_csc.py`` and
``test_sampling.py`` its two callers.
"""

from __future__ import annotations

import torch

EdgeTensors = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # (source, destination, edge id)


def sample_in_edges(graph, seeds: dict[str, torch.Tensor], fanout: int) -> list[EdgeTensors]:
    """Up to ``fanout`` in-edges of each edge type of every seed (ids by node type of
    ``graph``), drawn uniformly without replacement, for each of ``graph``'s canonical
    edge types in order. Edge ids are the values of the graph's CSC edge-id array."""
    from dgl import backend as F
    from dgl import ndarray
    from dgl.sampling.neighbor import _CAPI_DGLSampleNeighbors

    empty = torch.zeros(0, dtype=graph.idtype)
    nodes = [F.to_dgl_nd(seeds.get(nt, empty).to(graph.idtype)) for nt in graph.ntypes]
    num_etypes = len(graph.canonical_etypes)
    fanouts = F.to_dgl_nd(torch.full((num_etypes,), int(fanout), dtype=torch.int64))
    no_probabilities = [ndarray.array([], ctx=ndarray.cpu())] * num_etypes
    drawn = _CAPI_DGLSampleNeighbors(graph._graph, nodes, fanouts, "in", no_probabilities, [], False)
    edge_ids = drawn.induced_edges
    edges = []
    for etype in range(num_etypes):
        src, dst, _ = drawn.graph.edges(etype)
        edges.append((src, dst, edge_ids[etype]))
    return edges
