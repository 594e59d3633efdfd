"""A quiet console: a few lines of config before a run (the whole tree on request, never before an error),
one plain line per epoch when stdout is no terminal (the rich bar on one), and `make help`."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TINY = ["experiment=smoke", "data.train_size=64", "data.val_size=32", "data.test_size=32", "data.batch_size=32",
        "trainer.max_epochs=2"]


def env_for(cwd: Path) -> dict[str, str]:
    return {**os.environ, "ALLCONV_CACHE": str(cwd / "cache"), "ALLCONV_DATA": str(cwd / "nodata")}


def run_piped(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "allconv_sweep", *args], cwd=cwd, env=env_for(cwd),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=600)


def test_an_error_is_not_preceded_by_the_config_tree_and_print_config_full_shows_it(tmp_path):
    junk = tmp_path / "junk.ckpt"
    junk.write_text("not a checkpoint")
    args = [*TINY, f"finetune_from={junk}", f"hydra.run.dir={tmp_path / 'run'}"]
    r = run_piped(*args, cwd=tmp_path)
    assert r.returncode == 2 and f"error: finetune_from={junk}: not a checkpoint" in r.stderr, r.stderr[-2000:]
    assert "momentum" not in r.stdout and len([ln for ln in r.stdout.splitlines() if ln.strip()]) <= 6, r.stdout
    full = run_piped(*args, "print_config=full", cwd=tmp_path)
    assert full.returncode == 2 and "momentum: 0.9" in full.stdout and "weight_decay: 0.001" in full.stdout


def test_a_bad_print_config_is_one_line(tmp_path):
    r = run_piped(*TINY, "print_config=tree", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 2 and len(lines) == 1 and "print_config='tree'" in lines[0] and "full" in lines[0], r.stderr


def test_make_help_lists_every_phony_target_with_what_it_does():
    makefile = (ROOT / "Makefile").read_text()
    phony = re.search(r"^\.PHONY:(.*)$", makefile, re.M).group(1).split()
    r = subprocess.run(["make", "--no-print-directory", "help"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    listed = {ln.split()[0]: ln.split(None, 1)[1] for ln in r.stdout.splitlines() if len(ln.split()) > 1}
    assert sorted(listed) == sorted(phony), r.stdout
    bare = subprocess.run(["make", "--no-print-directory"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert bare.returncode == 0 and bare.stdout == r.stdout  # the default target: nothing is built
