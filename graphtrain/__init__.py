"""graphtrain: cross-domain (interest-transfer) recommenders on DGL + Ray.

The public API: one typed config per stage and the stage functions. Training is
``graphtrain.train.trainer.train`` (``graphtrain.train`` is its subpackage).

    from graphtrain import IngestConfig, ingest, run, RunConfig

Stage functions are imported on first use (PEP 562), so ``import graphtrain`` in a
Ray Data worker does not pull in torch, DGL or Ray Train.
"""

from graphtrain.config import (
    EvalConfig,
    IngestConfig,
    ModelConfig,
    PartitionConfig,
    RunConfig,
    ServeConfig,
    TrainConfig,
)

__version__ = "0.1.0"

_STAGES = {
    "ingest": "graphtrain.data.ingest",
    "partition": "graphtrain.graph.partition",
    "export": "graphtrain.inference.export",
    "evaluate": "graphtrain.eval.evaluate",
    "run": "graphtrain.pipeline",
    "demo": "graphtrain.pipeline",
}

__all__ = [
    "EvalConfig", "IngestConfig", "ModelConfig", "PartitionConfig", "RunConfig", "ServeConfig", "TrainConfig",
    *_STAGES,
]


def __getattr__(name: str):
    if name not in _STAGES:
        raise AttributeError(f"module 'graphtrain' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_STAGES[name]), name)
