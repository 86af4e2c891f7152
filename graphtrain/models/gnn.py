"""The migration GNN (DESIGN.md "Transfer learning").

Layer, for every node type t::

    h_i^(l) = sigma( W_t^(l) · ( h_i^(l-1) + sum_{r in relations into t} mean_{j in N_r(i)} h_j^(l-1) ) )

alpha_ij is the random-walk degree normalisation 1/|N_r(i)| per relation r, which the
sampled mini-batch estimates without bias, so sampled training and full-graph
inference compute the same function. With ``edge_weights`` set, alpha_ij is
w_ij / sum_j w_ij from the interaction weights (:mod:`graphtrain.models.alpha`).
``lightgcn=True`` is W = I, sigma = identity. A node's final representation is the
mean of its layer outputs (LightGCN's layer combination).

Users are shared by all domains. For the target domain, a user's representation
adds a transfer term T(m_u), where m_u is the user's mean message from
*source-domain* items at the last layer and T is a small MLP trained on users who
have both source and target history. A cold-start user (no target edges) still has
m_u, so T carries their source interests into the target item space.

The model takes plain tensors (:class:`graphtrain.graph.sampling.MiniBatch`-like
objects with ``input_nodes`` and ``layers``); it imports nothing from DGL.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from graphtrain.config import ModelConfig
from graphtrain.models.popularity import popularity_prior
from graphtrain.names import USER, item_type, reverse_etype


def scatter_mean(values: torch.Tensor, index: torch.Tensor, size: int, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Mean of ``values`` per ``index`` row, weighted by ``weights`` when given; rows
    with no (or only zero-weight) entries stay zero."""
    out = values.new_zeros(size, values.shape[1])
    if weights is None:
        out.index_add_(0, index, values)
        total = torch.bincount(index, minlength=size).to(values.dtype)
    else:
        weights = weights.to(values.dtype)
        out.index_add_(0, index, values * weights.unsqueeze(1))
        total = values.new_zeros(size).index_add_(0, index, weights)
    return out / total.clamp_(min=1e-12).unsqueeze(1)


# Without autograd (full-graph inference), messages are gathered this many edges at a
# time: memory holds EDGE_CHUNK x dim message rows, not edges x dim.
EDGE_CHUNK = 1 << 20


def aggregate(h_src: torch.Tensor, src: torch.Tensor, dst: torch.Tensor, size: int,
              weights: torch.Tensor | None = None) -> torch.Tensor:
    """``scatter_mean`` of the source rows ``h_src[src]`` into ``size`` destinations;
    chunked over the edges when no gradient is needed (the sums are the same)."""
    if torch.is_grad_enabled() or len(src) <= EDGE_CHUNK:
        return scatter_mean(h_src[src], dst, size, weights)
    out = h_src.new_zeros(size, h_src.shape[1])
    total = h_src.new_zeros(size)
    for begin in range(0, len(src), EDGE_CHUNK):
        rows = slice(begin, begin + EDGE_CHUNK)
        w = None if weights is None else weights[rows].to(h_src.dtype)
        message = h_src[src[rows]] if w is None else h_src[src[rows]] * w.unsqueeze(1)
        out.index_add_(0, dst[rows], message)
        total.index_add_(0, dst[rows], torch.ones_like(dst[rows], dtype=h_src.dtype) if w is None else w)
    return out / total.clamp_(min=1e-12).unsqueeze(1)


