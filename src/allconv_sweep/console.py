"""What a researcher sees: a line per sweep job, a summary table (the config: training/config_view.py)."""

import logging
import os
import time
import warnings
from typing import Any

from rich.console import Console
from rich.table import Table

console = Console(stderr=False, highlight=False)
# set by the sweeper for its jobs: where each job is in the sweep, for "job k of n" and the ETA
SWEEP_START, SWEEP_JOBS = "ALLCONV_SWEEP_START", "ALLCONV_SWEEP_JOBS"


def quiet_lightning(level: int | None = None) -> None:
    """Lightning's advice that does not apply here hidden, its lines printed once; level: its info lines too."""
    messages = [".*does not have many workers.*", ".*is a sized iterable.*", ".*The number of training batches.*",
                ".*treespec, LeafSpec.*"]
    if os.environ.get("SLURM_NTASKS", "1") == "1":  # srun matters only for several tasks in one SLURM job
        messages.append(".*The `srun` command is available on your system but is not used.*")
    for message in messages:
        warnings.filterwarnings("ignore", message=message)
    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).propagate = False
        if level is not None:
            logging.getLogger(name).setLevel(level)


def print_job(overrides: list[str], job: int) -> None:
    """A sweep's job: one line, "job k of n", and from k=2 an ETA."""
    total, start = os.environ.get(SWEEP_JOBS), os.environ.get(SWEEP_START)
    eta = ""
    if total and start and job > 0:
        per_job = (time.time() - float(start)) / job
        eta = f"; sweep ends in ~{_duration(per_job * (int(total) - job))} (at {per_job / 60:.1f} min a job)"
    shown = " ".join(o for o in overrides if not o.startswith("hydra.")) or "(defaults)"
    console.print(f"[bold]job {job + 1}{f' of {total}' if total else ''}[/bold]: {shown}{eta}", soft_wrap=True)


def _duration(seconds: float) -> str:
    return (f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min" if seconds < 5400
            else f"{seconds / 3600:.1f} h")


def print_summary(m: dict[str, Any]) -> None:
    def pct(v: Any) -> str:
        return "-" if v is None else f"{100 * v:.2f}%"

    colour = {"ok": "green", "diverged": "yellow", "failed": "red"}.get(m["status"], "white")
    t = Table("", "accuracy", "error", title=f"{m['model']} on {m['data']}  [{colour}]{m['status']}[/{colour}]")
    t.columns[1].justify = t.columns[2].justify = "right"
    for label, k in (("train (last epoch, training mode)", "train"), ("val (final model)", "val"),
                     ("test (final model)", "test"), ("test (best-val checkpoint)", "best_val_test")):
        t.add_row(label, pct(m.get(f"{k}_acc")), pct(m.get(f"{k}_error")))
    console.print(t)
    console.print(f"lr {m['lr']}  seed {m['seed']}  epochs {m['epochs_run']}/{m['max_epochs']}  "
                  f"params {m['num_params']:,}  {m['train_images_per_s'] or 0:.0f} img/s  wall {m['wall_time_s']:.0f}s")
    if m.get("reason"):
        console.print(f"[{colour}]{m['status']}: {m['reason']}[/{colour}]")
    console.print(f"metrics: {m['output_dir']}/metrics.json", soft_wrap=True)
