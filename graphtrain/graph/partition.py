"""`graphtrain partition`: DGL ``partition_graph`` of the training graph.

Besides DGL's own files, the artifact holds ``id_mapping.npz``: for each node and
edge type, the dataset index of every partitioned (reshuffled) id, so samplers and
models can translate between the two id spaces.
"""

from __future__ import annotations

import os
import uuid

import numpy as np

from graphtrain import storage
from graphtrain.config import PartitionConfig
from graphtrain.data.dataset import Dataset
from graphtrain.graph.build import train_graph
from graphtrain.graph.dgl_compat import import_dgl
from graphtrain.names import etype_key

ID_MAPPING = "id_mapping.npz"
PART_CONFIG = "graph.json"
INFO = "graphtrain_partition.json"


def partition(config: PartitionConfig) -> dict:
    """Partition the dataset's train graph; returns a small summary."""
    dgl = import_dgl()
    dataset = Dataset.load(config.dataset)
    graph = train_graph(dataset)
    # DGL servers publish their partition in shared memory under the graph name:
    # a name unique to this artifact keeps runs on one machine from colliding.
    graph_name = f"graphtrain-{uuid.uuid4().hex[:12]}"
    with storage.atomic_artifact(config.output) as staging:
        node_map, edge_map = dgl.distributed.partition_graph(
            graph,
            graph_name,
            config.num_parts,
            staging,
            part_method=config.method,
            balance_edges=True,
            return_mapping=True,
        )
        arrays = {f"node:{nt}": node_map[nt].numpy() for nt in graph.ntypes}
        arrays.update({f"edge:{etype_key(et)}": edge_map[et].numpy() for et in graph.canonical_etypes})
        np.savez(os.path.join(staging, ID_MAPPING), **arrays)
        os.rename(os.path.join(staging, f"{graph_name}.json"), os.path.join(staging, PART_CONFIG))
        storage.write_json(
            os.path.join(staging, INFO),
            {"graph_name": graph_name, "num_parts": config.num_parts, "method": config.method, "dataset": config.dataset},
        )
    return {"num_parts": config.num_parts, "method": config.method, "num_edges": int(graph.num_edges())}


def read_info(partitions_uri: str) -> dict:
    """``{"graph_name", "num_parts", "method", "dataset"}`` of a partition artifact."""
    storage.require_artifact(partitions_uri, "partition")
    return storage.read_json(storage.join(partitions_uri, INFO))


class IdMapping:
    """Translate node/edge ids between the dataset and the partitioned graph."""

    def __init__(self, path: str):
        with np.load(path, allow_pickle=False) as data:
            self._to_dataset = {k: data[k] for k in data.files}
        self._to_partition = {}
        for key, to_dataset in self._to_dataset.items():
            inverse = np.empty_like(to_dataset)
            inverse[to_dataset] = np.arange(len(to_dataset))
            self._to_partition[key] = inverse

    @classmethod
    def load(cls, partitions_dir: str) -> "IdMapping":
        return cls(os.path.join(partitions_dir, ID_MAPPING))

    def nodes_to_partition(self, ntype: str, ids: np.ndarray) -> np.ndarray:
        return self._to_partition[f"node:{ntype}"][ids]

    def nodes_to_dataset(self, ntype: str, ids: np.ndarray) -> np.ndarray:
        return self._to_dataset[f"node:{ntype}"][ids]

    def edges_to_partition(self, etype: tuple[str, str, str], ids: np.ndarray) -> np.ndarray:
        return self._to_partition[f"edge:{etype_key(etype)}"][ids]

    def edges_to_dataset(self, etype: tuple[str, str, str], ids: np.ndarray) -> np.ndarray:
        return self._to_dataset[f"edge:{etype_key(etype)}"][ids]
