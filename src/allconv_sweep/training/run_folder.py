"""A run folder's lifecycle: where a run resumes from (a damaged last.ckpt set aside), starting it over,
run.json at the start, and undoing a start that failed before training."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Optional

import torch

from allconv_sweep import runs


def readable_checkpoint(path: Path) -> Optional[int]:
    """The epoch a checkpoint was saved at, or None when it cannot be read (truncated, not a checkpoint)."""
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        return int(ck["epoch"]) if isinstance(ck, dict) and "state_dict" in ck and "epoch" in ck else None
    except Exception:  # noqa: BLE001 - any failure means "cannot resume from it"
        return None


def resume_point(output_dir: Path) -> tuple[Optional[Path], Optional[str]]:
    """(checkpoint to resume from, a note when it is not last.ckpt). A damaged last.ckpt is set aside and
    the run resumes from best.ckpt (a full training state of an earlier epoch) or, failing that, starts
    over; it never stays failed for good."""
    ckpt_dir = output_dir / "checkpoints"
    last = ckpt_dir / "last.ckpt"
    if not last.is_file():
        return None, None
    if readable_checkpoint(last) is not None:
        return last, None
    aside = output_dir / "last.ckpt.unreadable"  # outside checkpoints/, which a fresh start clears
    os.replace(last, aside)
    best = ckpt_dir / "best.ckpt"
    epoch = readable_checkpoint(best) if best.is_file() else None
    if epoch is not None:
        return best, f"checkpoints/last.ckpt is unreadable (kept as {aside.name}): resuming from best.ckpt (epoch {epoch + 1})"
    return None, f"checkpoints/last.ckpt is unreadable (kept as {aside.name}) and no earlier checkpoint: starting over"


def clear(output_dir: Path) -> None:
    """Start a run folder over (resume=false, or a re-run with nothing to resume): the old record,
    checkpoints and CSV log go, so nothing of the old run can be mistaken for the new one's."""
    for name in (runs.METRICS_FILE, runs.RUN_FILE):
        (output_dir / name).unlink(missing_ok=True)
    for name in ("checkpoints", "csv", "tensorboard"):
        shutil.rmtree(output_dir / name, ignore_errors=True)


def read_bytes(path: Path) -> Optional[bytes]:
    try:
        return path.read_bytes()
    except OSError:
        return None


def undo_failed_start(output_dir: Path, run_json_before: Optional[bytes]) -> None:
    """A start that wrote run.json and then failed before training (missing data, a Trainer argument
    Lightning refuses) leaves no run.json: a folder with one but neither a result (metrics.json) nor a
    checkpoint to resume would look like a run. A folder with either is a run, and stays as it is."""
    run_json = output_dir / runs.RUN_FILE
    if read_bytes(run_json) == run_json_before:  # this start did not get as far as writing it
        return
    if (output_dir / runs.METRICS_FILE).exists() or any((output_dir / "checkpoints").glob("*.ckpt")):
        return
    clear(output_dir)  # what this start wrote (run.json, the loggers' folders); an older run was cleared already


def start(output_dir: Path, key: str, ident: dict, resuming: bool, overrides: list[str]) -> dict:
    """run.json: written when a run starts; a resume keeps its W&B run id (one W&B run per run folder)."""
    info = runs.read_run_info(output_dir) if resuming else None
    if not info or info.get("result_key") != key:
        import secrets
        info = {"result_key": key, "identity": ident, "overrides": overrides, "started": time.time(),
                "wandb_run_id": secrets.token_hex(8), "starts": 0}
    info["starts"] = int(info.get("starts", 0)) + 1
    runs.write_json(output_dir / runs.RUN_FILE, info)
    return info
