"""DGL's uniform neighbour-sampling kernel, called without building DGL graphs.

``dgl.sampling.sample_neighbors`` wraps its C kernel in a new ``DGLGraph`` with copied
node and edge frames; reading the edges back costs 0.3-0.5 ms a call (measured on a
sport_cloth partition), as much as drawing 3,000 nodes. ``sample_in_edges`` calls the
kernel of DGL 2.1.0 (the only DGL on PyPI) and reads back only the arrays it needs, of
the edge types it drew: 0.14 ms a call for one node where DGL's own accessors took 0.46
(sport_cloth partition, 4 edge types). It draws on int32 or int64 graphs and answers in
the graph's id type. ``tests/graph/test_kernel.py`` checks its draws and signature,
``test_typed_csc.py`` and ``test_sampling.py`` its two callers.
"""

from __future__ import annotations

import functools

import torch

EdgeTensors = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # (source, destination, edge id)


def id_dtype_for(num_nodes: int, num_edges: int) -> torch.dtype:
    """The id type to sample a graph of these node and edge totals in: int32 when every
    id fits (DGL's kernel draws faster on it; graph/typed_csc.py has the figures), else int64."""
    return torch.int32 if max(num_nodes, num_edges) <= torch.iinfo(torch.int32).max else torch.int64


def sample_in_edges(graph, seeds: dict[str, torch.Tensor], fanout: int) -> list[EdgeTensors]:
    """Up to ``fanout`` in-edges of each edge type of every seed (ids by node type of
    ``graph``), drawn uniformly without replacement, for each of ``graph``'s canonical
    edge types in order (empty for types into a node type without seeds). Edge ids are
    the values of the graph's CSC edge-id array; every id is of the graph's id type."""
    from dgl import backend as F
    from dgl.heterograph_index import _CAPI_DGLHeteroEdges, _CAPI_DGLHeteroSubgraphGetInducedEdges
    from dgl.sampling.neighbor import _CAPI_DGLSampleNeighbors

    idtype = graph.idtype
    ntypes = graph.ntypes
    etypes = graph.canonical_etypes
    no_seeds = _empty_nd(idtype)
    nodes = [F.to_dgl_nd(seeds[nt].to(idtype)) if nt in seeds else no_seeds for nt in ntypes]
    drawn = _CAPI_DGLSampleNeighbors(graph._graph, nodes, _fanouts(len(etypes), int(fanout)), "in",
                                     _no_probabilities(len(etypes)), [], False)
    # Each accessor below is an FFI call (2-10 us); read only the drawn types' src, dst and ids.
    induced = None
    edges = []
    for etype, (_, _, dst_type) in enumerate(etypes):
        if dst_type not in seeds:
            no_edges = _no_edges(idtype)
            edges.append((no_edges, no_edges, no_edges))
            continue
        if induced is None:
            induced = _CAPI_DGLHeteroSubgraphGetInducedEdges(drawn)
        coo = _CAPI_DGLHeteroEdges(drawn.graph, etype, "")
        edges.append((F.from_dgl_nd(coo(0)), F.from_dgl_nd(coo(1)), F.from_dgl_nd(induced[etype])))
    return edges


@functools.cache
def _no_edges(idtype: torch.dtype) -> torch.Tensor:
    return torch.zeros(0, dtype=idtype)


@functools.cache
def _empty_nd(idtype: torch.dtype):
    from dgl import backend as F

    return F.to_dgl_nd(_no_edges(idtype))


@functools.cache
def _fanouts(num_etypes: int, fanout: int):
    from dgl import backend as F

    return F.to_dgl_nd(torch.full((num_etypes,), fanout, dtype=torch.int64))


@functools.cache
def _no_probabilities(num_etypes: int) -> list:
    from dgl import ndarray

    return [ndarray.array([], ctx=ndarray.cpu())] * num_etypes
