"""Sweeps end to end on tiny synthetic data: sweep files, PaperSweeper, launchers, seeds, wandb grouping.

Multiruns run in this process through the real `@hydra.main` entry point (sys.argv patched); one test
runs `python -m allconv_sweep` in a subprocess for the installed-package path. Every job is Model A on
64 fake images (32 train, 32 val), one epoch.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from itertools import product
from pathlib import Path

import pytest

from allconv_sweep.config import compose
from allconv_sweep.errors import UserError
from allconv_sweep.sweep.gpu_lease import Slot, plan_slots
from conftest import job_dirs, metrics, multirun, wandb_config, wandb_run_records, wandb_summary

LRS = (0.25, 0.1, 0.05, 0.01)
MODELS = ("model_a", "strided_cnn_a", "convpool_cnn_a", "all_cnn_a", "model_b", "strided_cnn_b", "convpool_cnn_b",
          "all_cnn_b", "model_c", "strided_cnn_c", "convpool_cnn_c", "all_cnn_c")


def csv_rows(sweep_dir: Path) -> list[dict]:
    with open(sweep_dir / "results.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def lr_grid(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("sweeps")
    assert multirun(["+sweep=lr_grid"], root) == 0
    return root / "lr_grid"


def test_lr_grid_gives_four_runs_and_a_report_with_one_chosen_lr(lr_grid):
    jobs = job_dirs(lr_grid)
    assert len(jobs) == 4
    records = [metrics(j) for j in jobs]
    assert sorted(m["lr"] for m in records) == sorted(LRS)
    assert {m["status"] for m in records} == {"ok"}
    # stable folders named by the swept overrides only: no sweep/launcher/logger noise in them
    assert all("optimizer.lr:" in j.name and "sweep" not in j.name and "launcher" not in j.name for j in jobs)
    assert json.loads((lr_grid / "sweep.json").read_text())["name"] == "lr_grid"
    assert len(json.loads((lr_grid / "sweep.json").read_text())["jobs"]) == 4

    rows = csv_rows(lr_grid)
    assert len(rows) == 4 and {r["status"] for r in rows} == {"ok"}
    chosen = [r for r in rows if r["chosen"] == "True"]
    assert len(chosen) == 1
    best = min(records, key=lambda m: (m["val_error"], -m["lr"]))  # our lr rule: best validation accuracy
    assert float(chosen[0]["lr"]) == best["lr"]
    md = (lr_grid / "results.md").read_text()
    # fake data: its own table, no paper numbers beside it (they are CIFAR-10's)
    assert "### Test error (%) on fake" in md and "Table 3: test error (%) on CIFAR-10" not in md
    assert "(12.47" not in md
    per_network = md.split("## Per network")[1].split("## All jobs")[0]
    assert per_network.count("| Model A |") == 1 and f"| {best['lr']:g} |" in per_network
    assert (lr_grid / "lr_grid.png").stat().st_size > 10_000 and "lr_grid.png" in md
    assert not (lr_grid / "results.png").exists()


def test_running_the_same_sweep_again_trains_nothing(lr_grid, monkeypatch, capsys):
    before = {p: p.stat().st_mtime_ns for p in lr_grid.rglob("*") if p.is_file() and p.parent != lr_grid}

    def no_training(cfg):
        raise AssertionError("a finished job was trained again")

    monkeypatch.setattr("allconv_sweep.training.train.train", no_training)
    assert multirun(["+sweep=lr_grid"], lr_grid.parent) == 0
    after = {p: p.stat().st_mtime_ns for p in lr_grid.rglob("*") if p.is_file() and p.parent != lr_grid}
    assert after == before  # nothing a finished job wrote is touched, no file added to a job folder
    out = capsys.readouterr().out
    assert "0 to run (0 resume from last.ckpt, 0 run again), 4 finished and skipped (4 ok, 0 diverged)" in out
    assert len(csv_rows(lr_grid)) == 4


def test_seeds_sweep_reruns_the_chosen_lr_with_more_seeds(lr_grid):
    chosen_lr = float(next(r for r in csv_rows(lr_grid) if r["chosen"] == "True")["lr"])
    assert multirun(["+sweep=seeds", f"sweep.from={lr_grid}", "sweep.n_seeds=1"], lr_grid.parent, tiny=False) == 0
    jobs = job_dirs(lr_grid)
    assert len(jobs) == 5
    new = [metrics(j) for j in jobs if "seed:1" in j.name]
    assert len(new) == 1 and new[0]["seed"] == 1 and new[0]["lr"] == chosen_lr and new[0]["model"] == "model_a"
    assert new[0]["overrides"].count("data=fake") == 1  # the chosen run's overrides, reused
    rows = csv_rows(lr_grid)
    chosen = [r for r in rows if r["chosen"] == "True"]
    assert sorted(int(r["seed"]) for r in chosen) == [0, 1] and {float(r["lr"]) for r in chosen} == {chosen_lr}
    per_network = (lr_grid / "results.md").read_text().split("## Per network")[1].split("## All jobs")[0]
    assert "±" in per_network  # mean ± std over the two seeds


def test_pooling_ablation_dry_run_lists_48_jobs_and_runs_nothing(tmp_path, capsys):
    assert multirun(["+sweep=pooling_ablation", "sweep.dry_run=true"], tmp_path, tiny=False) == 0
    out = capsys.readouterr().out
    listed = [line.split()[-1] for line in out.splitlines() if line.startswith("  ") and line.split()[0].isdigit()]
    assert len(listed) == 48 and len(set(listed)) == 48
    pairs = {(dict(kv.split(":") for kv in job.split("+"))["model"], float(dict(kv.split(":") for kv in job.split("+"))["optimizer.lr"]))
             for job in listed}
    assert pairs == set(product(MODELS, LRS))
    assert "48 to run" in out and "nothing launched" in out
    assert not (tmp_path / "pooling_ablation").exists()


def test_gpus_launcher_runs_two_jobs_at_once_on_cpu(tmp_path):
    code = multirun(["+sweep=lr_grid", "optimizer.lr=0.1,0.05", "launcher=gpus", "launcher.n_jobs=2",
                     f"launcher.lease_dir={tmp_path / 'leases'}"], tmp_path)
    assert code == 0
    jobs = job_dirs(tmp_path / "lr_grid")
    assert len(jobs) == 2 and {metrics(j)["status"] for j in jobs} == {"ok"}
    leases = [json.loads((j / "lease.json").read_text()) for j in jobs]
    assert {lease["slot"] for lease in leases} == {"cpu0", "cpu1"}
    assert len({lease["pid"] for lease in leases}) == 2 and os.getpid() not in {lease["pid"] for lease in leases}
    assert max(lease["start"] for lease in leases) < min(lease["end"] for lease in leases)  # they overlapped


def test_diverged_and_failed_jobs_are_reported_and_never_stop_the_sweep(tmp_path, monkeypatch):
    from allconv_sweep.training.callbacks import DivergenceMonitor

    original = DivergenceMonitor.on_train_epoch_end

    def crash_one(self, trainer, pl_module):
        if self.chance_margin == -0.5:
            raise RuntimeError("injected crash")
        return original(self, trainer, pl_module)

    monkeypatch.setattr(DivergenceMonitor, "on_train_epoch_end", crash_one)
    # margin 1.0: "still at chance" whatever the accuracy -> diverged; -1.0: never; -0.5: crashes mid-fit
    code = multirun(["+sweep=lr_grid", "optimizer.lr=0.05", "callbacks.divergence.chance_images=1",
                     "callbacks.divergence.chance_margin=-0.5,1.0,-1.0"], tmp_path)
    assert code == 1  # the report says so at the end: a job failed
    sweep = tmp_path / "lr_grid"
    status = {metrics(j)["status"] for j in job_dirs(sweep)}
    assert status == {"ok", "diverged", "failed"}  # the jobs after the crash ran
    rows = {r["status"]: r for r in csv_rows(sweep)}
    assert set(rows) == {"ok", "diverged", "failed"}
    assert "still at chance" in rows["diverged"]["reason"] and "injected crash" in rows["failed"]["reason"]
    md = (sweep / "results.md").read_text()
    assert "| failed |" in md and "| diverged |" in md and "failed 1" in md and "diverged 1" in md


def test_wandb_offline_two_jobs_are_two_runs_in_the_sweep_group(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    assert multirun(["+sweep=lr_grid", "optimizer.lr=0.1,0.05", "logger=wandb", "sweep.name=wb_group"], tmp_path) == 0
    jobs = job_dirs(tmp_path / "wb_group")
    assert len(jobs) == 2
    ids = set()
    for job in jobs:
        # each job is its own run, in its own folder: the training process's log, then the report's resume
        # of the same run (chosen_lr in its summary); offline, each process writes its own folder
        logs = sorted((job / "wandb").glob("offline-run-*/run-*.wandb"))
        assert len(logs) == 2 and len({r.run_id for log in logs for r in wandb_run_records(log)}) == 1
        assert isinstance(wandb_summary(logs[1])["chosen_lr"], bool)
        (run,) = wandb_run_records(logs[0])
        config = wandb_config(logs[0])
        ids.add(run.run_id)
        assert run.run_group == "wb_group" and run.display_name == job.name
        assert {"sweep:wb_group", "family:A", "variant:base", "data:fake"} <= set(run.tags)
        assert config["optimizer.lr"] == metrics(job)["lr"] and config["model.name"] == "model_a"
        assert config["sweep.name"] == "wb_group" and config["sweep.dir"] == str(tmp_path / "wb_group")
        assert not any(k == "cfg" or k.startswith("cfg.") for k in config)  # the config once, flat
        assert config["result_key"] == metrics(job)["result_key"] and f"optimizer.lr={metrics(job)['lr']}" in config["overrides"]
        summary = wandb_summary(logs[0])  # what the runs table shows agrees with metrics.json
        assert summary["test/acc"] == pytest.approx(metrics(job)["test_acc"])
        assert summary["test_error"] == pytest.approx(metrics(job)["test_error"])
        assert summary["best_val_test_acc"] == pytest.approx(metrics(job)["best_val_test_acc"])
        if "best_val_ckpt_test/acc" in summary:  # the best-validation checkpoint was tested on its own
            assert summary["best_val_ckpt_test/acc"] == pytest.approx(summary["best_val_test_acc"])
        else:  # not logged only when the best-validation checkpoint is the final model
            assert metrics(job)["best_val_test_acc"] == metrics(job)["test_acc"]
        assert summary["status"] == "ok" and run.run_id == metrics(job)["wandb_run_id"]
    assert len(ids) == 2


def test_a_plain_multirun_is_one_wandb_group_named_by_its_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    sweep_dir = tmp_path / "multiruns" / "2026-12-01" / "10-11-12"
    assert multirun(["-m", "optimizer.lr=0.1,0.05", "logger=wandb", f"hydra.sweep.dir={sweep_dir}"], tmp_path) == 0
    groups = set()
    for job in job_dirs(sweep_dir):  # the sweep's report writes beside them
        log = sorted((job / "wandb").glob("offline-run-*/run-*.wandb"))[0]  # training's; then the report's
        (run,) = wandb_run_records(log)
        groups.add(run.run_group)
        assert run.display_name == f"model_a-fake-lr{metrics(job)['lr']}-s0"  # tracking.run_name's default
    assert groups == {"2026-12-01_10-11-12"}
    from allconv_sweep.results import dashboard
    from allconv_sweep.runs import collect as collect_mod
    assert dashboard.wandb_settings(sweep_dir, collect_mod.collect(sweep_dir))["group"] == "2026-12-01_10-11-12"  # the same


def test_final_sweep_retrains_the_chosen_lr_on_every_training_image(tmp_path):
    assert multirun(["+sweep=lr_grid", "optimizer.lr=0.1,0.05"], tmp_path) == 0
    sweep = tmp_path / "lr_grid"
    chosen = float(next(r for r in csv_rows(sweep) if r["chosen"] == "True")["lr"])
    assert multirun(["+sweep=final", f"sweep.from={sweep}", "sweep.n_seeds=1"], tmp_path, tiny=False) == 0
    (final,) = [j for j in job_dirs(sweep) if "data.val_size:0" in j.name]
    m = metrics(final)
    assert m["val_size"] == 0 and m["train_size"] == 64 and m["val_acc"] is None and m["lr"] == chosen
    assert m["status"] == "ok" and m["seed"] == 0
    rows = csv_rows(sweep)
    assert [r["protocol"] for r in rows if r["chosen"] == "True"] == ["final"]
    md = (sweep / "results.md").read_text()
    assert "final: all training images (64 images)" in md and "ᶠ" in md
    # the same command again (to resume, or after adding a network): the final run is found, not a reason
    # to drop its network (choose() reports a network by its final runs once they exist)
    assert multirun(["+sweep=final", f"sweep.from={sweep}", "sweep.n_seeds=1"], tmp_path, tiny=False) == 0
    assert metrics(final)["wall_time_s"] == m["wall_time_s"]  # finished and skipped, not retrained


def test_ddp_inside_a_local_multirun_is_refused_in_one_line(tmp_path, capsys):
    for launcher in ("local", "gpus"):
        code = multirun(["+sweep=lr_grid", "trainer.devices=2", "trainer.accelerator=cpu", f"launcher={launcher}"], tmp_path)
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1
        assert f"trainer.devices=2 with launcher={launcher}" in err[0]
        assert "hydra/issues/2070" in err[0] and "launcher=gpus with trainer.devices=1" in err[0]
    assert not (tmp_path / "lr_grid").exists()
    # SLURM starts one task per GPU itself: allowed (dry run, nothing submitted)
    assert multirun(["+sweep=lr_grid", "launcher=slurm", "launcher.gpus_per_job=2", "sweep.dry_run=true"], tmp_path) == 0
    assert "4 to run" in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["+sweep=seeds"], "sweep.from is not set"),
    (["+sweep=seeds", "sweep.from=/nonexistent/sweep"], "sweep.from=/nonexistent/sweep: no such folder"),
    (["+sweep=lr_grid", "optimizer.lr=0.1,-1", "sweep.dry_run=true"], "optimizer.lr=-1.0: must be a finite number > 0"),
    (["+sweep=lr_grid", "launcher=gpus", "launcher.n_jobs=0", "sweep.dry_run=true"], "launcher.n_jobs=0: must be"),
    (["+sweep=_common"], "+sweep=_common is the part every sweep shares"),
])
def test_bad_sweep_input_is_one_line_naming_the_value(tmp_path, capsys, args, message):
    assert multirun(args, tmp_path, tiny=False) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0]


def test_launcher_configs():
    slurm = compose(["+sweep=pooling_ablation", "launcher=slurm", "launcher.partition=gpu", "launcher.gpus_per_job=2"],
                    return_hydra_config=True)
    hl = slurm.hydra.launcher
    assert hl._target_.endswith("SlurmLauncher") and hl.partition == "gpu"
    assert hl.gpus_per_node == 2 and hl.tasks_per_node == 2 and slurm.trainer.devices == 2  # one task per GPU
    assert hl.max_num_timeout == 3 and hl.array_parallelism == 64 and hl.timeout_min == 720
    gpus = compose(["launcher=gpus"], return_hydra_config=True)
    assert gpus.hydra.launcher._target_.endswith("GpuPoolLauncher") and gpus.hydra.launcher.n_jobs is None
    local = compose([], return_hydra_config=True)
    assert local.hydra.launcher._target_.endswith("BasicLauncher") and local.launcher.name == "local"
    assert compose(["+sweep=augmented"]).augment.name == "flip_translate"
    assert compose(["+sweep=cifar100"]).data.name == "cifar100"


def test_plan_slots():
    assert plan_slots(None, gpus=["0", "1"]) == [Slot("gpu0", "0"), Slot("gpu1", "1")]
    assert [s.gpu for s in plan_slots(None, jobs_per_gpu=2, gpus=["3", "5"])] == ["3", "5", "3", "5"]
    assert plan_slots(1, gpus=["3", "5"]) == [Slot("gpu3", "3")]
    assert plan_slots(2, gpus=[]) == [Slot("cpu0", None), Slot("cpu1", None)]
    assert plan_slots(None, gpus=[]) == [Slot("cpu0", None)]
    with pytest.raises(UserError, match=r"launcher.n_jobs=3: only 2 GPU\(s\) visible \(0,1\)"):
        plan_slots(3, gpus=["0", "1"])


def test_python_m_finds_the_sweeps(tmp_path):
    """The installed entry point (search-path plugin, sweep group) in a fresh process: a dry run."""
    proc = subprocess.run([sys.executable, "-m", "allconv_sweep", "+sweep=lr_grid", "model=model_a",
                           "sweep.dry_run=true", f"sweep.root={tmp_path}"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "sweep lr_grid: 4 jobs" in proc.stdout and "model:model_a+optimizer.lr:0.25" in proc.stdout
    assert not (tmp_path / "lr_grid").exists()


def test_the_slurm_launcher_reads_a_requeued_jobs_result_only_after_slurm_says_it_ended(monkeypatch):
    """A requeued job keeps its killed attempt's result file (a failure) while the next attempt runs:
    submitit would read that file at once; the launcher waits for SLURM's final state (the real cluster
    test, tests/test_slurm.py, requeues a job; this one runs without a cluster)."""
    from hydra_plugins.allconv_sweep_plugins import slurm_launcher

    monkeypatch.setattr(slurm_launcher.time, "sleep", lambda s: None)

    class Watcher:
        def __init__(self, states):
            self.states, self.state = list(states), None

        def get_state(self, job_id, mode="standard"):
            if mode == "force":
                self.state = self.states.pop(0) if self.states else self.state
            return self.state

        def is_done(self, job_id, mode="standard"):
            return self.get_state(job_id, mode) not in ("PENDING", "RUNNING", "REQUEUED", "COMPLETING", "UNKNOWN")

    class Job:
        job_id = "7_0"

        def __init__(self, states):
            self.watcher = Watcher(states)

        def wait(self):  # the stale result file exists: submitit returns at once
            pass

    job = Job(["REQUEUED", "PENDING", "RUNNING", "COMPLETING", "COMPLETED", "COMPLETED"])
    slurm_launcher._wait_until_slurm_says_ended(job)
    assert job.watcher.state == "COMPLETED" and job.watcher.states == ["COMPLETED"]  # waited, then stopped
    clock = iter(range(0, 10_000, 10))
    monkeypatch.setattr(slurm_launcher.time, "monotonic", lambda: next(clock))
    job = Job(["UNKNOWN"] * 1000)  # a cluster whose sacct knows nothing: the file, after a grace period
    slurm_launcher._wait_until_slurm_says_ended(job, unknown_grace_s=100)
    assert 985 <= len(job.watcher.states) < 995
