"""launcher=slurm against a real single-node SLURM cluster (make test-slurm starts one: tests/slurm/cluster.sh).

Everything goes through the real command line, `python -m allconv_sweep ... launcher=slurm`, in a
subprocess; the tests poll SLURM and the job folders, never sleep a fixed time. Without a running cluster
(any machine but make test-slurm's) they skip.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, wandb_run_records, wandb_summary

pytestmark = pytest.mark.slurm

CLUSTER = ROOT / "tests" / "slurm" / "cluster.sh"
SLURM_DIR = Path(os.environ.get("ALLCONV_SLURM_DIR", "/tmp/allconv_slurm"))
ENV = {**os.environ, "SLURM_CONF": str(SLURM_DIR / "etc" / "slurm.conf"), "WANDB_MODE": "offline",
       "WANDB_SILENT": "true", "WANDB_API_KEY": ""}
SLURM = ["launcher=slurm", "launcher.partition=debug", "launcher.gpus_per_job=0", "launcher.cpus_per_task=1",
         "launcher.mem_gb=2"]
# Model A on 192 fake images: a few seconds an epoch on one core. These tests check the bookkeeping, so
# the run must end ok whatever the recipe: with the default recipe's final ReLU, 15 epochs of 6 steps do
# not leave the ln 10 plateau, every class score dies and the run ends `diverged` (measured: 0.0% live at
# epoch 15, seed 0). Without the final ReLU nothing can die, and 2,880 images are far from the chance window.
# fp32 pinned: the requeue and the cancel must land mid-run, and bf16 (precision=auto on an AMX CPU) would
# leave only ~4 s after the first checkpoint.
SMALL = ["model=model_a", "data=fake", "data.train_size=192", "data.val_size=32", "data.batch_size=32",
         "preprocess=standardize", "model.final_relu=false", "trainer.precision=32-true", "print_config=false"]


@pytest.fixture(scope="module", autouse=True)
def cluster():
    if subprocess.run(["bash", str(CLUSTER), "status"], env=ENV, capture_output=True).returncode != 0:
        pytest.skip("no SLURM cluster running: `make test-slurm` starts one (tests/slurm/cluster.sh start)")


def cli(*args: str, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "allconv_sweep", *args], cwd=cwd, env=ENV, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def slurm(*cmd: str) -> str:
    return subprocess.run(list(cmd), env=ENV, capture_output=True, text=True, check=True).stdout


def wait(condition, what: str, proc: subprocess.Popen | None = None, timeout: float = 300):
    end = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"the sweep ended before {what}: {err[-3000:]}")
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.5)


def job_ids(sweep_dir: Path) -> set[str]:
    """The SLURM jobs this sweep folder's submitit logs name (<sweep>/.submitit/<job id>/)."""
    folder = sweep_dir / ".submitit"
    return {p.name for p in folder.iterdir() if p.is_dir() and p.name[0].isdigit()} if folder.is_dir() else set()


def records(sweep_dir: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in sweep_dir.glob("*/metrics.json")}


def test_lr_grid_is_one_array_every_job_ok_and_rerunning_submits_nothing(tmp_path):
    args = ["+sweep=lr_grid", "model=all_cnn_c", "data=fake", "trainer.max_epochs=1", *SLURM, f"sweep.root={tmp_path}",
            "print_config=false"]
    proc = cli(*args, cwd=tmp_path)
    out, err = proc.communicate(timeout=900)
    assert proc.returncode == 0, err[-3000:]
    sweep = tmp_path / "lr_grid"
    recs = records(sweep)
    assert len(recs) == 4 and {r["status"] for r in recs.values()} == {"ok"}
    array = {r["slurm_job_id"].split("_")[0] for r in recs.values()}
    assert len(array) == 1 and sorted(r["slurm_job_id"].split("_")[1] for r in recs.values()) == ["0", "1", "2", "3"]
    accounted = slurm("sacct", "-n", "-X", "-j", array.pop(), "-o", "JobID,JobName,State")
    assert accounted.count("COMPLETED") == 4 and "lr_grid" in accounted  # the job name is the sweep's
    assert (sweep / "results.md").is_file() and "| ok |" in (sweep / "results.md").read_text()
    # the same command again: every job finished with the same key, nothing is submitted
    before = job_ids(sweep)
    proc = cli(*args, cwd=tmp_path)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    assert job_ids(sweep) == before and "0 to run" in out + err


