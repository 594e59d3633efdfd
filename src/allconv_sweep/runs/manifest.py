"""sweep.json: the manifest of every job the runs of a sweep folder planned."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from allconv_sweep.runs.files import Unreadable, read_json, write_json
from allconv_sweep.runs.record import MANIFEST, RunRecord


def read_manifest(sweep_dir: str | Path) -> dict[str, Any]:
    try:
        return read_json(Path(sweep_dir) / MANIFEST) or {}
    except Unreadable:
        return {}


def write_manifest(sweep_dir: str | Path, name: str, jobs: Iterable[tuple[str, RunRecord]]) -> Path:
    """sweep.json: every job any run of this sweep folder planned, as {subdir: planned RunRecord}
    (merged: a seeds or final sweep adds its jobs to the folder of the sweep it extends)."""
    sweep_dir = Path(sweep_dir)
    data = read_manifest(sweep_dir)
    data["name"] = data.get("name") or name
    planned = data.setdefault("jobs", {})
    for subdir, record in jobs:
        planned[subdir] = {k: v for k, v in record.to_dict().items() if v not in (None, [], {})}
    return write_json(sweep_dir / MANIFEST, data)