class MigrationGNN(nn.Module):
    """Cross-domain GNN with a source->target transfer head.

    Args:
        config: dimensions, depth, LightGCN switch and transfer head.
        num_nodes: nodes per node type (``user``, ``item@<domain>``).
        source_domain / target_domain: the transfer direction.
        node_embeddings: tables kept outside the model
            (:class:`graphtrain.train.embeddings.KVStoreEmbeddings`); None keeps
            replicated ``nn.Embedding`` tables in the model.
    """

    def __init__(
        self, config: ModelConfig, num_nodes: dict[str, int], source_domain: str, target_domain: str, node_embeddings=None
    ):
        super().__init__()
        self.config = config
        self.num_nodes = dict(num_nodes)
        self.source_domain = source_domain
        self.target_domain = target_domain
        dim = config.embedding_dim
        self.node_embeddings = node_embeddings
        self.embeddings = nn.ModuleDict()
        if node_embeddings is None:
            self.embeddings.update({nt: nn.Embedding(n, dim) for nt, n in self.num_nodes.items()})
            for table in self.embeddings.values():
                nn.init.normal_(table.weight, std=0.1)
        # Follows .to(device) so lookups and ids land on the model's device in both modes.
        self.register_buffer("device_anchor", torch.empty(0), persistent=False)
        self.weights = None
        if not config.lightgcn:
            self.weights = nn.ModuleList(
                nn.ModuleDict({nt: nn.Linear(dim, dim) for nt in self.num_nodes}) for _ in range(config.num_layers)
            )
            # Start at W = I (the LightGCN special case) and learn the deviation:
            # random W shrinks and scrambles embeddings and trains several times slower.
            for layer in self.weights:
                for linear in layer.values():
                    nn.init.eye_(linear.weight)
                    nn.init.zeros_(linear.bias)
        # Item bias b_i, scored as u·i + b_i: mean aggregation drops the degree signal
        # that carries item popularity, which matters most for sparse users.
        self.item_bias = None
        if config.item_bias:
            self.item_bias = nn.ModuleDict({nt: nn.Embedding(n, 1) for nt, n in self.num_nodes.items() if nt != USER})
            for table in self.item_bias.values():
                nn.init.zeros_(table.weight)
        self.transfer = None
        if config.transfer:
            self.transfer = nn.Sequential(
                nn.Linear(dim, config.transfer_hidden), nn.ReLU(), nn.Linear(config.transfer_hidden, dim)
            )

    @torch.no_grad()
    def init_item_bias(self, counts: dict[str, torch.Tensor]) -> None:
        """Start b_i at :func:`popularity_prior` of its training interactions."""
        if self.item_bias is None:
            return
        for nt, table in self.item_bias.items():
            if nt in counts:
                table.weight.copy_(popularity_prior(counts[nt]).unsqueeze(1))

    def input_embeddings(self, ntype: str, ids: torch.Tensor) -> torch.Tensor:
        if self.node_embeddings is not None:
            return self.node_embeddings.lookup(ntype, ids, self.device_anchor.device)
        return self.embeddings[ntype](ids)

    def full_state_dict(self) -> dict[str, torch.Tensor]:
        """``state_dict`` with the embedding tables, wherever they live (checkpoints)."""
        state = self.state_dict()
        if self.node_embeddings is not None:
            state.update(self.node_embeddings.state_dict())
        return state

    def load_full_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        if self.node_embeddings is None:
            self.load_state_dict(state)
            return
        tables = {k: v for k, v in state.items() if k.startswith("embeddings.")}
        self.load_state_dict({k: v for k, v in state.items() if k not in tables})
        self.node_embeddings.load_state_dict(tables)

    # -- message passing -------------------------------------------------------------
    def _layer(self, index: int, x: dict[str, torch.Tensor], layer) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
        agg = {nt: x[nt][:n] for nt, n in layer.num_dst.items() if nt in x}
        source_message = None
        source_relation = reverse_etype(self.source_domain)
        for etype, (src, dst) in layer.edges.items():
            src_type, _, dst_type = etype
            message = aggregate(x[src_type], src, dst, layer.num_dst[dst_type], layer.weights.get(etype))
            agg[dst_type] = agg[dst_type] + message
            if etype == source_relation:
                source_message = message
        out = {}
        for nt, h in agg.items():
            if self.weights is not None:
                h = F.leaky_relu(self.weights[index][nt](h), 0.2)
            out[nt] = h
        return out, source_message

    def propagate(
        self, input_nodes: dict[str, torch.Tensor], layers, layer_inputs: list | None = None
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
        """Final node representations of the last layer's destination nodes, and the
        users' source-domain message at the last layer (None without source edges).

        ``layer_inputs``, when given, receives every layer's input ``{ntype: h^(l)}``
        (the fold-in at serving time re-applies the layers to them)."""
        x = {nt: self.input_embeddings(nt, ids) for nt, ids in input_nodes.items()}
        num_out = layers[-1].num_dst
        total = {nt: x[nt][: num_out.get(nt, 0)] for nt in x}
        source_message = None
        for index, layer in enumerate(layers):
            if layer_inputs is not None:
                layer_inputs.append(x)
            x, source_message = self._layer(index, x, layer)
            for nt, h in x.items():
                total[nt] = total[nt] + h[: num_out.get(nt, 0)]
        final = {nt: h / (len(layers) + 1) for nt, h in total.items()}
        if self.item_bias is not None:
            for nt in self.item_bias.keys() & final.keys():
                # Output nodes are the first rows of the input nodes (DGL block order).
                final[nt] = torch.cat([final[nt], self.item_bias[nt](input_nodes[nt][: len(final[nt])])], 1)
        return final, source_message

    def augment_users(self, users: torch.Tensor) -> torch.Tensor:
        """Users get a constant 1 column against the items' bias column, so a score
        stays one dot product (and the exported vectors serve as they are)."""
        if self.item_bias is None:
            return users
        return torch.cat([users, users.new_ones(len(users), 1)], 1)

    # -- task methods ---------------------------------------------------------------
    def user_representation(
        self, final_users: torch.Tensor, source_message: torch.Tensor | None, domain: str
    ) -> torch.Tensor:
        """A user's representation for scoring items of ``domain``."""
        if domain != self.target_domain or self.transfer is None or source_message is None:
            return self.augment_users(final_users)
        return self.augment_users(final_users + self.transfer(source_message))

    @staticmethod
    def score(users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Dot-product scores; broadcasts [n, d] x [n, k, d] -> [n, k] or pairs [n, d] x [n, d] -> [n]."""
        if items.dim() == 3:
            return torch.einsum("nd,nkd->nk", users, items)
        return (users * items).sum(-1)

    @torch.no_grad()
    def embed(self, full_layers) -> dict[str, dict[str, torch.Tensor]]:
        """Full-graph (layer-wise) inference: user and item representations per domain.

        ``full_layers`` are :class:`LayerEdges`-like objects over *all* nodes (every
        node is both source and destination), one per layer.
        """
        ids = {nt: torch.arange(n, device=self.device_anchor.device) for nt, n in self.num_nodes.items()}
        layer_inputs: list[dict[str, torch.Tensor]] = []
        final, source_message = self.propagate(ids, full_layers, layer_inputs)
        domains = [nt.split("@", 1)[1] for nt in self.num_nodes if nt != USER]
        return {
            "users": {d: self.user_representation(final[USER], source_message, d) for d in domains},
            "items": {d: final[item_type(d)] for d in domains},
            "layer_inputs": layer_inputs,
        }
