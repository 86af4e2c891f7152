"""Seeded 64-bit hashes of integer ids (splitmix64's finaliser).

Draws made from a hash of (seed, id) rather than from a generator's stream do not
depend on how the ids are batched, ordered or spread over tasks: a sample by the
smallest hashes, or a case's sampled negatives, come out the same in one process
and in many.
"""

from __future__ import annotations

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser of uint64 values (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        x = np.asarray(x, dtype=np.uint64)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def hash_ids(ids: np.ndarray, *salt: int) -> np.ndarray:
    """uint64 hash of every id under the integers ``salt`` (a seed, a purpose...)."""
    with np.errstate(over="ignore"):
        x = np.asarray(ids).astype(np.uint64)
        for s in salt:
            x = mix64(x + np.uint64(int(s) & 0xFFFFFFFFFFFFFFFF) * _GOLDEN)
        return mix64(x + _GOLDEN)
