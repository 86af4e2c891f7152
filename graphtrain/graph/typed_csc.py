"""Per-edge-type neighbour draws on a DGL partition, in per-type ids.

A partition's graph is homogeneous: DGL's ``SamplingRequest`` draws ``fanout`` from all
of a node's in-edges together, its per-type request (``SamplingRequestEtype``) is
10-20x slower per node in DGL 2.1.0, and both answer in homogeneous ids that cost the
client DGL's id map (a fifth of its sampling time, profiled on sport_cloth).

``TypedInCSC`` keeps the in-edges of the partition's own nodes as one CSC per edge type,
already in the ids the model's side uses: destination = the node's id within its type
(stored relative to the partition's first id of that type: DGL gives every partition a
contiguous range per type), source and edge id within their types. DGL's heterograph
kernel draws up to ``fanout`` per edge type from it, as ``dgl.sampling.sample_neighbors``
does on a whole heterograph, and answers without a single gather or id translation.

It is built once per partition and process: on each graph server for its partition
(``server_main``), and in each client, as it connects, for the partition it reads from
shared memory. It holds a copy of the partition's in-edges (two ids per edge, one per
node), built one edge type at a time. Ids are int32 whenever the graph's node and edge
counts allow (``id_dtype``): half the memory and RPC bytes of int64, and DGL's kernel
drew 3,600 sport_cloth nodes in a median 0.54 ms against 0.75 ms for int64 (six
alternating runs of 400 draws each; ranges 0.45-0.84 and 0.61-1.05 ms).

``TypedSamplingRequest`` is the request the clients send to the servers;
``request_class()`` registers it with DGL's RPC (servers and clients both call it).
"""

from __future__ import annotations

import weakref

import torch

from graphtrain.graph.kernel import EdgeTensors, id_dtype_for, sample_in_edges

SERVICE_ID = 27261  # not among DGL 2.1.0's service ids (6657-6662, 22451-22454, 700001-901241)


def id_dtype(book) -> torch.dtype:
    """The id type of the per-type CSCs and of the sampling RPC's ids: int32 when every
    node and edge id of the graph (per-type ids are below the homogeneous totals) fits,
    else int64. Servers and clients derive it alike from the partition book."""
    return id_dtype_for(book._num_nodes(), book._num_edges())  # DGL 2.1.0 RangePartitionBook totals


class TypedInCSC:
    """In-edges of one partition's own nodes, one CSC per edge type, in per-type ids."""

    def __init__(self, local_graph, book):
        from dgl import EID, ETYPE, NID

        from graphtrain.graph.dgl_compat import import_dgl

        dgl = import_dgl()
        ntypes = list(book.ntypes)
        self.etypes = list(book.canonical_etypes)  # DGL's edge type ids follow this order
        self.idtype = id_dtype(book)
        node_type, typed_nid = book.map_to_per_ntype(local_graph.ndata[NID])
        inner = local_graph.ndata["inner_node"].bool()
        # The partition's own nodes of each type: a contiguous range of per-type ids.
        self.first_id, self.num_own = {}, {}
        for t, nt in enumerate(ntypes):
            ids = typed_nid[inner & (node_type == t)]
            first = int(ids.min()) if len(ids) else 0
            if len(ids) and int(ids.max()) - first + 1 != len(ids):
                raise ValueError(f"partition {book.partid}: its {nt!r} nodes are not one range of ids; "
                                 "was it written by graphtrain partition (DGL's partition_graph)?")
            self.first_id[nt], self.num_own[nt] = first, len(ids)

        # One edge type at a time, so the build's temporaries stay near one type's edges.
        indptr, indices, eids = local_graph.adj_tensors("csc")
        etype_at = local_graph.edata[ETYPE][eids]  # edge type at each CSC position
        relations, num_src = {}, {}
        for etid, (src_t, rel, dst_t) in enumerate(self.etypes):
            rows = torch.nonzero(etype_at == etid).squeeze(1)
            dst = torch.searchsorted(indptr, rows, right=True) - 1  # local node owning each position
            own = inner[dst]  # in-edges of own nodes only
            rows, dst = rows[own], dst[own]
            dst = typed_nid[dst] - self.first_id[dst_t]
            src = typed_nid[indices[rows].long()]
            _, edge_id = book.map_to_per_etype(local_graph.edata[EID][eids[rows].long()])
            if len(dst) > 1 and bool((dst[1:] < dst[:-1]).any()):  # DGL's CSC keeps them sorted
                order = torch.argsort(dst, stable=True)
                dst, src, edge_id = dst[order], src[order], edge_id[order]
            type_indptr = torch.zeros(self.num_own[dst_t] + 1, dtype=self.idtype)
            torch.cumsum(torch.bincount(dst, minlength=self.num_own[dst_t]), 0, out=type_indptr[1:])
            # The CSC's edge-id array holds per-type edge ids: the kernel hands them back as drawn.
            relations[_src(src_t), rel, _dst(dst_t)] = ("csc", (type_indptr, src.to(self.idtype), edge_id.to(self.idtype)))
            num_src[src_t] = max(num_src.get(src_t, 0), int(src.max()) + 1 if len(src) else 0)
        del etype_at
        num_nodes = {_dst(nt): self.num_own[nt] for nt in ntypes}
        num_nodes.update({_src(nt): num_src.get(nt, 0) for nt in ntypes})
        self.graph = dgl.heterograph(relations, num_nodes_dict=num_nodes, idtype=self.idtype).formats("csc")
        self._graph_etype = [self.graph.get_etype_id((_src(s), rel, _dst(d))) for s, rel, d in self.etypes]

    def sample(self, nodes: dict[str, torch.Tensor], fanout: int) -> "TypedDraw":
        """Up to ``fanout`` in-edges of each edge type of every node in ``nodes`` (per-type
        ids by node type, all of this partition), drawn uniformly without replacement."""
        seeds = {}
        for nt, ids in nodes.items():
            if not len(ids):
                continue
            local = ids - self.first_id[nt]
            low, high = torch.aminmax(local)
            if int(low) < 0 or int(high) >= self.num_own[nt]:
                raise ValueError(f"asked for {nt!r} nodes outside this partition's ids "
                                 f"{self.first_id[nt]}..{self.first_id[nt] + self.num_own[nt] - 1}")
            seeds[_dst(nt)] = local
        drawn = sample_in_edges(self.graph, seeds, fanout)
        return TypedDraw([
            (src, dst + self.first_id[dst_t], eid)
            for (src, dst, eid), (_, _, dst_t) in zip((drawn[i] for i in self._graph_etype), self.etypes)
        ])


