"""The JSON files of run and sweep folders (written whole or not at all, without NaN), and the probe that an
output folder can be written."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Optional

from allconv_sweep.atomic import atomic_write
from allconv_sweep.errors import UserError


class Unreadable(Exception):
    """A file that exists but is not the JSON object it should be (truncated, overwritten, ...)."""


def _finite(value: Any) -> Any:
    """NaN and inf are not JSON: they become null (a diverged run's loss, say)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def write_json(path: str | Path, data: Any) -> Path:
    with atomic_write(path, "w") as f:
        json.dump(_finite(data), f, indent=2, default=str, allow_nan=False)
        f.write("\n")
    return Path(path)


def read_json(path: str | Path) -> Optional[dict[str, Any]]:
    """None when absent; Unreadable when present but not a JSON object."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise Unreadable(f"{path.name} is not valid JSON ({type(e).__name__})") from None
    if not isinstance(data, dict):
        raise Unreadable(f"{path.name} is not a JSON object")
    return data


def ensure_writable(path: str | Path) -> Path:
    """Create the folder and write a probe file (permissions alone can lie: root, /proc); one-line UserError
    if that fails. The probe is named per process: DDP ranks probe the same folder at once."""
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
