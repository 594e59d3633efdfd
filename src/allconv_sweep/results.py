"""metrics.json: the one record of a run, written once and atomically at its end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

STATUSES = ("ok", "diverged", "failed")
METRICS_FILE = "metrics.json"


def ensure_writable(path: str | Path) -> Path:
    """Create the folder and write a probe file (permissions alone can lie: root, /proc); one-line UserError
    if that fails. The probe is named per process: DDP ranks probe the same folder at once."""
    from allconv_sweep.errors import UserError

    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write_probe.{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise UserError(f"output folder {path} is not writable ({e.strerror}): choose another with "
                        f"hydra.run.dir=<folder>") from None
    return path


def write_metrics(output_dir: str | Path, metrics: dict[str, Any]) -> Path:
    """Write to a temp file in the same folder, then rename: readers never see half a file."""
    assert metrics.get("status") in STATUSES, metrics.get("status")
    out = Path(output_dir)
    fd, tmp = tempfile.mkstemp(dir=out, prefix=".metrics.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(metrics, f, indent=2, sort_keys=False, default=str)
        f.write("\n")
    path = out / METRICS_FILE
    os.replace(tmp, path)
    return path


def read_metrics(run_dir: str | Path) -> dict[str, Any] | None:
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def versions() -> dict[str, str]:
    import hydra
    import lightning
    import torch
    import torchvision
    return {"python": sys.version.split()[0], "torch": torch.__version__, "torchvision": torchvision.__version__,
            "lightning": lightning.__version__, "hydra": hydra.__version__}


def git_commit() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        if sha.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return sha.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None
