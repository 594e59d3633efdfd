"""python -m allconv_sweep as a user runs it: the smoke experiment end to end, and one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str, cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "ALLCONV_CACHE": str(cwd / "cache"), "ALLCONV_DATA": str(cwd / "nodata")}
    return subprocess.run([sys.executable, "-m", "allconv_sweep", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_smoke_experiment_end_to_end(tmp_path, monkeypatch):
    """What the README's quick start runs: finishes on CPU, prints the summary, writes status ok. With SLURM's
    client installed (an `srun` on PATH), Lightning's hint to use srun is not printed: it does not apply."""
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "srun").write_text("#!/bin/sh\nexit 0\n")
    (tmp_path / "bin" / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    r = run_cli("experiment=smoke", f"hydra.run.dir={tmp_path}/smoke", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    m = json.loads((tmp_path / "smoke" / "metrics.json").read_text())
    assert m["status"] == "ok" and m["model"] == "all_cnn_c" and m["data"] == "fake" and m["epochs_run"] == 3
    assert m["test_acc"] > 0.2  # learns: chance is 0.1
    assert "all_cnn_c on fake" in r.stdout and "test (final model)" in r.stdout  # the rich summary table
    assert (tmp_path / "smoke" / ".hydra" / "config.yaml").is_file()
    assert "srun" not in r.stdout + r.stderr


@pytest.mark.parametrize("args,needle", [
    (["model=all_cnn_x"], "model=all_cnn_x: no such model; did you mean all_cnn_c? valid: all_cnn_a,"),
    (["optimizer.lrr=0.1"], "optimizer.lrr: no such key; did you mean lr? valid keys in optimizer:"),
    (["optimizer.lr=-0.05"], "optimizer.lr=-0.05: must be a finite number > 0"),
    (["data.batch_size=0"], "data.batch_size=0: must be an integer > 0"),
    (["data.download=false"], "cifar-10-batches-py/"),  # missing data: names the folder and the archive
    (["hydra.run.dir=/proc/allconv/run"], "output folder /proc/allconv/run is not writable"),
])
def test_bad_input_is_one_line_nonzero_exit_and_no_metrics(tmp_path, args, needle):
    run_dir = tmp_path / "run"
    extra = [] if any(a.startswith("hydra.run.dir") for a in args) else [f"hydra.run.dir={run_dir}"]
    r = run_cli(*args, *extra, "print_config=false", cwd=tmp_path, timeout=300)
    assert r.returncode == 2, (r.stdout[-1000:], r.stderr[-1000:])
    lines = [ln for ln in r.stderr.splitlines() if ln.strip() and "Warning" not in ln and "warn(" not in ln]
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], r.stderr
    assert not (run_dir / "metrics.json").exists()
    if "download=false" in args[0]:
        assert "cifar-10-python.tar.gz" in lines[0] and str(tmp_path / "nodata") in lines[0]


def test_rerunning_a_finished_folder_with_another_config_is_refused_before_hydra_rewrites_it(tmp_path):
    run = tmp_path / "run"
    common = ["experiment=smoke", "trainer.max_epochs=1", "data.train_size=96", "data.val_size=32",
              "print_config=false", f"hydra.run.dir={run}"]
    assert run_cli(*common, cwd=tmp_path).returncode == 0
    config = (run / ".hydra" / "config.yaml").read_text()
    record = (run / "metrics.json").read_text()
    r = run_cli(*common, "optimizer.lr=0.01", cwd=tmp_path)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 2 and len(lines) == 1, r.stderr
    assert "holds a run of another config: optimizer.lr 0.05 -> 0.01" in lines[0] and "resume=false" in lines[0]
    assert (run / ".hydra" / "config.yaml").read_text() == config and (run / "metrics.json").read_text() == record
    same = run_cli(*common, cwd=tmp_path)  # the same config again: nothing to do
    assert same.returncode == 0 and "already finished" in same.stdout