@pytest.mark.parametrize("how", ["scontrol requeue", "preemption signal (USR2)"])
def test_a_requeued_job_resumes_from_its_last_checkpoint_as_one_wandb_run(tmp_path, how):
    args = ["+sweep=lr_grid", "optimizer.lr=0.05", *SMALL, "trainer.max_epochs=15", "logger=wandb", *SLURM,
            f"sweep.root={tmp_path}", "sweep.name=requeue"]
    proc = cli(*args, cwd=tmp_path)
    sweep = tmp_path / "requeue"
    ckpt = wait(lambda: next(iter(sweep.glob("*/checkpoints/last.ckpt")), None), "a first checkpoint", proc)
    (job_id,) = wait(lambda: job_ids(sweep), "the SLURM job id", proc)
    if how == "scontrol requeue":
        slurm("scontrol", "requeue", job_id)
    else:  # what SLURM sends before a time limit or on preemption; submitit requeues the job itself
        slurm("scancel", "--signal=USR2", job_id)
    out, err = proc.communicate(timeout=900)
    assert proc.returncode == 0, err[-3000:]
    (record,) = records(sweep).values()
    assert record["status"] == "ok" and record["epochs_run"] == 15
    assert record["resumed_from"] == str(ckpt) and record["slurm_job_id"] == job_id
    runs = sorted(ckpt.parents[1].glob("wandb/offline-run-*/run-*.wandb"))
    # one folder per process start (wandb writes them so): the killed attempt, the requeued one, and the
    # report's resume that sets chosen_lr in the job's summary...
    assert len(runs) == 3 and wandb_summary(runs[-1]).get("chosen_lr") is True
    assert {r.run_id for log in runs for r in wandb_run_records(log)} == {record["wandb_run_id"]}  # ...one W&B run


def test_a_failing_and_a_cancelled_job_are_reported_and_the_others_finish(tmp_path):
    """train_size=16 < val_size=32: that job stops on bad input; one of the others is cancelled mid-run.
    The other two finish, the report says what happened to each, and the command exits 1 (no hang)."""
    from omegaconf import OmegaConf

    args = ["+sweep=lr_grid", "optimizer.lr=0.05", *SMALL, "data.train_size=192,160,16", "trainer.max_epochs=15",
            *SLURM, f"sweep.root={tmp_path}", "sweep.name=faults"]
    proc = cli(*args, cwd=tmp_path)
    sweep = tmp_path / "faults"
    victim = wait(lambda: next((p.parents[1] for p in sweep.glob("*train_size:160*/checkpoints/last.ckpt")), None),
                  "the job to cancel to start", proc)
    job_id = OmegaConf.load(victim / ".hydra" / "hydra.yaml").hydra.job.id  # the SLURM task running it
    slurm("scancel", str(job_id))
    out, err = proc.communicate(timeout=900)
    assert proc.returncode == 1, err[-3000:]  # after writing the report
    recs = records(sweep)
    assert [name for name, r in recs.items() if r["status"] == "ok"] == [n for n in recs if "train_size:192" in n]
    rows = {line.split("|")[1].strip(): line for line in (sweep / "results.md").read_text().splitlines()
            if line.startswith("| data.")}
    (bad,) = [v for k, v in rows.items() if "train_size:16+" in k]
    # stopped by bad input after it started: failed, with its one line (issue 18: a failed job is failed everywhere)
    assert "| failed |" in bad and "data.val_size=32 but the training set has 16 images" in bad
    cancelled = rows[victim.name]
    assert "| interrupted |" in cancelled or ("| missing |" in cancelled and "CANCELLED" in cancelled), cancelled
