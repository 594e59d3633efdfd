"""Augmentation of whole batches on whatever device they live on (no per-image Python work)."""

from __future__ import annotations

import torch


def flip_translate(x: torch.Tensor, max_shift: int = 5, flip: bool = True,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """Random horizontal flip (p=0.5) and translation by up to ``max_shift`` pixels in x and y, each drawn
    uniformly from {-max_shift..max_shift}, the uncovered border filled with zeros (the data's mean after
    whitening). One gather for the whole batch."""
    (n, c, h, w), dev, s = x.shape, x.device, max_shift
    # drawn on the CPU (the same stream on every device); non_blocking: no host sync per batch on a GPU
    shifts = torch.randint(-s, s + 1, (2, n), device="cpu", generator=generator).to(dev, non_blocking=True)
    padded = torch.nn.functional.pad(x, (s, s, s, s))
    rows = torch.arange(h, device=dev)[None, :] + s - shifts[0][:, None]            # (n, h)
    cols = torch.arange(w, device=dev)[None, :] + s - shifts[1][:, None]            # (n, w)
    if flip:
        do_flip = (torch.rand(n, generator=generator) < 0.5).to(dev, non_blocking=True)
        cols = torch.where(do_flip[:, None], cols.flip(1), cols)
    idx_n = torch.arange(n, device=dev)[:, None, None, None]
    idx_c = torch.arange(c, device=dev)[None, :, None, None]
    return padded[idx_n, idx_c, rows[:, None, :, None], cols[:, None, None, :]]
