"""Records of runs: a run folder's files (run.json, metrics.json: the RunRecord), whether its run is
finished (state, lock), and a sweep folder's manifest (sweep.json). A run's identity and result key:
allconv_sweep.config.identity."""

from allconv_sweep.runs.files import Unreadable, ensure_writable, write_json
from allconv_sweep.runs.record import (
    FINISHED,
    MANIFEST,
    METRICS_FILE,
    REPORT_STATUSES,
    RUN_FILE,
    RunRecord,
    git_commit,
    read_manifest,
    read_record,
    read_run_info,
    versions,
    write_manifest,
    write_record,
)
from allconv_sweep.runs.state import RunState, lock, run_state

__all__ = ["FINISHED", "MANIFEST", "METRICS_FILE", "REPORT_STATUSES", "RUN_FILE", "RunRecord", "RunState", "Unreadable",
           "ensure_writable", "git_commit", "lock", "read_manifest", "read_record", "read_run_info", "run_state",
           "versions", "write_json", "write_manifest", "write_record"]
