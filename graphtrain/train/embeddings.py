"""Where node embedding tables live during training (DESIGN.md "Embeddings at scale").

``replicated``: ``nn.Embedding`` tables inside the model on every worker; DDP all-reduces
their (dense) gradients. ``distributed``: one ``dgl.distributed.DistEmbedding`` per node
type in DGL's KVStore, partitioned like the graph and served by the graph servers; a
worker pulls only its batch's rows and DGL's ``SparseAdam`` updates only those rows.
Dense weights (item bias, transfer head, W) stay in the model under DDP either way.

A checkpoint holds the same ``embeddings.<ntype>.weight`` tensors in both modes (rank 0
pulls the KVStore tables), so export, evaluation and serving do not know which mode
trained the model; KVStore runs add each worker's share of SparseAdam's moments.
"""

from __future__ import annotations

import os

import numpy as np
import torch
import torch.distributed as dist

from graphtrain.config import TrainConfig
from graphtrain.errors import ConfigError
from graphtrain.graph.dgl_compat import import_dgl

REPLICATED, DISTRIBUTED = "replicated", "distributed"
SPARSE_OPTIMIZER = "sparse_optimizer.pt"  # DGL appends _<rank>
INIT_STD = 0.1  # as MigrationGNN initialises its nn.Embedding tables


def replicated_bytes(num_nodes: dict[str, int], dim: int) -> int:
    """Bytes one worker holds for replicated tables: weights, gradient, Adam's two moments."""
    return sum(num_nodes.values()) * dim * 4 * 4


def placement(config: TrainConfig, num_nodes: dict[str, int], has_kvstore: bool) -> str:
    """``config.embeddings`` resolved: "auto" goes distributed when replicated tables
    would exceed ``replicated_embeddings_mb`` and graph servers hold a KVStore."""
    if config.embeddings == DISTRIBUTED and not has_kvstore:
        raise ConfigError(
            "embeddings", config.embeddings,
            "distributed tables live on DGL graph servers, one partition per host; train with "
            "`graphtrain train` (the in-process loop has none) without co-locating partitions, or use 'replicated'",
        )
    if config.embeddings != "auto":
        return config.embeddings
    too_big = replicated_bytes(num_nodes, config.model.embedding_dim) > config.replicated_embeddings_mb * 2**20
    return DISTRIBUTED if too_big and has_kvstore else REPLICATED


def normal_init(shape, dtype) -> torch.Tensor:
    """KVStore initialiser; it runs on the graph servers, so it must be importable there.
    Seeded by the partition's shape so a rerun starts from the same tables."""
    generator = torch.Generator().manual_seed(int(np.prod(shape)))
    return torch.randn(shape, generator=generator, dtype=dtype) * INIT_STD


class KVStoreEmbeddings:
    """Node embedding tables in DGL's KVStore, looked up by dataset ids.

    Every worker creates the same tables in the same order (creation is collective).
    """

    def __init__(self, source, num_nodes: dict[str, int], dim: int, name: str = "graphtrain-emb"):
        dgl = import_dgl()
        self.source = source
        self.num_nodes = dict(num_nodes)
        self.tables = {
            nt: dgl.distributed.DistEmbedding(
                n, dim, name=f"{name}-{nt}", init_func=normal_init,
                part_policy=source.graph.get_node_partition_policy(nt),
            )
            for nt, n in sorted(self.num_nodes.items())
        }

    def lookup(self, ntype: str, ids: torch.Tensor, device: torch.device) -> torch.Tensor:
        """Rows for dataset ids; recorded for the sparse optimiser when grad is enabled."""
        graph_ids = torch.from_numpy(self.source.nodes_to_graph(ntype, ids.cpu().numpy()))
        return self.tables[ntype](graph_ids, device=device)

    def optimizer(self, learning_rate: float):
        """DGL's SparseAdam over the tables (kept here so checkpoints can reach it)."""
        self.sparse_optimizer = import_dgl().distributed.optim.SparseAdam(list(self.tables.values()), lr=learning_rate)
        return self.sparse_optimizer

    def save_optimizer(self, directory: str) -> None:
        """Every worker writes its share of SparseAdam's moments (``<file>_<rank>``);
        collective. Ray Train merges the workers' checkpoint files into one directory."""
        self.sparse_optimizer.save(os.path.join(directory, SPARSE_OPTIMIZER))

    def load_optimizer(self, directory: str) -> None:
        """Collective; a worker whose file is missing (more workers than before) starts at zero."""
        self.sparse_optimizer.load(os.path.join(directory, SPARSE_OPTIMIZER))

    @torch.no_grad()
    def state_dict(self) -> dict[str, torch.Tensor]:
        """Whole tables in dataset id order, named as the model's replicated tables."""
        return {
            f"embeddings.{nt}.weight": self.lookup(nt, torch.arange(n), torch.device("cpu"))
            for nt, n in self.num_nodes.items()
        }

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Write whole tables (dataset id order) into the KVStore. Every worker restores
        the same checkpoint, so rank 0 alone writes; the training loop's barrier after
        resuming keeps the others from reading before it is done."""
        if dist.is_initialized() and dist.get_rank() != 0:
            return
        for nt, n in self.num_nodes.items():
            graph_ids = torch.from_numpy(self.source.nodes_to_graph(nt, np.arange(n)))
            self.tables[nt].weight[graph_ids] = state[f"embeddings.{nt}.weight"]


def set_learning_rate(sparse_optimizer, learning_rate: float) -> None:
    """DGL's sparse optimisers keep the rate in a private field (no param_groups)."""
    sparse_optimizer._lr = learning_rate
