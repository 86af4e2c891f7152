"""The popularity baseline: rank a domain's items by training interactions."""

from __future__ import annotations

import numpy as np
import torch

from graphtrain.data.dataset import Dataset


def popularity_prior(counts: torch.Tensor) -> torch.Tensor:
    """Item bias to start training from: log(1 + training interactions), so a model
    begins at the popularity ranking and learns the personal part on top of it."""
    return torch.log1p(counts.to(torch.float32))


def item_popularity(dataset: Dataset, domain: str) -> np.ndarray:
    """Training interaction count of every item of ``domain`` (float32)."""
    _, items = dataset.split_edges("train", domain)
    return np.bincount(items, minlength=dataset.num_items(domain)).astype(np.float32)
