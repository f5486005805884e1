"""The training loop's sample order: deterministic, resumable and sharded by rank."""

from __future__ import annotations

import torch


class StepSampler(torch.utils.data.Sampler):
    """Deterministic, resumable, rank-sharded order of sample indices.

    Epoch ``e`` is a permutation drawn from ``seed + e``; rank ``r`` of ``world``
    takes every ``world``-th index. ``start`` skips the first batches of the
    first epoch yielded, so a resumed run sees exactly the data it would have.
    """

    def __init__(self, size: int, batch_size: int, *, seed: int = 0, rank: int = 0,
                 world: int = 1, shuffle: bool = True) -> None:
        self.size, self.batch_size = size, batch_size
        self.seed, self.rank, self.world, self.shuffle = seed, rank, world, shuffle
        self.epoch, self.start_batch = 0, 0

    @property
    def batches_per_epoch(self) -> int:
        return max(1, (self.size // self.world) // self.batch_size)

    def set_position(self, epoch: int, batch: int) -> None:
        self.epoch, self.start_batch = epoch, batch

    def __len__(self) -> int:
        return (self.batches_per_epoch - self.start_batch) * self.batch_size

    def __iter__(self):
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.size, generator=g)
        else:
            order = torch.arange(self.size)
        mine = order[self.rank::self.world][: self.batches_per_epoch * self.batch_size]
        return iter(mine[self.start_batch * self.batch_size:].tolist())
