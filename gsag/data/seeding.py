"""Deterministic DataLoader workers.

The gsag transforms draw all their randomness from torch's global generator, which a DataLoader
seeds in each worker as `base_seed + worker_id`, where `base_seed` comes from the loader's
`generator`. So `DataLoader(..., generator=worker_generator(seed))` alone makes the augmentation
stream reproducible; `seed_worker` additionally seeds `random` and NumPy in each worker for
user transforms that use them.
"""

from __future__ import annotations

import random

import numpy as np
import torch


def worker_generator(seed: int) -> torch.Generator:
    """A `torch.Generator` seeded with `seed`, for `DataLoader(generator=...)`."""
    generator = torch.Generator()
    generator.manual_seed(seed)
    return generator


def seed_worker(worker_id: int) -> None:
    """`worker_init_fn`: seed `random` and NumPy from the worker's torch seed."""
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)
