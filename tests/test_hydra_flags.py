"""What --help promises of Hydra's own flags (issue 20, item 7): `--cfg job --resolve` prints the resolved config
with the value only a job's start sets marked as such, errors under --cfg are one line, and tab completion
offers every choice of an enum key, spelled as the command line takes it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from allconv_sweep.config.schema import INITS

SCRIPT = Path(sys.executable).parent / "allconv-sweep"  # pyproject's [project.scripts]: what completion hooks


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "ALLCONV_CACHE": str(cwd / "cache")}
    return subprocess.run([sys.executable, "-m", "allconv_sweep", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def test_cfg_job_resolve_prints_the_resolved_config_with_the_run_time_folder_marked(tmp_path):
    r = run_cli("--cfg", "job", "--resolve", "logger=wandb", "+sweep=lr_grid", cwd=tmp_path)
    assert r.returncode == 0 and not r.stderr.strip(), r.stderr[-2000:]
    shown = yaml.safe_load(r.stdout)
    assert "${" not in r.stdout and "hydra" not in shown
    assert shown["paths"]["output_dir"] == "<set at run time: hydra.runtime.output_dir>"
    assert shown["logger"]["wandb"]["save_dir"] == "<set at run time: hydra.runtime.output_dir>"
    assert shown["optimizer"]["lr"] == 0.05 and shown["model"]["init"] == "caffe_xavier"
    assert shown["sweep"]["dir"] == "outputs/sweeps/lr_grid"  # known before the run: the sweep's folder
    unresolved = run_cli("--cfg", "job", cwd=tmp_path)  # without --resolve: Hydra's own print, as before
    assert unresolved.returncode == 0 and "output_dir: ${hydra:runtime.output_dir}" in unresolved.stdout


@pytest.mark.parametrize("args,needle", [
    (["--cfg", "job", "model=all_cnn_x"], "model=all_cnn_x: no such model; did you mean all_cnn_c?"),
    (["--cfg", "job", "optimizer.lrr=0.1"], "optimizer.lrr: no such key; did you mean lr?"),
    (["--cfg", "all", "optimizer.lr=0.1,0.2"], "Ambiguous value for argument 'optimizer.lr=0.1,0.2'"),
    (["--cfg", "job", "--resolve", "optimizer.lr=${oc.env:ALLCONV_UNSET_FOR_TEST}"],
     "optimizer.lr: cannot resolve its value (Environment variable 'ALLCONV_UNSET_FOR_TEST' not found"),
    (["--cfg", "job", "--resolve", "-p", "no.such"], "--package no.such: no such node in the job config"),
])
def test_an_error_under_cfg_is_one_line_and_exit_2(tmp_path, monkeypatch, args, needle):
    monkeypatch.delenv("ALLCONV_UNSET_FOR_TEST", raising=False)
    r = run_cli(*args, cwd=tmp_path)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], r.stderr


def _completions(line: str) -> set[str]:
    assert SCRIPT.is_file(), "pyproject.toml's [project.scripts] entry is not installed"
    env = {**os.environ, "COMP_LINE": line}
    r = subprocess.run([str(SCRIPT), "-sc", "query=bash"], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    return set(r.stdout.split())


def test_completion_of_an_enum_key_offers_every_choice_as_the_command_line_takes_it():
    assert _completions("allconv-sweep model.init=") == {f"model.init={name}" for name in INITS}
    assert _completions("allconv-sweep model=model_a model.head=") == {"model.head=conv", "model.head=fc"}
    assert _completions("allconv-sweep model.init=caffe_") == {"model.init=caffe_xavier", "model.init=caffe_msra"}
    assert _completions("allconv-sweep optimizer.lr=") == {"optimizer.lr=0.05"}  # other keys: Hydra's answer