def _src(ntype: str) -> str:
    return f"src:{ntype}"


def _dst(ntype: str) -> str:
    return f"dst:{ntype}"


class TypedDraw:
    """Drawn edges: (source, destination, edge id) in per-type ids for each edge type, in
    DGL's order of canonical edge types. Also the RPC response."""

    def __init__(self, edges: list[EdgeTensors]):
        self.edges = edges

    def __getstate__(self):
        return pack([array for triple in self.edges for array in triple], self.edges[0][0].dtype)

    def __setstate__(self, state):
        arrays = unpack(state)
        self.edges = [tuple(arrays[i:i + 3]) for i in range(0, len(arrays), 3)]


def pack(arrays: list[torch.Tensor], dtype: torch.dtype = torch.int64) -> torch.Tensor:
    """1-D integer arrays of ``dtype`` as one tensor of it: their count, their lengths,
    then each in turn.

    DGL's RPC sends a message's tensors without pickling them, but converts each one
    through DLPack on both sides: a 12-array answer cost the client about 0.4 ms a
    request in conversions (cProfile, sport_cloth). One tensor costs one conversion.
    """
    lengths = [len(array) for array in arrays]
    if lengths and max(lengths) > torch.iinfo(dtype).max:
        raise ValueError(f"pack: an array of {max(lengths):,} elements does not fit a {dtype} length")
    if any(array.dtype != dtype for array in arrays):
        raise ValueError(f"pack: arrays of {sorted({str(a.dtype) for a in arrays})}, expected all {dtype}")
    return torch.cat([torch.tensor([len(arrays), *lengths], dtype=dtype), *arrays])


def unpack(packed: torch.Tensor) -> list[torch.Tensor]:
    """The arrays of ``pack``, as views of ``packed``."""
    count = int(packed[0])
    return list(torch.split(packed[1 + count:], packed[1:1 + count].tolist()))


_BUILT: "weakref.WeakKeyDictionary[object, TypedInCSC]" = weakref.WeakKeyDictionary()


def typed_in_csc(local_graph, book) -> TypedInCSC:
    """The ``TypedInCSC`` of a partition graph, built on first use in this process."""
    index = _BUILT.get(local_graph)
    if index is None:
        index = _BUILT[local_graph] = TypedInCSC(local_graph, book)
    return index


_REQUEST_CLASS = None


def request_class() -> type:
    """``TypedSamplingRequest``, registered with DGL's RPC on first use (servers call
    this before serving, clients before their first request)."""
    global _REQUEST_CLASS
    if _REQUEST_CLASS is None:
        _REQUEST_CLASS = _define_and_register()
    return _REQUEST_CLASS


def _define_and_register() -> type:
    # Defined here, not at import, because DGL must be imported through dgl_compat.
    from graphtrain.graph.dgl_compat import import_dgl

    import_dgl()
    from dgl.distributed import rpc

    class TypedSamplingResponse(TypedDraw, rpc.Response):
        """A ``TypedDraw`` sent back by a graph server."""

    class TypedSamplingRequest(rpc.Request):
        """Ask a graph server for up to ``fanout`` in-edges per edge type of ``nodes``
        (per-type ids of ``id_dtype``, one tensor per node type in the partition book's order)."""

        def __init__(self, nodes: tuple[torch.Tensor, ...], fanout: int):
            self.nodes = tuple(nodes)
            self.fanout = fanout

        def __getstate__(self):
            dtype = self.nodes[0].dtype
            return pack([torch.tensor([self.fanout], dtype=dtype), *self.nodes], dtype)

        def __setstate__(self, state):
            fanout, *nodes = unpack(state)
            self.fanout, self.nodes = int(fanout), tuple(nodes)

        def process_request(self, server_state):
            book = server_state.partition_book
            draw = typed_in_csc(server_state.graph, book).sample(dict(zip(book.ntypes, self.nodes)), self.fanout)
            return TypedSamplingResponse(draw.edges)

    rpc.register_service(SERVICE_ID, TypedSamplingRequest, TypedSamplingResponse)
    return TypedSamplingRequest
