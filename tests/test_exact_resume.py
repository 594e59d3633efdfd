"""Exact resume (issue 18, case 4): a run SIGKILLed at any moment and started again with the same command ends
with the same metrics.json numbers and the same CSV log, cell for cell, as the run never interrupted.

Each start is `python -m allconv_sweep <the same overrides>` in a subprocess; the kill comes from
tests/helpers/kill_at.py (imported before the CLI, it patches a step or ModelCheckpoint's save from outside).
Fake data with augmentation (experiment=smoke: flips and shifts) and dropout (Model A), fp32 on the CPU.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HELPERS = Path(__file__).resolve().parent / "helpers"

# 64 images - 16 val = 48 train = 3 steps of 16 per epoch, 2 epochs, fp32 on the CPU: dropout, flips, shifts
# and shuffling all draw in every step, so a resume that loses any random stream ends elsewhere
OVERRIDES = ["experiment=smoke", "model=model_a", "data.train_size=64", "data.val_size=16", "data.test_size=32",
             "data.batch_size=16", "trainer.max_epochs=2", "trainer.precision=32-true", "trainer.accelerator=cpu",
             "seed=3", "trainer.enable_progress_bar=false", "print_config=false"]

# metrics.json fields that describe one start, not the run: left out of the comparison (output_dir: each
# case trains into its own folder by construction)
PER_START = {"wall_time_s", "wall_time_this_start_s", "train_images_per_s", "resumed_from", "output_dir"}

CHILD = "import sys, kill_at; from allconv_sweep.__main__ import cli; sys.argv[0] = 'allconv_sweep'; cli()"


def start(run_dir: Path, cache: Path, kill_at: str = "", sig: str = "KILL") -> subprocess.CompletedProcess:
    env = dict(os.environ, KILL_AT=kill_at, KILL_SIGNAL=sig,
               PYTHONPATH=os.pathsep.join([str(HELPERS), str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, "-c", CHILD, *OVERRIDES, f"hydra.run.dir={run_dir}",
                           f"paths.cache_dir={cache}"], env=env, cwd=run_dir.parent, capture_output=True,
                          text=True, timeout=600)


def csv_rows(run_dir: Path) -> list[list[str]]:
    with open(run_dir / "csv" / "metrics.csv", newline="") as f:
        return list(csv.reader(f))


def record(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("exact")
    proc = start(root / "uninterrupted", root / "cache")
    assert proc.returncode == 0, proc.stderr[-2000:]
    return root / "uninterrupted"


# Epochs count from 0; the run has epochs 0 and 1. last.ckpt is written in on_train_epoch_end, after the
# epoch's validation, best.ckpt just before it; Lightning logs the epoch's training row right after both.
MOMENTS = {
    "mid_training_epoch": "train_step:1:1",   # second step of the second epoch
    "during_validation": "val_step:1:0",      # second epoch's validation
    "after_checkpoint": "after_save:0",       # first last.ckpt just written, its epoch's training row not logged
    "before_checkpoint": "before_save:1",     # best.ckpt of the second epoch written, last.ckpt not yet
    "after_last_checkpoint": "after_save:1",  # the final epoch's last.ckpt written: nothing left to train
    "during_final_test": "test",              # training done, killed testing the final model
}


@pytest.mark.parametrize("moment", list(MOMENTS))
def test_killed_and_restarted_run_equals_the_uninterrupted_one(uninterrupted, moment):
    run_dir = uninterrupted.parent / moment
    killed = start(run_dir, uninterrupted.parent / "cache", kill_at=MOMENTS[moment])
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert (run_dir / "checkpoints" / "last.ckpt").is_file() and not (run_dir / "metrics.json").exists()
    resumed = start(run_dir, uninterrupted.parent / "cache")
    assert resumed.returncode == 0, resumed.stderr[-2000:]

    want, got = record(uninterrupted), record(run_dir)
    assert got["resumed_from"] == str(run_dir / "checkpoints" / "last.ckpt")
    compared = sorted(set(want) - PER_START)
    assert {k: got.get(k) for k in compared} == {k: want[k] for k in compared}  # every number, exactly
    assert csv_rows(run_dir) == csv_rows(uninterrupted)  # every cell, the header included

    # the wall time adds up over the starts: the first start's time up to its checkpoint is in the total
    assert got["wall_time_this_start_s"] > 0 and got["wall_time_s"] > got["wall_time_this_start_s"]


def test_sigterm_resume_equals_the_uninterrupted_run_and_adds_up_the_wall_time(uninterrupted):
    """SIGTERM mid-epoch: Lightning stops at the next batch, the run records itself interrupted (its CSV
    buffer flushed, the epoch's lr row included) and exits 143; the same command resumes. The CSV had a
    duplicate lr row, and wall_time_s covered the last start only."""
    run_dir = uninterrupted.parent / "sigterm"
    stopped = start(run_dir, uninterrupted.parent / "cache", kill_at=MOMENTS["mid_training_epoch"], sig="TERM")
    assert stopped.returncode == 128 + signal.SIGTERM, stopped.stderr[-2000:]
    first = record(run_dir)
    assert first["status"] == "interrupted"
    resumed = start(run_dir, uninterrupted.parent / "cache")
    assert resumed.returncode == 0, resumed.stderr[-2000:]

    want, got = record(uninterrupted), record(run_dir)
    compared = sorted(set(want) - PER_START)
    assert {k: got.get(k) for k in compared} == {k: want[k] for k in compared}
    assert csv_rows(run_dir) == csv_rows(uninterrupted)
    # the interrupted start's time (recorded at the signal) plus this start's
    assert got["wall_time_s"] == pytest.approx(first["wall_time_s"] + got["wall_time_this_start_s"], rel=1e-12)
