"""Stand-in for ``dgl.graphbolt`` on PyTorch builds that graphbolt cannot load on.

DGL 2.1.0 imports ``dgl.graphbolt`` from ``dgl.distributed`` and graphbolt loads a
C++ library built only for torch <= 2.2.1. graphtrain never uses graphbolt (it
partitions and samples with the classic DGL graph), so this ordinary module is
registered under that name instead. It names exactly the attributes that
``dgl.distributed`` touches; each one fails loudly if graphbolt is really asked for.
There is deliberately no module-level ``__getattr__``: tools such as ``inspect`` and
``torch.compile`` read attributes of every module in ``sys.modules``.
"""

_MESSAGE = (
    "dgl.graphbolt is not available in graphtrain (DGL 2.1.0's graphbolt only loads on "
    "torch <= 2.2.1); use the classic DGL graph format (use_graphbolt=False)."
)


class FusedCSCSamplingGraph:
    """Never instantiated; exists so ``isinstance(x, gb.FusedCSCSamplingGraph)`` is False."""

    def __init__(self, *args, **kwargs):
        raise NotImplementedError(_MESSAGE)


def _unavailable(*args, **kwargs):
    raise NotImplementedError(_MESSAGE)


load_from_shared_memory = _unavailable
expand_indptr = _unavailable
etype_tuple_to_str = _unavailable
fused_csc_sampling_graph = _unavailable
