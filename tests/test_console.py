"""A quiet console: a few lines of config before a run (the whole tree on request, never before an error),
one plain line per epoch when stdout is no terminal (the rich bar on one), and `make help`."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_make_help_lists_every_phony_target_with_what_it_does():
    makefile = (ROOT / "Makefile").read_text()
    phony = re.search(r"^\.PHONY:(.*)$", makefile, re.M).group(1).split()
    r = subprocess.run(["make", "--no-print-directory", "help"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    listed = {ln.split()[0]: ln.split(None, 1)[1] for ln in r.stdout.splitlines() if len(ln.split()) > 1}
    assert sorted(listed) == sorted(phony), r.stdout
    bare = subprocess.run(["make", "--no-print-directory"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert bare.returncode == 0 and bare.stdout == r.stdout  # the default target: nothing is built
