"""Reading a sweep folder back: every job it holds or planned, with its record or as missing."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from allconv_sweep.config.identity import is_neutral, override_key, result_key
from allconv_sweep.config.records import config_values, read_overrides_file  # records read as data, never run
from allconv_sweep.errors import UserError
from allconv_sweep.runs.files import Unreadable
from allconv_sweep.runs.record import (
    CONFIG_FIELDS,
    MANIFEST,
    METRICS_FILE,
    RUN_FILE,
    RunRecord,
    read_manifest,
    read_record,
    read_run_info,
)

# Shown in their own columns, so not part of a run's "setting". data.val_size is the protocol: the lr
# selection runs hold out validation images, the final runs (+sweep=final) train on all (val_size=0).
VARYING_KEYS = {"optimizer.lr", "seed", "model", "data", "augment", "data.val_size"}
# Identity keys a run's lr, seed and protocol set: left out of the config digest that groups runs.
VARYING_IDENTITY = {"optimizer.lr", "seed", "data.val_size"}


@dataclass
class JobResult(RunRecord):
    """One job of the sweep, as the report reads it back: its RunRecord (status "missing" when it left
    none), its identity (run.json), where it is, and what sets it apart from the folder's other runs."""
    job: str = ""
    path: Path = Path(".")
    setting: str = ""       # overrides that set this run apart from the others, beyond model/data/augment/lr/seed
    identity: dict[str, Any] = field(default_factory=dict)  # run.json's (empty when it has none)

    @property
    def digest(self) -> str:
        """Its config (run.json identity) minus lr, seed and protocol."""
        if not self.identity:
            return "unknown"
        return result_key({k: v for k, v in self.identity.items() if k not in VARYING_IDENTITY})

    @property
    def settings(self) -> list[str]:
        return sorted(o for o in self.overrides if override_key(o) not in VARYING_KEYS and not is_neutral(override_key(o)))

    @property
    def group(self) -> tuple:
        return (self.data, self.augment, self.model, self.setting)


def collect(sweep_dir: str | Path) -> list[JobResult]:
    """Every job the folder holds or the sweep planned (sweep.json), with its record or as missing."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise UserError(f"{sweep_dir}: no such folder; give a sweep folder, e.g. outputs/sweeps/pooling_ablation")
    planned = read_manifest(sweep_dir).get("jobs", {})
    names = {d.name: d for d in sweep_dir.iterdir()
             if d.is_dir() and any((d / f).exists() for f in (METRICS_FILE, RUN_FILE, ".hydra"))}
    for sub in planned:
        names.setdefault(sub, sweep_dir / sub)
    is_sweep = planned or (sweep_dir / "multirun.yaml").is_file() or any((d / METRICS_FILE).is_file() for d in names.values())
    if not names or not is_sweep:
        raise UserError(f"{sweep_dir}: not a sweep folder (no job folders with {METRICS_FILE} or .hydra/, "
                        f"no {MANIFEST}); give the folder a sweep wrote, e.g. outputs/sweeps/pooling_ablation")
    rows = [_row(name, path, planned.get(name, {})) for name, path in sorted(names.items())]
    common = set(common_settings(rows))
    by_group: dict[tuple, set[str]] = {}
    for r in rows:
        r.setting = " ".join(o for o in r.settings if o not in common)
        by_group.setdefault(r.group, set()).add(r.digest)
    # runs with the same overrides but another config (an edited YAML, another version's defaults) are
    # never averaged together: they get the config's digest in their setting
    for r in rows:
        if len(by_group[r.group]) > 1:
            r.setting = (r.setting + " " if r.setting else "") + f"[config {r.digest[:8]}]"
    return rows


def common_settings(rows: list[JobResult]) -> list[str]:
    """Overrides every job of the folder shares (a short schedule, a data subset, ...): the report's header."""
    return sorted(set.intersection(*(set(r.settings) for r in rows))) if rows else []


def _row(name: str, path: Path, plan: dict) -> JobResult:
    hydra_dir = path / ".hydra"
    try:
        record = read_record(path)
        damaged = None
    except Unreadable as e:
        record, damaged = None, str(e)
    if record is not None:
        info = record.to_dict()
    else:  # no (readable) metrics.json: the job never ran, is still running, or died without a record
        info = {k: v for k, v in plan.items() if k in RunRecord.__dataclass_fields__}
        if (hydra_dir / "config.yaml").is_file():
            values = config_values(hydra_dir / "config.yaml", dict(CONFIG_FIELDS.values()))
            for field_, (key, _) in CONFIG_FIELDS.items():
                info.setdefault(field_, values[key])
        started = hydra_dir.is_dir() or (path / RUN_FILE).is_file()
        if damaged:
            reason = f"{damaged}: its result is unknown"
        elif plan.get("reason"):  # the sweep saw it end (a SLURM job cancelled, killed, ...)
            reason = str(plan["reason"])
        elif err := _logged_error(path):  # stopped by bad input: the one line it printed
            reason = err
        else:
            reason = f"no {METRICS_FILE}: " + ("started but never finished (running, killed, or stopped by an error: "
                                               "see the job's .log)" if started else "never started")
        if (path / "checkpoints" / "last.ckpt").is_file():
            reason += "; last.ckpt present, a re-run resumes it"
        info.update(status="missing", reason=reason, lr=_f(info.get("lr")))
    # .hydra/overrides.yaml shown as text; checked before any of it is composed
    overrides = info.get("overrides") or plan.get("overrides") or read_overrides_file(hydra_dir / "overrides.yaml")
    ident = (read_run_info(path) or {}).get("identity")
    return JobResult(**{**info, "overrides": list(overrides)}, job=name, path=path,
                     identity=ident if isinstance(ident, dict) else {})


def _logged_error(path: Path) -> Optional[str]:
    """The last one-line error a job printed to its log (Hydra writes <job dir>/<job name>.log)."""
    for log in sorted(path.glob("*.log")):
        try:
            lines = [ln.split("error: ", 1)[1] for ln in log.read_text(errors="replace").splitlines() if "error: " in ln]
        except OSError:
            continue
        if lines:
            return lines[-1].strip()
    return None


def _f(v: Any) -> Optional[float]:
    try:
        return None if v is None else float(v)
    except (TypeError, ValueError):
        return None
