"""evaluate and visualize say what they wrote: each file's full path on a line of its own (paste-able), and
for evaluate the headline numbers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import make_cfg


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    """All-CNN-C trained one epoch on the tiny fake data."""
    from allconv_sweep.training.train import train

    tmp = tmp_path_factory.mktemp("inspect_train")
    assert train(make_cfg(tmp))["status"] == "ok"
    return tmp / "run" / "checkpoints" / "last.ckpt"


def _run(module: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ALLCONV_CACHE": str(cwd / "cache")}
    r = subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    return r


def _printed_paths(stdout: str) -> list[Path]:
    """The lines that are a path and nothing else."""
    return [Path(ln) for ln in stdout.splitlines() if ln.startswith("/") and " " not in ln]


def test_evaluate_prints_the_path_of_eval_json_and_the_headline_numbers(ckpt, tmp_path):
    run = (tmp_path / "out").resolve()  # relative on the command line: the printed path is the full one
    r = _run("allconv_sweep.evaluate", f"ckpt={ckpt}", "device=cpu", "hydra.run.dir=out", cwd=tmp_path)
    assert _printed_paths(r.stdout) == [run / "eval.json"], r.stdout
    record = json.loads((run / "eval.json").read_text())
    headline = (f"all_cnn_c on fake, {record['test_size']} test images: top-1 accuracy {100 * record['test_acc']:.2f}% "
                f"(error {100 * record['test_error']:.2f}%), top-5 accuracy {100 * record['test_acc_top5']:.2f}%")
    assert headline in r.stdout, r.stdout


def test_visualize_prints_the_path_of_each_file_it_wrote(ckpt, tmp_path):
    run = (tmp_path / "viz").resolve()
    r = _run("allconv_sweep.visualize", f"ckpt={ckpt}", "target=filters", "layer=conv2", "units=[0,1]",
             "panel_px=32", "hydra.run.dir=viz", cwd=tmp_path)
    written = sorted(p for p in run.iterdir() if p.suffix in (".png", ".md"))
    printed = _printed_paths(r.stdout)
    assert sorted(printed) == written and printed[-1] == run / "index.md", r.stdout
    assert f"wrote {len(written) - 1} figures and index.md" in r.stdout


def test_a_data_key_the_checkpoints_data_has_not_is_one_line(ckpt, tmp_path):
    """data.root for a checkpoint of data=fake (which has no root): one line naming it, exit 2, no eval.json."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ALLCONV_CACHE": str(tmp_path / "cache")}
    r = subprocess.run([sys.executable, "-m", "allconv_sweep.evaluate", f"ckpt={ckpt}", "device=cpu",
                        f"data.root={tmp_path}", "hydra.run.dir=out"], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 2, r.stderr[-2000:]
    assert r.stderr.strip().splitlines() == [f"error: data.root={tmp_path}: the checkpoint's data (fake) has no "
                                             f"root; it has: " + r.stderr.split("it has: ")[1].strip()], r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "out" / "eval.json").exists()


def test_evaluate_over_several_checkpoints_with_m_scores_each(ckpt, tmp_path):
    """`-m ckpt=a,b`: Hydra runs the jobs in one process, so a job that ends well returns; a sys.exit(0) would
    end the process after the first job with exit 0 and no word."""
    import shutil

    other = tmp_path / "other.ckpt"
    shutil.copy(ckpt, other)
    r = _run("allconv_sweep.evaluate", "-m", f"ckpt={ckpt},{other}", "device=cpu", "hydra.sweep.dir=sw", cwd=tmp_path)
    written = sorted((tmp_path / "sw").rglob("eval.json"))
    assert len(written) == 2 and sorted(_printed_paths(r.stdout)) == [p.resolve() for p in written], r.stdout
