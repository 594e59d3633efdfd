"""Batches sliced from tensors that already live on the training device (airbench-style): no workers, no
collation, no host-to-device copies; each epoch is one permutation and ``len(data) / batch_size`` slices."""

from __future__ import annotations

import torch


class TensorBatches:
    """(x, y) batches of ``batch_size``, in a fresh order each epoch (``shuffle``), else in order; a sized
    iterable, which Lightning accepts as a dataloader.

    The order of epoch ``e`` is ``randperm`` from a CPU generator seeded by (seed, e): the same on every
    device, and after a resume, because Lightning calls ``sampler.set_epoch(e)`` before each epoch. Used
    outside Lightning, each ``iter()`` moves on to the next epoch.
    """

    batch_sampler = None  # what Lightning looks for next to ``sampler``: none

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, shuffle: bool,
                 seed: int = 0, drop_last: bool = False):
        assert len(x) == len(y)
        self.x, self.y = x, y
        self.batch_size, self.shuffle, self.seed, self.drop_last = batch_size, shuffle, seed, drop_last
        self.epoch = 0

    @property
    def sampler(self) -> TensorBatches:
        return self

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        n = len(self.x)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def order(self, epoch: int) -> torch.Tensor:
        """The permutation of epoch ``epoch`` (on the CPU)."""
        return torch.randperm(len(self.x), generator=torch.Generator().manual_seed(self.seed * 100003 + epoch))

    def __iter__(self):
        # non_blocking: no host sync on a GPU (a pageable source is staged before the call returns)
        order = self.order(self.epoch).to(self.x.device, non_blocking=True) if self.shuffle else None
        self.epoch += 1
        for i in range(len(self)):
            idx = slice(i * self.batch_size, (i + 1) * self.batch_size)
            idx = idx if order is None else order[idx]
            yield self.x[idx], self.y[idx]
