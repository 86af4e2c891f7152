"""The one place graphtrain imports DGL.

Every module that needs DGL calls :func:`import_dgl` (never ``import dgl``) so that
the graphbolt workaround below is applied exactly once, before DGL loads, and the
rest of the package stays free of DGL imports (the sampler stays replaceable).

Why: PyPI's newest DGL for Linux is 2.1.0. ``dgl.distributed`` imports
``dgl.graphbolt``, which loads a C++ extension that exists only for torch <= 2.2.1
(and needs ``torchdata.datapipes``, gone from current torchdata). The classic APIs
we use (heterograph, partition_graph, DistGraph, sample_neighbors) work on current
torch once graphbolt is kept from loading.
"""

from __future__ import annotations

import importlib
import os
import sys
from types import ModuleType

_GRAPHBOLT = "dgl.graphbolt"


def _install_graphbolt_stub() -> None:
    if _GRAPHBOLT in sys.modules:
        return
    stub = importlib.import_module("graphtrain.graph._graphbolt_stub")
    sys.modules[_GRAPHBOLT] = stub


def import_dgl() -> ModuleType:
    """Import DGL (with ``dgl.distributed``) on current PyTorch and return the module.

    Raises ImportError with the installed versions if DGL cannot load.
    """
    if "dgl" in sys.modules and "dgl.distributed" in sys.modules:
        return sys.modules["dgl"]
    # DGL prints its backend choice and reads DGLBACKEND; pin it to PyTorch.
    os.environ.setdefault("DGLBACKEND", "pytorch")
    _install_graphbolt_stub()
    try:
        import dgl  # noqa: F401  (the only `import dgl` in graphtrain)
        import dgl.distributed  # noqa: F401
    except Exception as exc:  # pragma: no cover - depends on the environment
        import torch

        raise ImportError(
            f"could not import DGL on torch {torch.__version__}: {exc!r}. graphtrain "
            "needs dgl==2.1.0 plus packaging, pandas, pyyaml and pydantic; install with "
            "`pip install -e .`"
        ) from exc
    # Attach the stub as the package attribute too, as a real submodule would be.
    dgl.graphbolt = sys.modules[_GRAPHBOLT]
    return dgl
