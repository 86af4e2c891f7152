"""The EMCDR baseline (Man et al., IJCAI 2017), scored in the same harness as graphtrain.

(The other baselines: ``popularity`` is :mod:`graphtrain.models.popularity`;
``lightgcn_target_only`` and ``graphtrain_no_transfer`` are configurations of the
migration GNN, see bench/quality.py.) EMCDR is a BPR matrix
factorisation per domain, then an MLP mapping source user factors onto target user
factors, fitted on users with training history in both. Cold-start users are
scored with their mapped factors, warm users with their own target factors.

MF here has an item bias started at log(1 + popularity) (scored as u·i + b_i, like
graphtrain), which makes the baseline stronger on sparse data, not weaker.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch
from torch import nn

from graphtrain.data.dataset import Dataset
from graphtrain.models.losses import bpr_loss, l2_penalty
from graphtrain.models.popularity import popularity_prior

# validate(user_vectors, item_vectors) -> validation NDCG@10 (higher is better)
Validate = Callable[[np.ndarray, np.ndarray], float]


@dataclass(frozen=True)
class MFConfig:
    dim: int = 64
    epochs: int = 30
    batch_size: int = 1024
    learning_rate: float = 0.005
    weight_decay: float = 0.1  # as graphtrain's default (TrainConfig)
    patience: int = 3  # epochs without a better validation score before stopping
    seed: int = 0


def _augmented(users: torch.Tensor, items: torch.Tensor, bias: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    ones = torch.ones(len(users), 1)
    return torch.cat([users, ones], 1).numpy(), torch.cat([items, bias], 1).numpy()


def bpr_mf(
    users: np.ndarray, items: np.ndarray, num_users: int, num_items: int, config: MFConfig,
    validate: Optional[Validate] = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """BPR-MF with uniform negatives; returns (user factors, item factors, item bias)
    of the best validated epoch (the last one without ``validate``)."""
    gen = torch.Generator().manual_seed(config.seed)
    user_f = nn.Embedding(num_users, config.dim)
    item_f = nn.Embedding(num_items, config.dim)
    bias = nn.Embedding(num_items, 1)
    for table in (user_f, item_f):
        nn.init.normal_(table.weight, std=0.1, generator=gen)
    with torch.no_grad():
        bias.weight.copy_(popularity_prior(torch.bincount(torch.from_numpy(items.copy()), minlength=num_items)).unsqueeze(1))
    params = [*user_f.parameters(), *item_f.parameters(), *bias.parameters()]
    optimizer = torch.optim.Adam(params, lr=config.learning_rate)
    u_all, i_all = torch.from_numpy(users.copy()), torch.from_numpy(items.copy())
    best, best_score, waited = None, -np.inf, 0
    for _ in range(config.epochs):
        order = torch.randperm(len(u_all), generator=gen)
        for begin in range(0, len(order), config.batch_size):
            rows = order[begin : begin + config.batch_size]
            u, pos = u_all[rows], i_all[rows]
            neg = torch.randint(0, num_items, (len(rows), 1), generator=gen)
            uf, pf, nf = user_f(u), item_f(pos), item_f(neg)
            pos_s = (uf * pf).sum(-1) + bias(pos).squeeze(-1)
            neg_s = torch.einsum("nd,nkd->nk", uf, nf) + bias(neg).squeeze(-1)
            loss = bpr_loss(pos_s, neg_s) + config.weight_decay * l2_penalty(uf, pf, nf.flatten(0, 1))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        state = (user_f.weight.detach().clone(), item_f.weight.detach().clone(), bias.weight.detach().clone())
        if validate is None:
            best = state
            continue
        score = validate(*_augmented(*state))
        if score > best_score:
            best, best_score, waited = state, score, 0
        else:
            waited += 1
            if waited >= config.patience:
                break
    return tuple(t.numpy() for t in best)


def emcdr(
    dataset: Dataset, source: str, target: str, config: MFConfig = MFConfig(),
    validate: Optional[Validate] = None, mapping_epochs: int = 200,
) -> tuple[np.ndarray, np.ndarray]:
    """EMCDR user and item vectors for scoring ``target`` (augmented with the bias
    column, so a score is one dot product)."""
    n_users = dataset.num_users
    src_u, src_i = dataset.split_edges("train", source)
    tgt_u, tgt_i = dataset.split_edges("train", target)
    source_users, _, _ = bpr_mf(src_u, src_i, n_users, dataset.num_items(source), config)
    target_users, target_items, target_bias = bpr_mf(tgt_u, tgt_i, n_users, dataset.num_items(target), config, validate)

    both = np.intersect1d(np.unique(src_u), np.unique(tgt_u))
    torch.manual_seed(config.seed)
    mapping = nn.Sequential(nn.Linear(config.dim, 2 * config.dim), nn.Tanh(), nn.Linear(2 * config.dim, config.dim))
    optimizer = torch.optim.Adam(mapping.parameters(), lr=1e-3, weight_decay=1e-5)
    x, y = torch.from_numpy(source_users[both]), torch.from_numpy(target_users[both])
    for _ in range(mapping_epochs):  # full batch: a few thousand overlapping users
        loss = (mapping(x) - y).pow(2).sum(1).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    users = torch.from_numpy(target_users.copy())
    cold = np.setdiff1d(np.unique(src_u), np.unique(tgt_u))
    with torch.no_grad():
        users[torch.from_numpy(cold)] = mapping(torch.from_numpy(source_users[cold]))
    return _augmented(users, torch.from_numpy(target_items), torch.from_numpy(target_bias))
