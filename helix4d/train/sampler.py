"""Deterministic data order: which samples form global batch number `step`, and which of them this rank takes.

The order depends only on (seed, epoch), never on the number of processes or on when the run was (re)started:
epoch e is a fixed permutation of the dataset, cut into global batches (an incomplete last batch is dropped),
and rank r takes the r-th contiguous slice of each global batch. Hence N processes together see exactly the
samples one process would see, and a resumed run continues at step s by computing, not replaying, the order.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import numpy as np
import torch

from helix4d.errors import ConfigError


def mix_seed(*parts: int) -> int:
    """A well-mixed 63-bit seed from several non-negative integers, e.g. (seed, step, rank)."""
    return int(np.random.SeedSequence(list(parts)).generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


class GlobalBatchSampler:
    """Batch sampler for `DataLoader(batch_sampler=...)`: yields this rank's indices of global batches
    `start_step`, `start_step + 1`, ... without end (the training loop decides when to stop)."""

    def __init__(
        self, num_samples: int, global_batch: int, rank: int, world_size: int, seed: int, start_step: int = 0
    ) -> None:
        if global_batch % world_size:
            raise ConfigError(f"batch_size {global_batch} must be divisible by the number of processes {world_size}")
        if num_samples < global_batch:
            raise ConfigError(f"the dataset has {num_samples} samples, fewer than batch_size {global_batch}")
        self.num_samples, self.global_batch, self.seed = num_samples, global_batch, seed
        self.per_rank = global_batch // world_size
        self.rank, self.start_step = rank, start_step
        self.steps_per_epoch = num_samples // global_batch
        self._cached_epoch, self._cached_order = -1, torch.empty(0, dtype=torch.long)

    def position(self, step: int) -> tuple[int, int]:
        """(epoch, batch index within the epoch) of global batch `step`."""
        return divmod(step, self.steps_per_epoch)

    def epoch_order(self, epoch: int) -> torch.Tensor:
        """The permutation of all sample indices used in `epoch` (the last one is cached).  # (num_samples,)"""
        if self._cached_epoch != epoch:
            generator = torch.Generator().manual_seed(mix_seed(self.seed, epoch))
            self._cached_epoch, self._cached_order = epoch, torch.randperm(self.num_samples, generator=generator)
        return self._cached_order

    def global_batch_indices(self, step: int) -> list[int]:
        """All indices of global batch `step`, in rank order."""
        epoch, i = self.position(step)
        return self.epoch_order(epoch)[i * self.global_batch : (i + 1) * self.global_batch].tolist()

    def __iter__(self) -> Iterator[list[int]]:
        first = self.rank * self.per_rank
        for step in itertools.count(self.start_step):
            yield self.global_batch_indices(step)[first : first + self.per_rank]
