"""Fold-in: a user's representation recomputed from their neighbourhood, no retraining.

The migration GNN's user representation (``graphtrain.models.gnn``) is a function of
the user's own input embedding h_u^(0), the previous-layer outputs h_j^(l) of the
items they interacted with, the user-type layer weights W_user^(l) and the transfer
head T::

    h_u^(l+1) = sigma( W_user^(l) (h_u^(l) + sum_d  sum_{j in N_d(u)} a_j h_j^(l) / sum_j a_j) )
    final_u   = mean_l h_u^(l)                      (l = 0..L)
    target_u  = final_u + T(m_u),  m_u = the source-domain message of the last layer

Export writes what this needs next to the scoring vectors (:func:`fold_in_arrays`):
h_u^(0) of every user, h_j^(l) of every item for l < L, and the small dense weights.
:class:`FoldIn` then evaluates the formula for any neighbourhood, so an interaction
that arrives at serving time changes the user's vectors at once. For a known user and
an unchanged neighbourhood it reproduces the exported vectors (tested).

What it does not do: the items' own vectors stay as trained, though a new edge would
also move the item's side (one edge among an item's many). A brand-new user has
h_u^(0) = 0, since no row was trained for them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from graphtrain.names import USER
from graphtrain.models.alpha import alpha_of

USER_INPUT = "fold.user_input"
PARAM = "param."


def layer_input_name(layer: int, domain: str) -> str:
    return f"fold.layer{layer}@{domain}"


def seen_weights_name(domain: str) -> str:
    return f"seen_alpha@{domain}"


def fold_in_arrays(model, layer_inputs: list[dict]) -> dict[str, np.ndarray]:
    """The arrays :class:`FoldIn` needs, from a model and its full-graph layer inputs
    (``MigrationGNN.embed(...)["layer_inputs"]``)."""
    arrays = {USER_INPUT: layer_inputs[0][USER].detach().cpu().numpy().astype(np.float32)}
    for layer, inputs in enumerate(layer_inputs):
        for ntype, values in inputs.items():
            if ntype != USER:
                arrays[layer_input_name(layer, ntype.split("@", 1)[1])] = values.detach().cpu().numpy().astype(np.float32)
    for key, value in model.state_dict().items():
        if key.startswith("transfer.") or (key.startswith("weights.") and f".{USER}." in key):
            arrays[PARAM + key] = value.detach().cpu().numpy().astype(np.float32)
    return arrays


@dataclass(frozen=True)
class Neighbourhood:
    """A user's interactions in one domain: item indices and their alpha weights."""

    items: np.ndarray
    alpha: np.ndarray

    @classmethod
    def of(cls, items, alpha) -> "Neighbourhood":
        return cls(np.asarray(items, dtype=np.int64), np.asarray(alpha, dtype=np.float32))

    def __len__(self) -> int:
        return len(self.items)


@dataclass(frozen=True)
class UserState:
    """A user's final representation and last-layer source message."""

    final: np.ndarray
    source_message: np.ndarray


