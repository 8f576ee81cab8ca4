"""The order and the augmentation seeds of the training samples.

Iteration `it` uses samples `it*B .. (it+1)*B - 1` of one endless stream (B = `train.batch_size`,
the total batch), where the stream is a fresh seeded permutation of the dataset every epoch and
each sample's augmentation is seeded by its stream position. So the images of every optimizer
step are the same for 1 or N processes, any `accum_steps` and any number of loader workers, and a
resumed run picks the stream up exactly where it stopped.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from gsag.data.base import SegmentationDataset


class StreamSampler(Sampler):
    """This process's share of the training stream, from iteration `start` to `iters`.

    Yields `(dataset index, stream position)` pairs; see the module docstring.
    """

    def __init__(
        self,
        length: int,
        batch_size: int,
        micro: int,
        accum_steps: int,
        rank: int,
        world_size: int,
        seed: int,
        start: int,
        iters: int,
    ) -> None:
        self.length, self.batch_size, self.micro = length, batch_size, micro
        self.accum_steps, self.rank, self.world_size = accum_steps, rank, world_size
        self.seed, self.start, self.iters = seed, start, iters
        self._perm: tuple[int, list[int]] | None = None

    def _index(self, pos: int) -> int:
        epoch = pos // self.length
        if self._perm is None or self._perm[0] != epoch:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._perm = (epoch, torch.randperm(self.length, generator=g).tolist())
        return self._perm[1][pos % self.length]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        for it in range(self.start, self.iters):
            for a in range(self.accum_steps):
                first = it * self.batch_size + (a * self.world_size + self.rank) * self.micro
                for pos in range(first, first + self.micro):
                    yield self._index(pos), pos

    def __len__(self) -> int:
        return (self.iters - self.start) * self.accum_steps * self.micro


class SeededSamples(Dataset):
    """Wraps a dataset so that sample `(index, position)` is augmented with a seed derived from
    its stream position, independent of workers, processes and resumption. The global RNG
    states of the calling process are left as they were."""

    def __init__(self, dataset: SegmentationDataset, seed: int) -> None:
        self.dataset = dataset
        self.seed = seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> Any:
        index, pos = key
        s = (self.seed * 1_000_003 + pos * 7_919 + 12_345) % (2**63)
        py_state, np_state = random.getstate(), np.random.get_state()
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(s)
            random.seed(s)
            np.random.seed(s % 2**32)
            try:
                return self.dataset[index]
            finally:
                random.setstate(py_state)
                np.random.set_state(np_state)


def stream_loader(
    dataset: SegmentationDataset,
    *,
    batch_size: int,
    micro: int,
    accum_steps: int,
    rank: int,
    world_size: int,
    seed: int,
    start: int,
    iters: int,
    num_workers: int,
    pin_memory: bool,
) -> DataLoader:
    """Micro-batches of `micro` samples of this process's share of the stream, from `start`.

    It draws nothing from the global generators, so it may be built before restoring them.
    """
    sampler = StreamSampler(
        len(dataset), batch_size, micro, accum_steps, rank, world_size, seed, start, iters
    )
    return DataLoader(
        SeededSamples(dataset, seed),
        batch_size=micro,
        sampler=sampler,
        num_workers=num_workers,
        pin_memory=pin_memory,
        generator=torch.Generator(),
        persistent_workers=False,
    )


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators (model initialisation, dropout)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
