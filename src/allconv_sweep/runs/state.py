"""What to do with a run folder for a run of a given result key, and the folder's lock. A folder holding a run
of another key (or of an earlier version, which recorded none) is never taken for this run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional

from filelock import FileLock, Timeout

from allconv_sweep.config.identity import differences
from allconv_sweep.errors import UserError
from allconv_sweep.runs.files import Unreadable
from allconv_sweep.runs.record import FINISHED, LOCK_FILE, RunRecord, read_record, read_run_info


@dataclass
class RunState:
    """kind: new (nothing there) | done (finished, same key: skip) | resume (same key, last.ckpt) | rerun (same
    key, failed / interrupted / damaged record, nothing to resume) | mismatch (another or unknown config)"""
    kind: str
    why: str = ""
    record: Optional[RunRecord] = None

    def refusal(self, run_dir: Path) -> str:
        """The one-line error for a single run into a folder that holds another config's run."""
        return (f"{run_dir}: {self.why}; train into another folder (hydra.run.dir=...), "
                f"or resume=false to replace that run")


def run_state(run_dir: str | Path, key: str, ident: Optional[Mapping[str, Any]] = None,
              resume: bool = True) -> RunState:
    run_dir = Path(run_dir)
    last = run_dir / "checkpoints" / "last.ckpt"
    info = read_run_info(run_dir)
    try:
        record, damaged = read_record(run_dir), None
    except Unreadable as e:
        record, damaged = None, str(e)
    if record is None and not damaged and info is None and not last.is_file():
        return RunState("new")
    if not resume:
        return RunState("new", "resume=false: starting over")
    recorded = (record.result_key if record is not None else None) or (info or {}).get("result_key")
    if recorded is None:
        if record is None and not last.is_file():  # only a damaged metrics.json: nothing to reuse or lose
            return RunState("rerun", f"{damaged}: run again")
        return RunState("mismatch", "no result key recorded (made by an earlier version of allconv_sweep, "
                                    "or not by it): its config is unknown", record)
    if recorded != key:
        return RunState("mismatch", f"it holds a run of another config: {differences((info or {}).get('identity'), ident or {})}",
                        record)
    if record is not None and record.status in FINISHED:
        return RunState("done", f"finished ({record.status})", record)
    if last.is_file():
        why = f"{damaged}; " if damaged else (f"{record.status} before; " if record else "")
        return RunState("resume", why + "resume from last.ckpt", record)
    return RunState("rerun", damaged or (f"{record.status} before" if record else "started, no checkpoint"), record)


def lock(folder: str | Path, what: str):
    """An exclusive, non-blocking lock on <folder>/.lock (released when the process exits, however it exits): a
    second process on the same folder gets one line instead of a race."""
    lk = FileLock(str(Path(folder) / LOCK_FILE))
    try:
        lk.acquire(timeout=0)
    except Timeout:
        raise UserError(f"{folder} is in use by another {what} (lock {Path(folder) / LOCK_FILE} held): "
                        f"wait for it, or use another folder") from None
    return lk