class FoldIn:
    """Evaluates the user side of the migration GNN from a model artifact's arrays."""

    def __init__(self, artifact):
        manifest = artifact.manifest
        model = manifest["model"]
        self.artifact = artifact
        self.num_layers = int(model["num_layers"])
        self.lightgcn = bool(model["lightgcn"])
        self.item_bias = bool(model.get("item_bias", False))
        self.edge_weights = model.get("edge_weights", "none")
        self.source_domain = manifest["source_domain"]
        self.target_domain = manifest["target_domain"]
        self.domains = list(manifest["domains"])
        arrays = artifact.arrays
        self.params = {k[len(PARAM):]: np.asarray(v) for k, v in arrays.items() if k.startswith(PARAM)}
        self.has_transfer = bool(model.get("transfer")) and "transfer.0.weight" in self.params
        self.user_input = arrays[USER_INPUT]
        self.dim = self.user_input.shape[1]

    @staticmethod
    def available(artifact) -> bool:
        """Artifacts exported before fold-in existed lack its arrays."""
        return USER_INPUT in artifact.arrays

    def user_input_of(self, user_idx: int | None) -> np.ndarray:
        if user_idx is None:
            return np.zeros(self.dim, dtype=np.float32)
        return np.asarray(self.user_input[int(user_idx)], dtype=np.float32)

    def _layer_rows(self, layer: int, domain: str, items: np.ndarray) -> np.ndarray:
        return self.artifact.arrays[layer_input_name(layer, domain)].take(items)

    def state(
        self, h0: np.ndarray, neighbourhoods: dict[str, Neighbourhood], multipliers: dict[str, np.ndarray] | None = None
    ) -> UserState:
        """The user's representation for this neighbourhood. ``multipliers`` scale each
        neighbour's message while its alpha stays in the normaliser (explanations
        switch one neighbour off that way)."""
        h = h0.astype(np.float32)
        total = h.copy()
        source_message = np.zeros_like(h)
        for layer in range(self.num_layers):
            agg = h.copy()
            for domain, hood in neighbourhoods.items():
                if not len(hood):
                    continue
                weight = hood.alpha if multipliers is None else hood.alpha * multipliers[domain]
                message = weight @ self._layer_rows(layer, domain, hood.items) / max(float(hood.alpha.sum()), 1e-12)
                agg = agg + message
                if domain == self.source_domain and layer == self.num_layers - 1:
                    source_message = message
            if not self.lightgcn:
                pre = self.params[f"weights.{layer}.{USER}.weight"] @ agg + self.params[f"weights.{layer}.{USER}.bias"]
                agg = np.where(pre > 0, pre, 0.2 * pre)
            h = agg.astype(np.float32)
            total = total + h
        return UserState(final=total / (self.num_layers + 1), source_message=source_message)

    def transfers(self, domain: str) -> bool:
        """Whether ``domain``'s user vectors go through the transfer head."""
        return self.has_transfer and domain == self.target_domain

    def scoring_vector(self, state: UserState, domain: str) -> np.ndarray:
        """The vector scored against ``domain``'s item vectors (``user_representation``)."""
        vector = state.final
        if self.transfers(domain):
            p = self.params
            hidden = np.maximum(p["transfer.0.weight"] @ state.source_message + p["transfer.0.bias"], 0)
            vector = vector + p["transfer.2.weight"] @ hidden + p["transfer.2.bias"]
        if self.item_bias:
            vector = np.concatenate([vector, np.ones(1, dtype=np.float32)])
        return vector.astype(np.float32)

    def scoring_vectors(self, h0: np.ndarray, neighbourhoods: dict[str, Neighbourhood], domain: str) -> np.ndarray:
        return self.scoring_vector(self.state(h0, neighbourhoods), domain)

    def contributions(
        self, h0: np.ndarray, neighbourhoods: dict[str, Neighbourhood], domain: str, item_vector: np.ndarray
    ) -> tuple[float, list[tuple[str, int, float]]]:
        """(score, [(domain, item_idx, contribution)]) of one item for this user.

        A neighbour's contribution is the score lost when its message is switched off
        with the normalisers unchanged. For a LightGCN model without a transfer head the
        score is linear in those messages, so the contributions are exact and add up to
        the score minus the part of the user's own embedding (and the item bias). Learned
        W with LeakyReLU, and the transfer head, are not linear: there each contribution
        is that one-at-a-time occlusion, an approximation that need not add up.
        """
        score = float(self.scoring_vectors(h0, neighbourhoods, domain) @ item_vector)
        out = []
        for d, hood in neighbourhoods.items():
            for k in range(len(hood)):
                multipliers = {name: np.ones(len(h), dtype=np.float32) for name, h in neighbourhoods.items()}
                multipliers[d][k] = 0.0
                without = float(self.scoring_vector(self.state(h0, neighbourhoods, multipliers), domain) @ item_vector)
                out.append((d, int(hood.items[k]), score - without))
        return score, out


def known_neighbourhoods(artifact, fold_in: FoldIn, user_idx: int) -> dict[str, Neighbourhood]:
    """A trained user's training neighbourhood in every domain, with its alpha."""
    out = {}
    for domain in artifact.domains:
        items = artifact.seen(domain, user_idx)
        name = seen_weights_name(domain)
        if name in artifact.arrays:
            bounds = artifact.arrays[f"seen_indptr@{domain}"].rows(user_idx, user_idx + 2)
            alpha = artifact.arrays[name].rows(int(bounds[0]), int(bounds[1]))
        else:
            alpha = np.ones(len(items), dtype=np.float32)
        out[domain] = Neighbourhood.of(items, alpha)
    return out


__all__ = ["FoldIn", "Neighbourhood", "UserState", "alpha_of", "fold_in_arrays", "known_neighbourhoods"]
