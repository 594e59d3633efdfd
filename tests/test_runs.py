"""One run identity (allconv_sweep.runs): the result key, what counts as finished, and every place that asks.

Unit tests of the key and the run state, then end-to-end on tiny synthetic data and on generated CIFAR
archives in the real format: the two collisions of the integrity issue (smoke then real; data.root A then
B), resume with another config, resume=false, damaged records and checkpoints, the sweep-folder lock.
"""

from __future__ import annotations

import copy
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict

from allconv_sweep import runs
from allconv_sweep.config import compose
from allconv_sweep.config import files as config_files
from allconv_sweep.config import identity as identity_mod
from allconv_sweep.config.identity import identity, result_key
from allconv_sweep.errors import UserError
from allconv_sweep.runs import RunRecord, run_state
from allconv_sweep.runs.collect import collect
from allconv_sweep.training.train import train
from conftest import job_dirs, metrics, multirun

# The reviewed list: a key added to runs.NEUTRAL_KEYS must be one that cannot change a result, and this
# test must be changed with it, on purpose.
REVIEWED_NEUTRAL = ("hydra", "launcher", "logger", "tracking", "sweep", "paths", "resume", "print_config",
                    "trainer.enable_progress_bar", "callbacks.best_checkpoint.dirpath",
                    "callbacks.last_checkpoint.dirpath", "callbacks.progress_bar", "callbacks.flush_loggers",
                    "callbacks.lr_monitor", "data.download", "data.verify")


def _leaves(cfg: DictConfig, prefix: str = "") -> list[str]:
    out = []
    for k in cfg.keys():
        key = f"{prefix}.{k}" if prefix else str(k)
        node = cfg._get_node(k)
        if isinstance(node, DictConfig) and len(node):
            out += _leaves(cfg[k], key)
        else:
            out.append(key)
    return out


def _interpolated(cfg: DictConfig, key: str) -> bool:
    parent, _, leaf = key.rpartition(".")
    return OmegaConf.is_interpolation(OmegaConf.select(cfg, parent) if parent else cfg, leaf)


def _candidates(value) -> list:
    """Other values for a leaf, the first that its type (the schema) accepts is used."""
    from enum import Enum

    if isinstance(value, Enum):
        return [m for m in type(value) if m != value][:1]
    if isinstance(value, bool):
        return [not value]
    if isinstance(value, (int, float)):
        return [value + 1]
    if isinstance(value, (list, ListConfig)):
        return [list(value) + [1], list(value) + ["x"]]
    if value is None:
        return [1, "x", [1], 0.5]
    return [f"{value}x"]


def _set_other(cfg: DictConfig, leaf: str) -> None:
    for candidate in _candidates(OmegaConf.select(cfg, leaf)):
        try:
            OmegaConf.update(cfg, leaf, candidate, merge=False)
            return
        except Exception:  # noqa: BLE001 - the schema refused this type: try the next
            continue
    raise AssertionError(f"no other value accepted for {leaf}")


def test_neutral_keys_are_the_reviewed_list():
    assert identity_mod.NEUTRAL_KEYS == REVIEWED_NEUTRAL


