"""Batches sliced from tensors that already live on the training device (airbench-style).

No workers, no collation, no host-to-device copies: each epoch is one permutation (on the device) and
``len(data) / batch_size`` index operations. Lightning accepts any sized iterable as a dataloader.
"""

from __future__ import annotations

import torch


class TensorBatches:
    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, shuffle: bool,
                 seed: int = 0, drop_last: bool = False):
        assert len(x) == len(y)
        self.x, self.y = x, y
        self.batch_size, self.shuffle, self.seed, self.drop_last = batch_size, shuffle, seed, drop_last
        self.epoch = 0

    def __len__(self) -> int:
        n = len(self.x)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self):
        n = len(self.x)
        if self.shuffle:
            # seeded by (seed, epoch): a resumed run sees the same order it would have seen
            g = torch.Generator().manual_seed(self.seed * 100003 + self.epoch)
            order = torch.randperm(n, generator=g).to(self.x.device)
        else:
            order = None
        self.epoch += 1
        for i in range(len(self)):
            if order is None:
                sl = slice(i * self.batch_size, (i + 1) * self.batch_size)
                yield self.x[sl], self.y[sl]
            else:
                idx = order[i * self.batch_size:(i + 1) * self.batch_size]
                yield self.x[idx], self.y[idx]
