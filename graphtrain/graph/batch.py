"""Plain-tensor mini-batches: what the sampler produces and the model consumes.

No DGL here: a mini-batch is node ids plus, per layer and edge type, local
(source, destination) index tensors. Destination nodes are always the first
``num_dst[ntype]`` source nodes of the same layer (DGL's block convention), so the
output nodes are a prefix of every layer's nodes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

Etype = tuple[str, str, str]


@dataclass
class LayerEdges:
    """One message-passing layer: per edge type, local (src, dst) indices, and the
    edges' alpha weights where the model weights messages (empty: plain mean)."""

    edges: dict[Etype, tuple[torch.Tensor, torch.Tensor]]
    num_dst: dict[str, int]
    weights: dict[Etype, torch.Tensor] = field(default_factory=dict)

    def to(self, device) -> "LayerEdges":
        moved = {et: (s.to(device, non_blocking=True), d.to(device, non_blocking=True)) for et, (s, d) in self.edges.items()}
        weights = {et: w.to(device, non_blocking=True) for et, w in self.weights.items()}
        return LayerEdges(moved, self.num_dst, weights)


@dataclass
class DomainPairs:
    """Positive (user, item) pairs of one domain and their sampled negative items,
    as indices into the batch's output nodes."""

    users: torch.Tensor
    pos_items: torch.Tensor
    neg_items: torch.Tensor  # [num_pairs, num_negatives]

    def to(self, device) -> "DomainPairs":
        return DomainPairs(*(t.to(device, non_blocking=True) for t in (self.users, self.pos_items, self.neg_items)))


@dataclass
class MiniBatch:
    input_nodes: dict[str, torch.Tensor]  # dataset ids of the first layer's source nodes
    layers: list[LayerEdges]  # input -> output
    pairs: dict[str, DomainPairs] = field(default_factory=dict)

    @property
    def num_seeds(self) -> int:
        return sum(len(p.users) for p in self.pairs.values())

    def to(self, device) -> "MiniBatch":
        return MiniBatch(
            {nt: ids.to(device, non_blocking=True) for nt, ids in self.input_nodes.items()},
            [layer.to(device) for layer in self.layers],
            {d: p.to(device) for d, p in self.pairs.items()},
        )
