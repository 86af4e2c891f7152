"""Plain-tensor mini-batches: what the sampler produces and the model consumes.

No DGL here: a mini-batch is node ids plus, per layer and edge type, local
(source, destination) index tensors. Destination nodes are always the first
``num_dst[ntype]`` source nodes of the same layer (DGL's block convention), so the
output nodes are a prefix of every layer's nodes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

Etype = tuple[str, str, str]


@dataclass
class LayerEdges:
    """One message-passing layer: per edge type, local (src, dst) indices, and the
    edges' alpha weights where the model weights messages (empty: plain mean)."""

    edges: dict[Etype, tuple[torch.Tensor, torch.Tensor]]
    num_dst: dict[str, int]
    weights: dict[Etype, torch.Tensor] = field(default_factory=dict)

    def apply(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> "LayerEdges":
        edges = {et: (fn(s), fn(d)) for et, (s, d) in self.edges.items()}
        return LayerEdges(edges, self.num_dst, {et: fn(w) for et, w in self.weights.items()})


@dataclass
class DomainPairs:
    """Positive (user, item) pairs of one domain and their sampled negative items,
    as indices into the batch's output nodes."""

    users: torch.Tensor
    pos_items: torch.Tensor
    neg_items: torch.Tensor  # [num_pairs, num_negatives]

    def apply(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> "DomainPairs":
        return DomainPairs(fn(self.users), fn(self.pos_items), fn(self.neg_items))


@dataclass
class MiniBatch:
    input_nodes: dict[str, torch.Tensor]  # dataset ids of the first layer's source nodes
    layers: list[LayerEdges]  # input -> output
    pairs: dict[str, DomainPairs] = field(default_factory=dict)

    @property
    def num_seeds(self) -> int:
        return sum(len(p.users) for p in self.pairs.values())

    def apply(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> "MiniBatch":
        """A batch of ``fn`` applied to every tensor."""
        return MiniBatch(
            {nt: fn(ids) for nt, ids in self.input_nodes.items()},
            [layer.apply(fn) for layer in self.layers],
            {d: p.apply(fn) for d, p in self.pairs.items()},
        )

    def to(self, device: torch.device) -> "MiniBatch":
        """On ``device``. For a GPU, the tensors are pinned first, so the copies are
        asynchronous (``non_blocking`` from pageable memory would block)."""
        if device.type == "cpu":
            return self
        return self.apply(lambda t: t.pin_memory().to(device, non_blocking=True))
