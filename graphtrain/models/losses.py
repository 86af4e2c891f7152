"""Ranking losses."""

from __future__ import annotations

import torch
from torch.nn import functional as F


def bpr_loss(pos_scores: torch.Tensor, neg_scores: torch.Tensor) -> torch.Tensor:
    """Bayesian personalised ranking: -log sigmoid(s_pos - s_neg), averaged.

    ``pos_scores`` is [n], ``neg_scores`` is [n, k] (k sampled negatives per positive).
    """
    return -F.logsigmoid(pos_scores.unsqueeze(1) - neg_scores).mean()


def l2_penalty(*tensors: torch.Tensor) -> torch.Tensor:
    """Mean squared norm of the rows used in a batch (regularises only what was touched)."""
    return sum(t.pow(2).sum(-1).mean() for t in tensors if t.numel()) / max(len(tensors), 1)


def alignment_loss(mapped: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared distance from T(m_u) to the user's own target-side representation,
    over the rows in ``mask`` (users with source and target history). The target side
    is held fixed: the loss moves the transfer head, as EMCDR fits its mapping."""
    if not bool(mask.any()):
        return mapped.sum() * 0.0  # keeps the head in the graph for DDP
    return (mapped[mask] - target[mask].detach()).pow(2).sum(-1).mean()
