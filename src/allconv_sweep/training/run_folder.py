"""A run folder's lifecycle: resume point, start over, run.json, undoing a failed start, whole checkpoints."""

import os
import secrets
import shutil
import time
from contextlib import suppress
from pathlib import Path
from typing import Any, Optional

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from allconv_sweep import runs
from allconv_sweep.atomic import atomic_write


def readable_checkpoint(path: Path) -> Optional[int]:
    """The epoch a checkpoint was saved at, or None when it cannot be read (truncated, not a checkpoint)."""
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        return int(ck["epoch"]) if isinstance(ck, dict) and "state_dict" in ck and "epoch" in ck else None
    except Exception:  # noqa: BLE001 - any failure means "cannot resume from it"
        return None


def resume_point(output_dir: Path) -> tuple[Optional[Path], Optional[str]]:
    """(checkpoint to resume from, a note when it is not last.ckpt). A damaged last.ckpt is set aside: the run
    resumes from best.ckpt (a full training state too) or starts over, never stays failed for good."""
    last = output_dir / "checkpoints" / "last.ckpt"
    if not last.is_file():
        return None, None
    if readable_checkpoint(last) is not None:
        return last, None
    aside = output_dir / "last.ckpt.unreadable"  # outside checkpoints/, which a fresh start clears
    os.replace(last, aside)
    best = last.with_name("best.ckpt")
    epoch = readable_checkpoint(best) if best.is_file() else None
    if epoch is not None:
        return best, (f"checkpoints/last.ckpt is unreadable (kept as {aside.name}): resuming from best.ckpt "
                      f"(epoch {epoch + 1})")
    return None, f"checkpoints/last.ckpt is unreadable (kept as {aside.name}) and no earlier checkpoint: starting over"


def clear(output_dir: Path) -> None:
    """Start a run folder over: nothing of the old run (record, checkpoints, logs) stays to be mistaken."""
    for name in (runs.METRICS_FILE, runs.RUN_FILE):
        (output_dir / name).unlink(missing_ok=True)
    for name in ("checkpoints", "csv", "tensorboard"):
        shutil.rmtree(output_dir / name, ignore_errors=True)


def read_bytes(path: Path) -> Optional[bytes]:
    with suppress(OSError):
        return path.read_bytes()
    return None


def undo_failed_start(output_dir: Path, run_json_before: Optional[bytes]) -> None:
    """A start that failed before training leaves no run.json, unless the folder has a result or checkpoint."""
    if read_bytes(output_dir / runs.RUN_FILE) == run_json_before:  # this start did not get as far as writing it
        return
    if not (output_dir / runs.METRICS_FILE).exists() and not any((output_dir / "checkpoints").glob("*.ckpt")):
        clear(output_dir)  # what this start wrote; an older run was cleared already


def start(output_dir: Path, key: str, ident: dict, resuming: bool, overrides: list[str]) -> dict:
    """run.json: written when a run starts; a resume keeps its W&B run id (one W&B run per run folder)."""
    info = runs.read_run_info(output_dir) if resuming else None
    if not info or info.get("result_key") != key:
        info = {"result_key": key, "identity": ident, "overrides": overrides, "started": time.time(),
                "wandb_run_id": secrets.token_hex(8), "starts": 0}
    info["starts"] = int(info.get("starts", 0)) + 1
    runs.write_json(output_dir / runs.RUN_FILE, info)
    return info


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints written whole (atomic_write): Lightning's stage in the temp folder and move, a copy that a
    full disk leaves truncated across file systems."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Optional[Any] = None) -> None:
        if storage_options is not None or "://" in str(path):  # remote storage: Lightning's own way
            return super().save_checkpoint(checkpoint, path, storage_options)
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(path) as f:
            torch.save(checkpoint, f)
