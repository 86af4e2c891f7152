"""The popularity baseline: rank a domain's items by training interactions."""

from __future__ import annotations

import numpy as np

from graphtrain.data.dataset import Dataset


def item_popularity(dataset: Dataset, domain: str) -> np.ndarray:
    """Training interaction count of every item of ``domain`` (float32)."""
    _, items = dataset.split_edges("train", domain)
    return np.bincount(items, minlength=dataset.num_items(domain)).astype(np.float32)
