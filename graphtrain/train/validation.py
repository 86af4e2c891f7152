"""Validation during training: the target domain's ``valid`` rows of a bounded,
seeded sample of users on the sampled protocol, scored after every epoch through the
training path itself (the sampler's neighbourhoods, served by the graph servers),
and the early-stopping and learning-rate rules that read it.

Nothing here holds the graph: representations are computed only for the sampled
users and the items their cases rank (a cache of at most users x (negatives + 1)
rows), ``VALID_CHUNK`` seeds per neighbourhood draw.
"""

from __future__ import annotations

import math
from typing import Callable, Optional

import numpy as np
import torch

from graphtrain.config import TrainConfig
from graphtrain.data.dataset import Dataset
from graphtrain.graph.batch import MiniBatch
from graphtrain.graph.sampling import EdgeBatchSampler, GraphSource
from graphtrain.models.gnn import MigrationGNN
from graphtrain.names import USER, item_type
from graphtrain.ranking.cases import SampledCases

METRIC = "valid_ndcg@10"
# Each valid case ranks its item against this many sampled unseen items (test: 999):
# the items scored per epoch stay within users x 100, however large the domain.
VALID_NEGATIVES = 99
VALID_CHUNK = 4096  # seed nodes per neighbourhood draw
VALID_SEED = 7  # the neighbourhoods of every validation are drawn alike, so epochs compare


class Validation:
    """Valid NDCG@10 / HR@10 of a model; negatives are drawn once, so epochs compare."""

    def __init__(self, cases: SampledCases, domain: str, sampler: EdgeBatchSampler, source: GraphSource,
                 device: torch.device):
        self.cases, self.domain, self.sampler, self.source, self.device = cases, domain, sampler, source, device

    @classmethod
    def of(cls, sample: Dataset, domain: str, seed: int, sampler: EdgeBatchSampler, source: GraphSource,
           device: torch.device, max_users: Optional[int] = None) -> Optional["Validation"]:
        """None when ``sample`` (a dataset, or :meth:`Dataset.load_user_sample`'s
        users) has no valid rows in ``domain``; its cases of at most ``max_users``."""
        users, _ = sample.split_edges("valid", domain)
        if not len(users):
            return None
        cases = SampledCases.of(sample, domain, "valid", VALID_NEGATIVES, seed=seed, max_users=max_users)
        return cls(cases, domain, sampler, source, device)

    @torch.no_grad()
    def __call__(self, model: MigrationGNN) -> dict[str, float]:
        self.source.seed(VALID_SEED)
        result = self.cases.metrics(neighbourhood_scorer(model, self.sampler, self.domain, self.device), ks=(10,))
        return {METRIC: result["ndcg@10"], "valid_hr@10": result["hr@10"]}


def _representations(model: MigrationGNN, sampler: EdgeBatchSampler, seeds: dict[str, np.ndarray], domain: str,
                     device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(users' scoring vectors, items' vectors) of ``seeds``, in their order."""
    input_nodes, layers = sampler.neighbourhood(seeds, exclude={})
    batch = MiniBatch(input_nodes, layers).to(device)
    final, source_message = model.propagate(batch.input_nodes, batch.layers)
    users = model.user_representation(final[USER], source_message, domain) if USER in final else None
    items = final.get(item_type(domain))
    return users, items


def neighbourhood_scorer(model: MigrationGNN, sampler: EdgeBatchSampler, domain: str,
                         device: torch.device) -> Callable[[np.ndarray, torch.Tensor], torch.Tensor]:
    """A :data:`Scorer` whose vectors come from sampled neighbourhoods; item vectors
    are kept for the scorer's life (the cases' items recur across chunks)."""
    cached_ids = np.zeros(0, np.int64)
    cached = torch.zeros(0, device=device)

    def item_vectors(items: np.ndarray) -> torch.Tensor:
        nonlocal cached_ids, cached
        missing = np.setdiff1d(items, cached_ids)
        for begin in range(0, len(missing), VALID_CHUNK):
            ids = missing[begin:begin + VALID_CHUNK]
            _, vectors = _representations(model, sampler, {item_type(domain): ids}, domain, device)
            order = np.argsort(np.concatenate([cached_ids, ids]), kind="stable")
            cached_ids = np.concatenate([cached_ids, ids])[order]
            cached = (torch.cat([cached, vectors]) if len(cached) else vectors)[torch.from_numpy(order).to(device)]
        return cached[torch.from_numpy(np.searchsorted(cached_ids, items)).to(device)]

    def score(users: np.ndarray, columns) -> torch.Tensor:
        items = np.asarray(columns.cpu() if torch.is_tensor(columns) else columns, dtype=np.int64)
        rows = []
        for begin in range(0, len(users), VALID_CHUNK):
            vectors, _ = _representations(model, sampler, {USER: users[begin:begin + VALID_CHUNK]}, domain, device)
            rows.append(vectors)
        return (torch.cat(rows) @ item_vectors(items).T).cpu()

    return score


def best_epoch(history: list[dict]) -> Optional[int]:
    """The epoch with the highest valid NDCG@10 (the earliest on ties); None if unvalidated."""
    scored = [(m[METRIC], -m["epoch"]) for m in history if METRIC in m]
    return -max(scored)[1] if scored else None


def should_stop(history: list[dict], patience: int) -> bool:
    best = best_epoch(history)
    return patience > 0 and best is not None and history[-1]["epoch"] - best >= patience


# Why training ended, recorded on the last epoch's metrics ("stopped").
STOP_EPOCHS, STOP_PATIENCE, STOP_TIME = "epochs", "early_stopping", "time_budget"


def stop_reason(history: list[dict], config: TrainConfig, seconds_so_far: float, epochs_run: int) -> Optional[str]:
    """Whether to end after the newest epoch of ``history``, and why (None: go on).
    ``seconds_so_far`` over ``epochs_run`` epochs: this process's training time; the
    next epoch is expected to last their mean."""
    if history[-1]["epoch"] + 1 >= config.epochs:
        return STOP_EPOCHS
    if should_stop(history, config.patience):
        return STOP_PATIENCE
    if config.time_budget_s is not None and seconds_so_far * (1 + 1 / max(epochs_run, 1)) > config.time_budget_s:
        return STOP_TIME
    return None


def learning_rate_at(config: TrainConfig, epoch: int) -> float:
    if config.lr_schedule == "constant":
        return config.learning_rate
    return config.learning_rate * 0.5 * (1.0 + math.cos(math.pi * epoch / config.epochs))