@pytest.mark.parametrize("overrides", [[], ["+sweep=lr_grid"], ["launcher=slurm", "logger=wandb"], ["data=imagenet"]])
def test_every_key_but_the_declared_ones_changes_the_result_key(overrides):
    """Each leaf of the composed config, changed alone: the key changes exactly when the leaf is not neutral."""
    cfg = compose(overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = "/tmp/out"  # ${hydra:...} has no value outside a Hydra run
        if "sweep" in cfg:
            cfg.sweep.dir = "/tmp/sweep"
            cfg.tracking.run_name = "r"
    base = result_key(identity(cfg))
    leaves = _leaves(cfg)
    assert len(leaves) > 50
    for leaf in leaves:
        other = copy.deepcopy(cfg)
        with open_dict(other):
            _set_other(other, leaf)
        changed = result_key(identity(other)) != base
        if identity_mod.is_neutral(leaf) and changed:
            # only through an interpolation into a result key (trainer.devices: ${launcher.gpus_per_job})
            moved = [k for k, v in identity(other).items() if identity(cfg).get(k) != v]
            assert moved and all(_interpolated(cfg, k) for k in moved), (leaf, moved)
        else:
            assert changed != identity_mod.is_neutral(leaf), leaf


@pytest.mark.parametrize("override", ["experiment=smoke", "data.root=/elsewhere", "finetune_from=/some/ckpt",
                                      "trainer.devices=2", "optimizer.lr=0.01", "seed=1", "model.init=normal_0.05"])
def test_result_changing_keys_the_issue_names_are_in_the_key(override):
    assert result_key(identity(compose([override]))) != result_key(identity(compose([])))


def test_relative_and_absolute_data_paths_are_one_key(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rel = compose(["data.root=some/data"])
    absolute = compose([f"data.root={tmp_path / 'some' / 'data'}"])
    assert result_key(identity(rel)) == result_key(identity(absolute))


def test_sweep_folder_names_leave_out_exactly_the_neutral_keys_and_the_paths():
    excluded = set(config_files.dirname_exclude_keys())
    assert {"launcher", "launcher.n_jobs", "logger", "logger.wandb.mode", "sweep.name", "resume", "data.verify",
            "paths.cache_dir", "data.root", "finetune_from"} <= excluded
    assert all(identity_mod.is_neutral(k) or k in identity_mod.PATH_KEYS for k in excluded)
    cfg = compose(["+sweep=lr_grid"], return_hydra_config=True)
    assert list(cfg.hydra.job.config.override_dirname.exclude_keys) == sorted(excluded)


# ------------------------------------------------------------------------------------------- run state

def _finished(folder: Path, key: str, status: str = "ok", ident: dict | None = None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    runs.write_record(folder, RunRecord(status=status, result_key=key))
    runs.write_json(folder / runs.RUN_FILE, {"result_key": key, "identity": ident or {}})


def test_run_state_compares_keys(tmp_path):
    assert run_state(tmp_path / "none", "k1").kind == "new"
    _finished(tmp_path / "a", "k1", ident={"optimizer.lr": 0.05})
    assert run_state(tmp_path / "a", "k1").kind == "done"
    state = run_state(tmp_path / "a", "k2", {"optimizer.lr": 0.01})
    assert state.kind == "mismatch" and "optimizer.lr 0.05 -> 0.01" in state.why
    assert run_state(tmp_path / "a", "k2", resume=False).kind == "new"
    _finished(tmp_path / "b", "k1", status="failed")
    assert run_state(tmp_path / "b", "k1").kind == "rerun"
    (tmp_path / "b" / "checkpoints").mkdir()
    (tmp_path / "b" / "checkpoints" / "last.ckpt").write_bytes(b"x")
    assert run_state(tmp_path / "b", "k1").kind == "resume"


def test_a_folder_of_an_earlier_version_without_a_key_is_never_reused(tmp_path):
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "metrics.json").write_text(json.dumps({"status": "ok", "test_acc": 0.9}))
    state = run_state(tmp_path / "old", "k1")
    assert state.kind == "mismatch" and "no result key recorded" in state.why


def test_a_damaged_metrics_json_is_run_again_not_a_traceback(tmp_path):
    _finished(tmp_path / "a", "k1")
    (tmp_path / "a" / "metrics.json").write_text('{"status": "ok", "test_')
    state = run_state(tmp_path / "a", "k1")
    assert state.kind == "rerun" and "not valid JSON" in state.why
    rows = collect(tmp_path)  # the report reads it as a job without a result
    assert [r.status for r in rows] == ["missing"] and "not valid JSON" in rows[0].reason


def test_metrics_json_is_valid_json_without_nan(tmp_path):
    runs.write_record(tmp_path, RunRecord(status="diverged", train_acc=math.nan, test_acc=math.inf))
    text = (tmp_path / "metrics.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text)["train_acc"] is None


# --------------------------------------------------------------------------------- train() on a folder

def test_resume_with_another_config_is_refused_naming_the_keys(cfg_factory):
    cfg = cfg_factory(["model=model_a"])
    first = train(cfg)
    other = cfg_factory(["model=model_a", "optimizer.lr=0.01"])
    with pytest.raises(UserError, match=r"another config: optimizer.lr 0.05 -> 0.01.*resume=false"):
        train(other)
    assert runs.read_record(cfg.paths.output_dir).test_acc == first["test_acc"]  # untouched
    with pytest.raises(UserError, match=r"model.layers"):  # another network: one line, not a size mismatch
        train(cfg_factory(["model=all_cnn_a"]))


def test_resume_false_replaces_the_run_cleanly(cfg_factory):
    cfg = cfg_factory(["model=model_a", "trainer.max_epochs=2"])
    train(cfg)
    out = Path(cfg.paths.output_dir)
    key = json.loads((out / "run.json").read_text())["wandb_run_id"]
    again = cfg_factory(["model=model_a", "optimizer.lr=0.01", "resume=false"])
    m = train(again)
    assert m["status"] == "ok" and m["lr"] == 0.01 and m["resumed_from"] is None
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]  # no best-v1.ckpt
    assert json.loads((out / "run.json").read_text())["wandb_run_id"] != key  # a new W&B run, too


def test_an_unreadable_last_ckpt_restarts_from_the_previous_good_checkpoint(cfg_factory, capsys):
    cfg = cfg_factory(["model=model_a", "trainer.max_epochs=2"])
    train(cfg)
    out = Path(cfg.paths.output_dir)
    (out / "metrics.json").unlink()  # as if killed while saving last.ckpt after its final epoch
    last = out / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[:1000])
    m = train(cfg)
    assert m["status"] == "ok" and m["resumed_from"].endswith("best.ckpt")
    assert "last.ckpt is unreadable" in capsys.readouterr().out
    assert (out / "last.ckpt.unreadable").is_file()
    # and with no good checkpoint at all: from scratch, never a permanent failure
    (out / "metrics.json").unlink()
    for name in ("last.ckpt", "best.ckpt"):
        (out / "checkpoints" / name).write_bytes(b"not a checkpoint")
    m = train(cfg)
    assert m["status"] == "ok" and m["resumed_from"] is None and m["epochs_run"] == 2
    assert "starting over" in capsys.readouterr().out


def test_one_test_pass_per_model(cfg_factory):
    """The best-validation checkpoint is tested only when it is not the final model; the fit's last
    validation is reused, not repeated."""
    cfg = cfg_factory(["model=model_a", "trainer.max_epochs=2"])
    import lightning
    calls = {"validate": 0, "test": 0}
    real_validate, real_test = lightning.Trainer.validate, lightning.Trainer.test

    def validate(self, *a, **k):
        calls["validate"] += 1
        return real_validate(self, *a, **k)

    def test(self, *a, **k):
        calls["test"] += 1
        return real_test(self, *a, **k)

    mp = pytest.MonkeyPatch()
    mp.setattr(lightning.Trainer, "validate", validate)
    mp.setattr(lightning.Trainer, "test", test)
    try:
        m = train(cfg)
    finally:
        mp.undo()
    best_epoch = __import__("torch").load(Path(cfg.paths.output_dir) / "checkpoints" / "best.ckpt",
                                          weights_only=True, map_location="cpu")["epoch"]
    assert calls["validate"] == 0
    assert calls["test"] == (1 if best_epoch == 1 else 2)
    if best_epoch == 1:
        assert m["best_val_test_acc"] == m["test_acc"]


def test_learning_rate_is_logged_every_epoch(cfg_factory):
    import csv
    cfg = cfg_factory(["model=model_a", "trainer.max_epochs=3", "scheduler.milestones=[100]", "scheduler.of_epochs=150"])
    train(cfg)  # milestone 100 of 150 -> epoch 2 of 3; two steps an epoch (64 images, batch 32)
    with open(Path(cfg.paths.output_dir) / "csv" / "metrics.csv") as f:  # logged at each epoch's first step
        lrs = {int(r["step"]) // 2: float(r["lr"]) for r in csv.DictReader(f) if r.get("lr")}
    assert lrs == {0: pytest.approx(0.05), 1: pytest.approx(0.05), 2: pytest.approx(0.005)}


# --------------------------------------------------------------------------------- sweeps: collisions

def test_smoke_then_real_retrains_into_its_own_folder(tmp_path):
    """The issue's first collision: the same sweep without experiment=smoke is another config; it must be
    trained, never reported from the smoke run's folder."""
    assert multirun(["+sweep=lr_grid", "optimizer.lr=0.1", "experiment=smoke", "trainer.max_epochs=1"], tmp_path) == 0
    assert multirun(["+sweep=lr_grid", "optimizer.lr=0.1"], tmp_path) == 0
    jobs = job_dirs(tmp_path / "lr_grid")
    assert len(jobs) == 2 and {metrics(j)["augment"] for j in jobs} == {"flip_translate", "none"}
    assert len({metrics(j)["result_key"] for j in jobs}) == 2
    md = (tmp_path / "lr_grid" / "results.md").read_text()
    assert "experiment=smoke" in md  # the two are reported apart


def _cifar_archive_copy(root: Path) -> Path:
    from test_data import write_cifar10
    write_cifar10(root, per_batch=40)
    return root


CIFAR_TINY = ["data=cifar10", "data.verify=false", "data.download=false", "data.val_size=40", "data.batch_size=40",
              "preprocess=standardize", "trainer.max_epochs=1", "trainer.enable_progress_bar=false", "print_config=false",
              "model=model_a"]


def test_data_root_a_then_b_is_refused_before_anything_is_launched(tmp_path, capsys):
    """The issue's second collision: data.root is not in the folder names (a path), but it is in the key."""
    a, b = _cifar_archive_copy(tmp_path / "A"), _cifar_archive_copy(tmp_path / "B")
    args = ["+sweep=lr_grid", "optimizer.lr=0.1,0.05", *CIFAR_TINY]
    assert multirun([*args, f"data.root={a}"], tmp_path, tiny=False) == 0
    sweep = tmp_path / "lr_grid"
    before = {p: p.stat().st_mtime_ns for p in sweep.rglob("*") if p.is_file()}
    capsys.readouterr()
    assert multirun([*args, f"data.root={b}"], tmp_path, tiny=False) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("error: ") for line in err)
    assert all(f'data.root "...{str(a)[-60:]}" -> "...{str(b)[-60:]}"' in line or f'data.root "{a}" -> "{b}"' in line
               for line in err[:2]), err
    assert "nothing was launched" in err[2]
    assert {p: p.stat().st_mtime_ns for p in sweep.rglob("*") if p.is_file()} == before
    # the same data again: both jobs are finished and skipped
    assert multirun([*args, f"data.root={a}", "sweep.dry_run=true"], tmp_path, tiny=False) == 0
    assert "2 finished and skipped" in capsys.readouterr().out


def test_planned_key_equals_the_key_each_job_records(tmp_path):
    assert multirun(["+sweep=lr_grid", "optimizer.lr=0.1,0.05"], tmp_path) == 0
    planned = json.loads((tmp_path / "lr_grid" / "sweep.json").read_text())["jobs"]
    for job in job_dirs(tmp_path / "lr_grid"):
        assert planned[job.name]["result_key"] == metrics(job)["result_key"]


def test_a_second_sweep_into_a_locked_folder_is_refused(tmp_path, capsys):
    sweep = tmp_path / "lr_grid"
    sweep.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from filelock import FileLock; "
                               f"l = FileLock({str(sweep / '.lock')!r}); l.acquire(); print('held', flush=True); "
                               "time.sleep(120)"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert multirun(["+sweep=lr_grid", "optimizer.lr=0.1"], tmp_path) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "in use by another sweep" in err[0]
        assert not job_dirs(sweep)
    finally:
        holder.kill()
        holder.wait()


def test_a_damaged_metrics_json_in_a_sweep_is_run_again(tmp_path, capsys):
    assert multirun(["+sweep=lr_grid", "optimizer.lr=0.1"], tmp_path) == 0
    (job,) = job_dirs(tmp_path / "lr_grid")
    (job / "metrics.json").write_text("{not json")
    assert multirun(["+sweep=lr_grid", "optimizer.lr=0.1", "sweep.dry_run=true"], tmp_path) == 0
    assert "not valid JSON" in capsys.readouterr().out
    assert multirun(["+sweep=lr_grid", "optimizer.lr=0.1"], tmp_path) == 0
    assert metrics(job)["status"] == "ok"


# --------------------------------------------------------------------------------------------- signals

# The signal must land mid-training: ~9 epochs are left when the first last.ckpt appears. fp32 pinned, so
# that is ~5 s on an AMX CPU (bf16 under precision=auto: ~2.5 s) and longer on the others.
SIGNAL_RUN = ["data=fake", "preprocess=standardize", "model=model_a", "data.train_size=160", "data.val_size=32",
              "data.batch_size=32", "trainer.max_epochs=10", "trainer.precision=32-true", "print_config=false",
              "trainer.enable_progress_bar=false"]


def _start(tmp_path: Path, *args: str, env: dict | None = None) -> subprocess.Popen:
    import os
    env = {**os.environ, "ALLCONV_CACHE": str(tmp_path / "cache"), **(env or {})}
    return subprocess.Popen([sys.executable, "-m", "allconv_sweep", *args], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=_default_sigint)


def _default_sigint() -> None:
    """A job started in the background (`cmd &` in a script, nohup) inherits SIGINT ignored, and Python then
    keeps ignoring it: the SIGINT test would see a run that finishes with exit 0. A user's terminal, and a
    job under SLURM, deliver SIGINT with its default action: give the child that."""
    import signal
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 240) -> None:
    """Poll (never a fixed sleep) until `path` exists; the process must still be running."""
    import time
    end = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        assert time.monotonic() < end, f"{path} never appeared"
        time.sleep(0.2)


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGINT"])
def test_a_signal_exits_nonzero_records_interrupted_and_the_same_command_resumes(tmp_path, signame):
    import signal
    run = tmp_path / "run"
    args = [*SIGNAL_RUN, f"hydra.run.dir={run}"]
    proc = _start(tmp_path, *args)
    _wait_for(run / "checkpoints" / "last.ckpt", proc)
    proc.send_signal(getattr(signal, signame))
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + getattr(signal, signame), err[-2000:]
    assert f"interrupted by {signame}" in err and "the same command resumes" in err
    record = metrics(run)
    assert record["status"] == "interrupted" and record["epochs_run"] < 10
    again = _start(tmp_path, *args)  # the same command
    out, err = again.communicate(timeout=600)
    assert again.returncode == 0, err[-2000:]
    done = metrics(run)
    assert done["status"] == "ok" and done["epochs_run"] == 10 and done["resumed_from"].endswith("last.ckpt")


