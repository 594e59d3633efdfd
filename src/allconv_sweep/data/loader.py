"""Batches sliced from tensors that already live on the training device (airbench-style).

No workers, no collation, no host-to-device copies of images: each epoch is one permutation and
``len(data) / batch_size`` index operations on the device. Lightning accepts any sized iterable as a
dataloader.
"""

from __future__ import annotations

import torch


class TensorBatches:
    """(x, y) batches of ``batch_size`` in a fresh order each epoch (``shuffle``), else in order.

    The order of epoch ``e`` is ``randperm`` from a CPU generator seeded by (seed, e): the same on every
    device, and the same after a resume, because Lightning calls ``set_epoch(e)`` before each epoch
    (through the ``sampler`` attribute, as it does for a DataLoader's sampler). Used outside Lightning,
    each ``iter()`` moves on to the next epoch.
    """

    batch_sampler = None  # what Lightning looks for next to ``sampler``: none

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, shuffle: bool,
                 seed: int = 0, drop_last: bool = False):
        assert len(x) == len(y)
        self.x, self.y = x, y
        self.batch_size, self.shuffle, self.seed, self.drop_last = batch_size, shuffle, seed, drop_last
        self.epoch = 0

    @property
    def sampler(self) -> "TensorBatches":
        return self  # lightning's _set_sampler_epoch calls dataloader.sampler.set_epoch(epoch)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        n = len(self.x)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def order(self, epoch: int) -> torch.Tensor:
        """The permutation of epoch ``epoch`` (on the CPU)."""
        g = torch.Generator().manual_seed(self.seed * 100003 + epoch)
        return torch.randperm(len(self.x), generator=g)

    def __iter__(self):
        order = None
        if self.shuffle:
            # non_blocking: no host sync on a GPU (a pageable source is staged before the call returns)
            order = self.order(self.epoch).to(self.x.device, non_blocking=True)
        self.epoch += 1
        for i in range(len(self)):
            if order is None:
                sl = slice(i * self.batch_size, (i + 1) * self.batch_size)
                yield self.x[sl], self.y[sl]
            else:
                idx = order[i * self.batch_size:(i + 1) * self.batch_size]
                yield self.x[idx], self.y[idx]
