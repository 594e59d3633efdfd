"""What a run was. A run folder holds run.json (written at the start: result key, identity, overrides, W&B
run id, kept across resumes) and metrics.json (at the end: the RunRecord); a sweep folder holds sweep.json, the
manifest of its planned jobs. Also the versions and commit that made a run."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional

from allconv_sweep.runs.files import Unreadable, read_json, write_json

METRICS_FILE = "metrics.json"
RUN_FILE = "run.json"
MANIFEST = "sweep.json"
LOCK_FILE = ".lock"

# What a run folder's metrics.json can say. ok and diverged are results (the sweep skips them);
# failed (a crash) and interrupted (a signal; last.ckpt kept) are re-run, resuming where they can.
FINISHED = ("ok", "diverged")
STATUSES = ("ok", "diverged", "failed", "interrupted")
# The report's view adds a job the sweep planned that left no metrics.json.
REPORT_STATUSES = STATUSES + ("missing",)
# RunRecord fields that a run's config says: {field: (config key, type)}
CONFIG_FIELDS = {"model": ("model.name", str), "family": ("model.family", str), "variant": ("model.variant", str),
                 "data": ("data.name", str), "augment": ("augment.name", str), "lr": ("optimizer.lr", float),
                 "seed": ("seed", int)}


@dataclass
class RunRecord:
    """One run: what metrics.json holds, what the sweep plans (status "missing" until it ran), what the
    report reads. Accuracies and errors are fractions; *_error = 1 - *_acc."""
    status: str
    reason: Optional[str] = None
    result_key: Optional[str] = None
    model: Optional[str] = None
    family: Optional[str] = None
    variant: Optional[str] = None
    data: Optional[str] = None
    preprocess: Optional[str] = None
    augment: Optional[str] = None
    lr: Optional[float] = None
    seed: Optional[int] = None
    batch_size: Optional[int] = None
    num_params: Optional[int] = None
    epochs_run: Optional[int] = None
    max_epochs: Optional[int] = None
    steps_per_epoch: Optional[int] = None     # optimizer steps per epoch, as the lr schedule counted them
    lr_drop_epochs: Optional[list[int]] = None  # 1-based epochs that started at a lower lr (the schedule's drops)
    train_size: Optional[int] = None          # images per split: what the result was fitted on
    val_size: Optional[int] = None
    test_size: Optional[int] = None
    images_seen: Optional[int] = None         # training images over the whole run (all ranks)
    train_acc: Optional[float] = None         # the last epoch's, in training mode (dropout on)
    train_error: Optional[float] = None
    val_acc: Optional[float] = None           # the final model's
    val_error: Optional[float] = None
    test_acc: Optional[float] = None          # the final model's: the reported number
    test_error: Optional[float] = None
    best_val_test_acc: Optional[float] = None  # the best-validation checkpoint's test accuracy
    best_val_test_error: Optional[float] = None
    val_acc_top5: Optional[float] = None
    test_acc_top5: Optional[float] = None
    val_live_fraction: Optional[float] = None  # validation images with any class score > 0, final model
    wall_time_s: Optional[float] = None       # over all starts of a resumed run (to its checkpoint, or signal)
    wall_time_this_start_s: Optional[float] = None  # the start that wrote this record
    train_images_per_s: Optional[float] = None
    world_size: Optional[int] = None          # batch_size is per device: global batch = batch_size x world_size
    resumed_from: Optional[str] = None
    output_dir: Optional[str] = None
    overrides: list[str] = field(default_factory=list)
    device: Optional[str] = None
    precision: Optional[str] = None           # what ran (Lightning runs 16-mixed as bf16-mixed on a CPU)
    precision_requested: Optional[str] = None
    precision_reason: Optional[str] = None    # why (trainer.precision=auto: the hardware's native bf16 or not)
    cpu: Optional[str] = None                 # the CPU's model and its speed-relevant flags (CPU runs)
    slurm_job_id: Optional[str] = None
    wandb_run_id: Optional[str] = None
    versions: dict[str, str] = field(default_factory=dict)
    git_commit: Optional[str] = None

    def __post_init__(self) -> None:
        if self.status not in REPORT_STATUSES:
            raise ValueError(f"status {self.status!r}; valid: {', '.join(REPORT_STATUSES)}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def write_record(run_dir: str | Path, record: RunRecord) -> Path:
    if record.status not in STATUSES:
        raise ValueError(f"a run's {METRICS_FILE} cannot say {record.status!r}")
    return write_json(Path(run_dir) / METRICS_FILE, record.to_dict())


def read_record(run_dir: str | Path) -> Optional[RunRecord]:
    """The run's RunRecord; None when it has none; Unreadable when metrics.json is damaged. Tolerant of records of
    earlier versions: unknown keys are ignored, missing ones are None."""
    data = read_json(Path(run_dir) / METRICS_FILE)
    if data is None:
        return None
    kwargs = {k: v for k, v in data.items() if k in RunRecord.__dataclass_fields__}
    if kwargs.get("status") not in REPORT_STATUSES:
        kwargs.update(status="failed", reason=f"unknown status {data.get('status')!r} in {METRICS_FILE}")
    return RunRecord(**kwargs)


def read_run_info(run_dir: str | Path) -> Optional[dict[str, Any]]:
    """run.json, or None when absent or damaged (then the run's config is unknown)."""
    try:
        return read_json(Path(run_dir) / RUN_FILE)
    except Unreadable:
        return None


def read_manifest(sweep_dir: str | Path) -> dict[str, Any]:
    try:
        return read_json(Path(sweep_dir) / MANIFEST) or {}
    except Unreadable:
        return {}


def write_manifest(sweep_dir: str | Path, name: str, jobs: Iterable[tuple[str, RunRecord]]) -> Path:
    """sweep.json: every job any run of this sweep folder planned, as {subdir: planned RunRecord}
    (merged: a seeds or final sweep adds its jobs to the folder of the sweep it extends)."""
    data = read_manifest(sweep_dir)
    data["name"] = data.get("name") or name
    planned = data.setdefault("jobs", {})
    for subdir, record in jobs:
        planned[subdir] = {k: v for k, v in record.to_dict().items() if v not in (None, [], {})}
    return write_json(Path(sweep_dir) / MANIFEST, data)


def versions() -> dict[str, str]:
    import hydra
    import lightning
    import torch
    import torchvision
    return {"python": sys.version.split()[0], "torch": torch.__version__, "torchvision": torchvision.__version__,
            "lightning": lightning.__version__, "hydra": hydra.__version__}


def git_commit() -> Optional[str]:
    """HEAD's full hash, with -dirty when tracked files differ from it (tags excluded: always the hash)."""
    try:
        sha = subprocess.run(["git", "describe", "--always", "--dirty", "--abbrev=40", "--exclude=*"],
                             cwd=Path(__file__).resolve().parent, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return sha.stdout.strip() if sha.returncode == 0 else None
