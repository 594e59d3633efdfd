"""Every multirun is a sweep, a sweep job is its config however it is spelled, and the paths the tool prints
go back into it as they are (issue 20: paths round-trip, -m as good as +sweep, canonical jobs)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from hydra.core.override_parser.overrides_parser import OverridesParser

from conftest import ROOT, SWEEP_TINY, job_dirs, metrics, multirun

# SWEEP_TINY on the default network (all_cnn_c), so that model=all_cnn_c restates a default
TINY_DEFAULT_MODEL = [a for a in SWEEP_TINY if not a.startswith("model=")]


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT / "src")})


def _evaluate(args: list[str]) -> int:
    """`python -m allconv_sweep.evaluate <args>` in this process; returns the exit code."""
    from hydra.core.global_hydra import GlobalHydra

    from allconv_sweep.inspection.evaluate import main

    old = sys.argv
    GlobalHydra.instance().clear()
    sys.argv = ["evaluate", *args]
    try:
        main()
        return 0
    except SystemExit as e:
        return 0 if e.code is None else int(e.code)
    finally:
        sys.argv = old
        GlobalHydra.instance().clear()


def test_a_sweep_jobs_printed_paths_go_back_into_the_tool_unquoted(tmp_path):
    assert multirun(["+sweep=lr_grid", "optimizer.lr=0.1"], tmp_path) == 0
    sweep = tmp_path / "lr_grid"
    (job,) = job_dirs(sweep)
    ckpt = job / "checkpoints" / "last.ckpt"
    parser = OverridesParser.create()
    for key, path in (("ckpt", ckpt), ("finetune_from", ckpt), ("data.root", job), ("sweep.from", sweep)):
        (override,) = parser.parse_overrides([f"{key}={path}"])
        assert override.value() == str(path), (key, path)
    assert _evaluate([f"ckpt={ckpt}", f"hydra.run.dir={tmp_path / 'eval'}"]) == 0
    assert multirun([f"finetune_from={ckpt}", f"hydra.run.dir={tmp_path / 'ft'}"], tmp_path) == 0
    assert metrics(tmp_path / "ft")["status"] == "ok"
    assert multirun(["+sweep=seeds", f"sweep.from={sweep}", "sweep.n_seeds=1", "sweep.dry_run=true"], tmp_path) == 0
    assert multirun(["+sweep=lr_grid", f"data.root={job}", "sweep.dry_run=true"], tmp_path, tiny=False) == 0


def test_a_path_hydra_cannot_read_unquoted_gets_one_line_with_the_quoting(tmp_path):
    odd = tmp_path / "odd=dir,x" / "last.ckpt"
    for command, key in (("allconv_sweep", "finetune_from"), ("allconv_sweep.evaluate", "ckpt")):
        r = _cli(command, f"{key}={odd}", cwd=tmp_path)
        err = [line for line in r.stderr.splitlines() if line.strip()]
        assert r.returncode == 2 and len(err) == 1, r.stderr
        assert err[0].startswith(f"error: {key}={odd}: ") and err[0].endswith(f"'{key}=\"{odd}\"'"), err[0]
    r = _cli("allconv_sweep.evaluate", f'ckpt="{odd}"', cwd=tmp_path)  # as the shell passes the quoting shown
    assert r.returncode == 2 and "grammar" not in r.stderr and str(odd) in r.stderr, r.stderr  # read: no such file


def test_a_plain_multirun_is_a_sweep_and_the_same_command_skips_its_finished_jobs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ALLCONV_SWEEPS_DIR", str(tmp_path / "sweeps"))
    args = ["-m", "optimizer.lr=0.25,0.1", *SWEEP_TINY, "print_config=true"]
    assert multirun(args, tmp_path, tiny=False) == 0
    sweep = tmp_path / "sweeps" / "multirun"
    out = capsys.readouterr()
    assert "job 1 of 2" in out.out + out.err and "job 2 of 2" in out.out + out.err
    assert (sweep / "results.md").is_file() and (sweep / "sweep.json").is_file() and (sweep / "table3.png").is_file()
    jobs = job_dirs(sweep)
    assert [metrics(j)["lr"] for j in jobs] == [0.1, 0.25] and all(":" in j.name and "=" not in j.name for j in jobs)
    stamps = [(j / "metrics.json").stat().st_mtime_ns for j in jobs]
    assert multirun(args, tmp_path, tiny=False) == 0
    assert [(j / "metrics.json").stat().st_mtime_ns for j in job_dirs(sweep)] == stamps
    out = capsys.readouterr()
    assert "0 to run" in out.out + out.err and "2 finished and skipped" in out.out + out.err


def _dry_run(args: list[str], root: Path, capsys) -> str:
    capsys.readouterr()
    assert multirun([*args, *TINY_DEFAULT_MODEL, "sweep.dry_run=true"], root, tiny=False) == 0
    out = capsys.readouterr()
    return out.out + out.err


def test_a_job_is_its_config_however_it_is_spelled(tmp_path, capsys):
    assert multirun(["+sweep=lr_grid", "optimizer.lr=0.1,0.05", *TINY_DEFAULT_MODEL], tmp_path, tiny=False) == 0
    done = sorted(j.name for j in job_dirs(tmp_path / "lr_grid"))
    assert len(done) == 2
    # the README's form, model=all_cnn_c being the default; the same numbers and defaults written another way
    for args in (["+sweep=lr_grid", "optimizer.lr=0.1,0.05", "model=all_cnn_c"],
                 ["+sweep=lr_grid", "optimizer.lr=1e-1,5e-2", "seed=0", "augment=none", "optimizer.momentum=0.9"]):
        out = _dry_run(args, tmp_path, capsys)
        assert "0 to run" in out and "2 finished and skipped" in out, out
        skipped = [line.split("done, skip")[1].split()[0] for line in out.splitlines() if "done, skip" in line]
        assert sorted(skipped) == done
    out = _dry_run(["+sweep=lr_grid", "optimizer.lr=0.05,5e-2"], tmp_path, capsys)  # one job, said in one line
    assert "sweep lr_grid: 1 jobs" in out and "1 finished and skipped" in out, out
    assert "note: optimizer.lr=0.05 comes more than once in the sweep (values are normalised" in out
    assert "exclude_keys" not in out
