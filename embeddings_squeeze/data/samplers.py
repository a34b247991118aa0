"""The order of training batches: seeded per epoch, sharded across processes without padding."""

from __future__ import annotations

import torch
from torch.utils.data import (
    Sampler,
)


class EpochShuffleSampler(Sampler[int]):
    """A new random order each epoch, drawn from (seed, epoch) alone.

    The order never depends on what ran before, so a run resumed at epoch k sees exactly the
    batches an uninterrupted run would. Lightning calls ``set_epoch`` before every epoch.
    """

    def __init__(self, length: int, seed: int):
        self.length, self.seed, self.epoch = length, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.length

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return iter(torch.randperm(self.length, generator=generator).tolist())


class ShardedEpochShuffleSampler(EpochShuffleSampler):
    """One process's share of ``EpochShuffleSampler``'s order under DDP.

    With W processes of batch B, global batch k holds the images of batch k of a single process
    at batch W x B, and process r takes its r-th slice: a DDP run trains on the batches of one
    process at the same global batch. The order is padded with its first images to a multiple of
    W (as ``DistributedSampler`` pads), so every process runs the same number of steps.
    """

    def __init__(self, length: int, seed: int, rank: int, world_size: int, batch_size: int):
        super().__init__(length, seed)
        self.rank, self.world_size, self.batch_size = rank, world_size, batch_size

    def __len__(self) -> int:
        return -(-self.length // self.world_size)

    def __iter__(self):
        order = list(super().__iter__())
        order += (order * self.world_size)[: -len(order) % self.world_size]
        global_batch = self.batch_size * self.world_size
        mine = []
        for start in range(0, len(order), global_batch):
            chunk = order[start : start + global_batch]
            share = len(chunk) // self.world_size
            mine += chunk[self.rank * share : (self.rank + 1) * share]
        return iter(mine)


class UnpaddedDistributedSampler(Sampler[int]):
    """Every image exactly once across processes (rank r takes r, r + world, ...).

    ``DistributedSampler`` pads the split with repeated images to even the shards, which would
    count those images twice in validation and test metrics.
    """

    def __init__(self, length: int, rank: int, world_size: int):
        self.indices = list(range(rank, length, world_size))

    def __len__(self) -> int:
        return len(self.indices)

    def __iter__(self):
        return iter(self.indices)
