"""Checkpoints written whole or not at all under their real names (a Trainer plugin, train.py).

Lightning's TorchCheckpointIO writes through fsspec, which stages the file in the system's temp folder and
moves it into place: across file systems that move is a copy into checkpoints/best.ckpt itself, and a full
disk leaves a truncated best.ckpt or last.ckpt, under its real name, in place of the good one. Here the
checkpoint goes to a hidden temporary name in its own folder and is renamed over the real name only when
it is whole and on disk (allconv_sweep.atomic.atomic_write); its mode is the umask's, as every file's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from allconv_sweep.atomic import atomic_write


class AtomicCheckpointIO(TorchCheckpointIO):
    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Optional[Any] = None) -> None:
        if storage_options is not None or "://" in str(path):  # remote storage: Lightning's own way
            return super().save_checkpoint(checkpoint, path, storage_options)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(path) as f:
            torch.save(checkpoint, f)
