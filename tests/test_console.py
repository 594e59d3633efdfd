"""A quiet console: a few lines of config before a run (the whole tree on request, never before an error),
one plain line per epoch when stdout is no terminal (the rich bar on one), and `make help`."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TINY = ["experiment=smoke", "data.train_size=64", "data.val_size=32", "data.test_size=32", "data.batch_size=32",
        "trainer.max_epochs=2"]
EPOCH_LINE = re.compile(r"^Epoch (\d+)/2 .*train/loss \d\.\d+ .*val/acc \d\.\d+", re.M)


def env_for(cwd: Path) -> dict[str, str]:
    return {**os.environ, "ALLCONV_CACHE": str(cwd / "cache"), "ALLCONV_DATA": str(cwd / "nodata")}


def run_piped(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "allconv_sweep", *args], cwd=cwd, env=env_for(cwd),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=600)


def config_lines(stdout: str) -> list[str]:
    """What the run printed before training: up to the first epoch line (or the end)."""
    lines = stdout.splitlines()
    first = next((i for i, ln in enumerate(lines) if ln.startswith("Epoch ")), len(lines))
    return [ln for ln in lines[:first] if ln.strip()]


def test_a_piped_run_prints_its_config_in_a_few_lines_and_one_plain_line_per_epoch(tmp_path):
    r = run_piped(*TINY, "optimizer.lr=0.02", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    for stream in (r.stdout, r.stderr):
        assert "\r" not in stream and "\x1b" not in stream  # no bar redrawn, no ANSI, no cursor-up `[A`
    assert EPOCH_LINE.findall(r.stdout) == ["1", "2"], r.stdout
    assert len([ln for ln in r.stdout.splitlines() if ln.startswith("Epoch ")]) == 2
    shown = config_lines(r.stdout)
    text = "\n".join(shown)
    assert len(shown) <= 6, text
    assert "model=all_cnn_c" in text and "data=fake" in text and "experiment=smoke" in text  # the choices
    assert "optimizer.lr=0.02" in text and "trainer.max_epochs=2" in text  # the keys that differ
    assert "momentum" not in text and "weight_decay" not in text  # not a key left at its default
    assert "print_config=full" in text  # says how to see the rest


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


def test_on_a_terminal_the_rich_progress_bar_is_used(tmp_path):
    argv = [sys.executable, "-m", "allconv_sweep", *TINY, f"hydra.run.dir={tmp_path / 'run'}"]
    env = {**env_for(tmp_path), "COLUMNS": "120", "LINES": "40", "TERM": "xterm-256color"}
    env.pop("NO_COLOR", None)
    pid, fd = pty.fork()
    if pid == 0:  # the child: the run, its stdout and stderr a terminal
        os.chdir(tmp_path)
        os.execve(sys.executable, argv, env)
    out, deadline = b"", time.monotonic() + 600
    try:
        while time.monotonic() < deadline:
            if select.select([fd], [], [], 5)[0]:
                try:
                    chunk = os.read(fd, 65536)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not chunk:
                    break
                out += chunk
    finally:
        os.close(fd)
        _, status = os.waitpid(pid, 0)
    text = out.decode(errors="replace")
    assert os.waitstatus_to_exitcode(status) == 0, text[-2000:]
    assert "\x1b[" in text and "Epoch 2/2" in text and "━" in text  # the rich bar, redrawn in place
    assert not EPOCH_LINE.search(text.replace("\r", "\n"))  # not the plain lines of a pipe


def test_make_help_lists_every_phony_target_with_what_it_does():
    makefile = (ROOT / "Makefile").read_text()
    phony = re.search(r"^\.PHONY:(.*)$", makefile, re.M).group(1).split()
    r = subprocess.run(["make", "--no-print-directory", "help"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    listed = {ln.split()[0]: ln.split(None, 1)[1] for ln in r.stdout.splitlines() if len(ln.split()) > 1}
    assert sorted(listed) == sorted(phony), r.stdout
    bare = subprocess.run(["make", "--no-print-directory"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert bare.returncode == 0 and bare.stdout == r.stdout  # the default target: nothing is built