def test_a_killed_job_resumes_into_one_wandb_run(tmp_path):
    """SIGKILL mid-run (no chance to record anything), then the same command: one W&B run id across both
    processes, the one metrics.json records it and the resume. The parent has a W&B service of its own, as a
    sweep or notebook that used W&B would: wandb advertises it to child processes (WANDB_SERVICE), and a job
    that used it would leave the killed run's stream open there, refusing the resume ("run ID is in use")."""
    import signal

    import wandb
    wandb.setup()
    assert os.environ.get("WANDB_SERVICE")
    run = tmp_path / "run"
    args = [*SIGNAL_RUN, "logger=wandb", f"hydra.run.dir={run}"]
    env = {"WANDB_MODE": "offline", "WANDB_SILENT": "true", "WANDB_API_KEY": ""}
    proc = _start(tmp_path, *args, env=env)
    _wait_for(run / "checkpoints" / "last.ckpt", proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert not (run / "metrics.json").exists()
    again = _start(tmp_path, *args, env=env)
    _, err = again.communicate(timeout=600)
    assert again.returncode == 0, err[-2000:]
    record = metrics(run)
    assert record["status"] == "ok" and record["resumed_from"].endswith("last.ckpt")
    from conftest import wandb_run_records
    ids = {r.run_id for log in (run / "wandb").glob("offline-run-*/run-*.wandb") for r in wandb_run_records(log)}
    assert len(list((run / "wandb").glob("offline-run-*"))) == 2  # one folder per process, as wandb writes them
    assert ids == {record["wandb_run_id"]}


def test_sigterm_stops_a_sweep_writes_the_report_and_exits_nonzero(tmp_path):
    import signal
    sweep = tmp_path / "lr_grid"
    args = ["+sweep=lr_grid", "optimizer.lr=0.1,0.05", *SIGNAL_RUN, f"sweep.root={tmp_path}"]
    proc = _start(tmp_path, *args)
    first = sweep / "data.batch_size:32+data.train_size:160+data.val_size:32+data:fake+model:model_a+optimizer.lr:0.1+preprocess:standardize+trainer.max_epochs:10+trainer.precision:32-true"
    _wait_for(first / "checkpoints" / "last.ckpt", proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err[-3000:]
    assert "interrupted by SIGTERM" in err
    report = (sweep / "results.md").read_text()
    assert "| interrupted |" in report and "| missing |" in report  # the second job never started
    assert metrics(first)["status"] == "interrupted"


def test_a_run_killed_during_its_final_test_resumes_to_a_complete_record(cfg_factory, monkeypatch):
    """All epochs trained, then killed while testing: the re-run trains nothing, and still reports the last
    epoch's training accuracy and images/s (kept in the checkpoint), not nulls."""
    import lightning
    cfg = cfg_factory(["model=model_a", "trainer.max_epochs=2"])
    real_test = lightning.Trainer.test

    def killed(self, *a, **k):
        raise RuntimeError("killed during the final test")

    monkeypatch.setattr(lightning.Trainer, "test", killed)
    with pytest.raises(RuntimeError):
        train(cfg)
    monkeypatch.setattr(lightning.Trainer, "test", real_test)
    m = train(cfg)
    assert m["status"] == "ok" and m["epochs_run"] == 2 and m["resumed_from"].endswith("last.ckpt")
    assert m["train_acc"] is not None and m["train_images_per_s"] > 0 and m["images_seen"] == 128
    assert m["val_acc"] is not None and m["test_acc"] is not None
