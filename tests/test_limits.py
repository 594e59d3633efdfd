"""Limits and leftovers (issue 18, cases 5 and 6): Trainer keys and values checked before any folder is
written; the batch size recorded is the one used; nothing half-written under a real name (checkpoints on a
full disk, a ZCA cache that does not fit, a start that fails before training); one file mode (the umask's)."""

from __future__ import annotations

import builtins
import errno
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from allconv_sweep.cli import check_overrides
from allconv_sweep.errors import UserError
from conftest import TINY

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "ALLCONV_CACHE": str(cwd / "cache"), "ALLCONV_DATA": str(cwd / "nodata")}
    return subprocess.run([sys.executable, "-m", "allconv_sweep", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


# ------------------------------------------------------------------------------------- Trainer arguments

@pytest.mark.parametrize("bad,needle", [
    ("trainer.limit_train_batches=-1", "trainer.limit_train_batches=-1"),
    ("trainer.devices=abc", "trainer.devices='abc'"),
    ("trainer.accelerator=tpu", "trainer.accelerator=tpu"),
    ("+trainer.max_epoch=1", "did you mean max_epochs?"),
])
def test_a_bad_trainer_value_or_key_is_one_line_exit_2_and_no_folder(tmp_path, bad, needle):
    run_dir = tmp_path / "run"
    r = run_cli(*TINY, "model=model_a", bad, f"hydra.run.dir={run_dir}", cwd=tmp_path)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 2, r.stderr[-1500:]
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], r.stderr
    assert not run_dir.exists()


@pytest.mark.parametrize("bad,needle", [
    ("trainer.limit_val_batches=1.5", "trainer.limit_val_batches=1.5: must be a fraction in [0, 1]"),
    ("trainer.devices=0", "trainer.devices=0"),
    ("trainer.devices=[0,-2]", "trainer.devices=[0, -2]"),
    ("trainer.strategy=dpp", "trainer.strategy=dpp: no such strategy; did you mean ddp?"),
    ("trainer.accelerator=cpuu", "trainer.accelerator=cpuu: no such accelerator; did you mean cpu?"),
    ("+trainer.callbacks=[]", "trainer.callbacks: set by allconv_sweep itself"),
    ("+trainer.max_steps=abc", "trainer.max_steps='abc'"),
    ("+trainer.fast_dev_run=-1", "trainer.fast_dev_run=-1"),
])
def test_more_bad_trainer_arguments_are_refused_by_the_pre_check(bad, needle):
    with pytest.raises(UserError) as e:
        check_overrides([*TINY, bad])
    assert needle in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("good", [
    "trainer.limit_train_batches=2", "trainer.limit_train_batches=0.5", "trainer.devices=auto",
    "+trainer.max_steps=10", "+trainer.max_time=00:00:10:00", "+trainer.enable_checkpointing=true",
    "trainer.strategy=ddp",
])
def test_an_impossible_accelerator_says_what_is_valid_here_and_valid_arguments_pass(tmp_path, monkeypatch, good):
    from allconv_sweep.config import compose, validate

    monkeypatch.chdir(tmp_path)  # the pre-check probes ./outputs
    with pytest.raises(UserError) as e:
        check_overrides([*TINY, "trainer.accelerator=tpu"])
    assert str(e.value).endswith("valid here: auto, cpu" + (", gpu, cuda" if torch.cuda.is_available() else ""))
    check_overrides([*TINY, good])
    # launcher=slurm sets trainer.accelerator=gpu for jobs that run on the cluster's GPU nodes: the machine
    # that plans the sweep need not have a GPU
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    cfg = compose([*TINY, "launcher=slurm"])
    assert cfg.trainer.accelerator == "gpu"
    validate(cfg)


# -------------------------------------------------------------------------------------------- batch size

def test_the_batch_size_recorded_is_the_one_used(cfg_factory, capsys):
    from allconv_sweep.training.train import train

    m = train(cfg_factory(["model=model_a", "data.batch_size=10000000"]))
    assert m["status"] == "ok" and m["train_size"] == 64
    assert m["batch_size"] == 64
    assert json.loads((Path(m["output_dir"]) / "metrics.json").read_text())["batch_size"] == 64
    said = [ln for ln in capsys.readouterr().out.splitlines() if "data.batch_size=10000000" in ln]
    assert len(said) == 1 and "64" in said[0], said


# ------------------------------------------------------------------------------------- full disk, caches

def _full_disk_after(folder: Path, good_writes: int, monkeypatch) -> list[str]:
    """From the (good_writes + 1)-th file opened for writing in ``folder`` on, every write there fails with
    ENOSPC after half its bytes: ``folder`` is a disk of its own that has filled up (a rename into it from
    another folder is a copy, as it is across file systems). Returns the names written."""
    real_open, real_rename = builtins.open, os.rename
    opened: list[str] = []

    class FullDiskFile:
        def __init__(self, f):
            self._f = f

        def write(self, data):
            data = memoryview(data).cast("B")
            self._f.write(data[: len(data) // 2])
            self._f.flush()
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self._f.close()

        def __getattr__(self, name):
            return getattr(self._f, name)

    def fake_open(file, mode="r", *args, **kwargs):
        f = real_open(file, mode, *args, **kwargs)
        if isinstance(file, (str, os.PathLike)) and any(c in mode for c in "wax") \
                and Path(os.fspath(file)).resolve().parent == folder.resolve():
            opened.append(Path(os.fspath(file)).name)
            if len(opened) > good_writes:
                return FullDiskFile(f)
        return f

    def fake_rename(src, dst, *args, **kwargs):
        if Path(os.fspath(dst)).resolve().parent == folder.resolve() != Path(os.fspath(src)).resolve().parent:
            raise OSError(errno.EXDEV, os.strerror(errno.EXDEV))
        return real_rename(src, dst, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", fake_open)
    monkeypatch.setattr(os, "rename", fake_rename)
    monkeypatch.setattr(shutil, "_USE_CP_SENDFILE", False)  # a copy writes through Python's file objects
    monkeypatch.setattr(shutil, "_USE_CP_COPY_FILE_RANGE", False, raising=False)  # Python >= 3.14
    return opened


def test_a_full_disk_during_a_checkpoint_write_leaves_no_file_under_its_real_name(cfg_factory, monkeypatch):
    """Epoch 1 writes best.ckpt and last.ckpt; then the disk is full: epoch 2's writes fail midway. The run
    fails, and checkpoints/ holds epoch 1's two checkpoints, whole, and nothing else."""
    from allconv_sweep.training.train import train

    cfg = cfg_factory(["model=model_a", "trainer.max_epochs=2"])
    ckpt_dir = Path(cfg.paths.output_dir) / "checkpoints"
    ckpt_dir.mkdir(parents=True)
    opened = _full_disk_after(ckpt_dir, 2, monkeypatch)
    with pytest.raises(OSError) as e:
        train(cfg)
    monkeypatch.undo()
    assert e.value.errno == errno.ENOSPC and len(opened) == 3, opened
    assert sorted(p.name for p in ckpt_dir.iterdir()) == ["best.ckpt", "last.ckpt"]
    for name in ("best.ckpt", "last.ckpt"):
        ck = torch.load(ckpt_dir / name, map_location="cpu", weights_only=True)
        assert ck["epoch"] == 0, name
    assert json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())["status"] == "failed"


ZCA_RUN = ["model=model_a", "preprocess=gcn_zca", "data.image_size=16"]  # 768 pixels: a fast ZCA fit


def _fit_cache(cfg) -> Path:
    from allconv_sweep import config as config_mod
    from allconv_sweep.training.components import datamodule_from

    datamodule_from(config_mod.to_container(cfg)).setup()
    (path,) = Path(cfg.paths.cache_dir).glob("zca_*.pt")
    return path


def test_a_zca_cache_of_the_wrong_shape_is_refitted_with_one_line_and_the_run_succeeds(cfg_factory, caplog, capsys):
    from allconv_sweep.training.train import train

    cfg = cfg_factory(ZCA_RUN)
    path = _fit_cache(cfg)
    torch.save({"mean": torch.zeros(10), "matrix": torch.eye(10)}, path)  # another set's transform
    m = train(cfg)
    assert m["status"] == "ok"
    out = capsys.readouterr()
    said = [r.getMessage() for r in caplog.records if path.name in r.getMessage()]
    said += [ln for ln in (out.out + out.err).splitlines() if path.name in ln]
    assert len(said) == 1 and "refitted" in said[0] and "(10, 10)" in said[0], said
    assert torch.load(path, weights_only=True)["matrix"].shape == (768, 768)


@pytest.mark.parametrize("stored,why", [
    ({"mean": torch.zeros(12, dtype=torch.float64), "matrix": torch.eye(12, dtype=torch.float64)}, "float64"),
    ({"mu": torch.zeros(12), "matrix": torch.eye(12)}, "mu"),
    ({"mean": torch.zeros(12), "matrix": torch.eye(12), "key": "0123456789abcdef"}, "0123456789abcdef"),
    ([1, 2, 3], "list"),
])
def test_a_zca_cache_that_does_not_fit_is_refitted_and_replaced(tmp_path, caplog, stored, why):
    from allconv_sweep.data.whitening import fit_zca_cached

    x = torch.randn(40, 12)
    zca, hit = fit_zca_cached(x, 0.1, tmp_path, {"dataset": "t"})
    assert not hit
    (path,) = tmp_path.glob("zca_*.pt")
    torch.save(stored, path)
    caplog.clear()
    again, hit = fit_zca_cached(x, 0.1, tmp_path, {"dataset": "t"})
    assert not hit and torch.equal(again.matrix, zca.matrix)
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 1 and path.name in said[0] and why in said[0] and "refitted" in said[0], said
    assert fit_zca_cached(x, 0.1, tmp_path, {"dataset": "t"})[1]  # the replacement is a hit
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


# ----------------------------------------------------------------------------- a start that fails early

def test_a_start_that_fails_on_missing_data_leaves_no_run_json_and_a_resumable_run_as_it_was(cfg_factory, tmp_path):
    from allconv_sweep.training.train import train

    cfg = cfg_factory(["data=cifar10", f"data.root={tmp_path / 'empty'}", "data.download=false",
                       "data.val_size=100", "model=model_a", "trainer.max_epochs=1", "print_config=false"],
                      tiny=False)
    with pytest.raises(UserError, match="cifar-10-batches-py"):
        train(cfg)
    run = Path(cfg.paths.output_dir)
    assert not (run / "run.json").exists() and not (run / "metrics.json").exists()

    # a folder that holds a resumable run (last.ckpt): a start that fails before training leaves it as it was
    from unittest import mock

    cfg = cfg_factory(["model=model_a"], sub="resumable")
    train(cfg)
    run = Path(cfg.paths.output_dir)
    (run / "metrics.json").unlink()  # as if killed after its last checkpoint
    key = json.loads((run / "run.json").read_text())["result_key"]
    with mock.patch("allconv_sweep.data.datamodule.FakeDataModule._read", side_effect=OSError("disk gone")):
        with pytest.raises(OSError, match="disk gone"):
            train(cfg)
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert json.loads((run / "run.json").read_text())["result_key"] == key


def test_a_start_that_fails_building_the_trainer_leaves_no_run_json(cfg_factory):
    """A Trainer argument of the right type that Lightning still refuses (a max_time it cannot parse)."""
    from allconv_sweep.training.train import train

    cfg = cfg_factory(["model=model_a", "+trainer.max_time=soon"])
    with pytest.raises(Exception):  # noqa: B017 - Lightning's own error: not ours to word
        train(cfg)
    run = Path(cfg.paths.output_dir)
    assert not (run / "run.json").exists() and not (run / "metrics.json").exists()


# ------------------------------------------------------------------------------------------------ modes

def test_every_file_the_tool_writes_has_the_umasks_mode(cfg_factory):
    from allconv_sweep.training.train import train

    old = os.umask(0o027)
    try:
        cfg = cfg_factory(ZCA_RUN)
        m = train(cfg)
    finally:
        os.umask(old)
    assert m["status"] == "ok"
    run = Path(cfg.paths.output_dir)
    files = [run / "metrics.json", run / "run.json", run / "checkpoints" / "best.ckpt",
             run / "checkpoints" / "last.ckpt", *Path(cfg.paths.cache_dir).glob("zca_*.pt")]
    assert len(files) == 5
    modes = {f.name: oct(stat.S_IMODE(f.stat().st_mode)) for f in files}
    assert set(modes.values()) == {oct(0o666 & ~0o027)}, modes
