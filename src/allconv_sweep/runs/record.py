"""Which run is this, and is it finished? This module owns the answer, for every caller.

A run's *identity* is its resolved config as flat dotted keys, minus ONE declared list of keys that cannot
change a result (NEUTRAL_KEYS: where it runs, how it logs, where caches live, ...). Its *result key* is a
digest of the identity. Every "already finished?" decision compares keys: train() on an existing folder,
the sweep planner's skip/resume/run plan and its dry run, and the report's grouping. A folder holding a
run of another key (or of an earlier version, which recorded none) is never taken for this run.

Files of a run folder (all written atomically, JSON without NaN):
  run.json      at the start: result key, identity, overrides, W&B run id (kept across resumes)
  metrics.json  at the end: the RunRecord (status, accuracies, ... and the result key)
A sweep folder holds sweep.json, the manifest of the jobs every run of the sweep planned.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from enum import Enum
from typing import Any, Iterable, Mapping, Optional

from allconv_sweep.errors import UserError
from allconv_sweep.files import file_mode

METRICS_FILE = "metrics.json"
RUN_FILE = "run.json"
MANIFEST = "sweep.json"
LOCK_FILE = ".lock"

# What a run folder's metrics.json can say. ok and diverged are results (the sweep skips them);
# failed (a crash) and interrupted (a signal; last.ckpt kept) are re-run, resuming where they can.
FINISHED = ("ok", "diverged")
STATUSES = ("ok", "diverged", "failed", "interrupted")
# The report's view adds a job the sweep planned that left no metrics.json.
REPORT_STATUSES = STATUSES + ("missing",)

# THE keys that cannot change a result; every other key of the resolved config is part of the result key.
# A key here also covers everything under it. The folder names of a sweep leave these out
# (conf/hydra/default.yaml derives its exclude_keys from this list: see sweep_dirname_excludes).
NEUTRAL_KEYS = (
    "hydra",                        # Hydra's own settings (run/sweep folders, launcher plugin, logging)
    "launcher",                     # where and how the jobs of a sweep run
    "logger",                       # csv / tensorboard / wandb, project, tags
    "tracking",                     # W&B group, run name, tags
    "sweep",                        # the sweep's name, folder, dry run, seeds-from
    "paths",                        # this run's folder, the whitening cache (keyed by the data itself)
    "resume",                       # continue from last.ckpt or start over: the same result either way
    "print_config",
    "trainer.enable_progress_bar",
    "callbacks.best_checkpoint.dirpath",  # where checkpoints go (the run's folder)
    "callbacks.last_checkpoint.dirpath",
    "callbacks.progress_bar",       # how progress is shown
    "callbacks.flush_loggers",      # when log rows reach the disk
    "callbacks.lr_monitor",         # what is logged
    "data.download",                # fetch the files when missing: the files, not the fetch, decide
    "data.verify",                  # md5 check of the official files
)
# Paths in the identity are compared as absolute paths: ../data and /home/me/data are the same data.
PATH_KEYS = ("data.root", "finetune_from")


def is_neutral(key: str) -> bool:
    return any(key == k or key.startswith(k + ".") for k in NEUTRAL_KEYS)


# --------------------------------------------------------------------------------------------- identity

@functools.lru_cache(maxsize=1)
def dirname_exclude_keys() -> tuple[str, ...]:
    """The override keys a sweep job's folder name leaves out (hydra.job.config.override_dirname.exclude_keys,
    through the resolver ${allconv.dirname_excludes:}): every key under NEUTRAL_KEYS that any config file
    sets, so that adding launcher=gpus or logger=wandb to a re-run finds the same folders; plus the paths
    (a '/' in a folder name makes sub-folders), which stay in the result key, so a changed data.root is
    refused, never reused."""
    from omegaconf import OmegaConf

    from allconv_sweep.config import config_dir, sweeps_dir

    keys = set(NEUTRAL_KEYS) | set(PATH_KEYS)
    roots = [(config_dir(), None)]
    try:
        roots.append((sweeps_dir(), "sweep"))
    except FileNotFoundError:
        pass
    for root, group in roots:
        for path in sorted(root.rglob("*.yaml")):
            head = path.read_text(encoding="utf-8")[:512]
            package = next((line.split("@package", 1)[1].strip() for line in head.splitlines()
                            if line.startswith("#") and "@package" in line), None)
            if package is None:
                package = group if group is not None else ".".join(path.relative_to(root).parts[:-1])
            prefix = "" if package in ("_global_", "_here_") else package
            content = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
            if not isinstance(content, dict):
                continue
            content.pop("defaults", None)
            flat: dict[str, Any] = {}
            _flatten_all(content, prefix, flat)
            for key in flat:
                parts = key.split(".")
                keys.update(k for k in (".".join(parts[:i + 1]) for i in range(len(parts))) if is_neutral(k))
    return tuple(sorted(k for k in keys if not k.startswith("hydra")))


# Characters a job's folder name (made from override values) never holds as they are: path separators and
# control characters (the file system would read a '/' as a sub-folder, '..' after it as the parent), and
# what Hydra's override grammar reads inside a quoted value ($ starts an interpolation, quotes and backslash end
# or escape it), so any job folder can be named back as key='<folder>'. '%' itself, so the encoding is
# one-to-one (two values never share a folder). '=' and ',' stay: they separate the overrides in the name.
_DIRNAME_UNSAFE = frozenset("/\\%$'\"") | frozenset(map(chr, range(32))) | {"\x7f"}
NAME_MAX = 255  # bytes in one folder name (Linux, macOS)


def safe_dirname(name: str) -> str:
    """A sweep job's folder name from its override_dirname (hydra.sweep.subdir, ${allconv.safe_dirname:...}):
    unsafe characters percent-encoded (model.name=x/../../up -> model.name=x%2F..%2F..%2Fup, one folder
    inside the sweep folder); '.' and '..' alone encoded; a name over NAME_MAX bytes shortened, with a hash
    of the whole name. A name without such characters is unchanged (existing sweep folders are found again)."""
    name = "".join(f"%{ord(c):02X}" if c in _DIRNAME_UNSAFE else c for c in str(name))
    if name in (".", ".."):
        name = name.replace(".", "%2E")
    if len(name.encode("utf-8")) > NAME_MAX:
        digest = hashlib.sha256(name.encode("utf-8")).hexdigest()[:16]
        head = name.encode("utf-8")[:NAME_MAX - len(digest) - 1].decode("utf-8", errors="ignore")
        name = f"{head}~{digest}"
    return name


def _flatten_all(value: Any, prefix: str, out: dict[str, Any]) -> None:
    if isinstance(value, Mapping) and value:
        for k, v in value.items():
            _flatten_all(v, f"{prefix}.{k}" if prefix else str(k), out)
    elif prefix:
        out[prefix] = value


def identity(cfg: Any) -> dict[str, Any]:
    """The resolved config (a DictConfig) minus the neutral keys, as {dotted key: value} (lists stay
    values). Neutral keys are skipped before anything under them is resolved: they may need Hydra's runtime."""
    out: dict[str, Any] = {}
    _walk(cfg, "", out)
    for key in PATH_KEYS:
        if isinstance(out.get(key), str):
            out[key] = os.path.abspath(os.path.expanduser(out[key]))
    return out


def _walk(node: Any, prefix: str, out: dict[str, Any]) -> None:
    from omegaconf import DictConfig, ListConfig, OmegaConf

    for k in node.keys():
        key = f"{prefix}.{k}" if prefix else str(k)
        if is_neutral(key):
            continue
        child = node._get_node(k)
        if isinstance(child, DictConfig) and not child._is_none() and not child._is_interpolation():
            before = len(out)
            _walk(node[k], key, out)
            if len(out) == before and not len(child):
                out[key] = {}
        elif isinstance(child, (DictConfig, ListConfig)):
            value = node[k]
            out[key] = (OmegaConf.to_container(value, resolve=True, enum_to_str=True)
                        if isinstance(value, (DictConfig, ListConfig)) else value)
        else:
            value = node[k]
            out[key] = getattr(value, "value", value) if isinstance(value, Enum) else value


def result_key(ident: Mapping[str, Any]) -> str:
    """A digest of an identity (see identity()): equal keys, equal configs up to the neutral keys."""
    blob = json.dumps(ident, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def differences(old: Optional[Mapping[str, Any]], new: Mapping[str, Any], limit: int = 4) -> str:
    """'optimizer.lr 0.05 -> 0.01, seed 0 -> 1' for the keys two identities disagree on."""
    if old is None:
        return "its config is unknown (no run.json)"
    keys = sorted(k for k in set(old) | set(new) if old.get(k, "<unset>") != new.get(k, "<unset>"))
    if not keys:
        return "same config, another key (written by another version of allconv_sweep)"

    def short(v: Any) -> str:
        s = "<unset>" if v == "<unset>" else json.dumps(v, default=str)
        return s if len(s) <= 72 else "..." + s[-69:]  # paths differ at their ends

    parts = [f"{k} {short(old.get(k, '<unset>'))} -> {short(new.get(k, '<unset>'))}" for k in keys[:limit]]
    return ", ".join(parts) + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


# ------------------------------------------------------------------------------------------- JSON files

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
    """Write to a temp file in the same folder, then rename: readers never see half a file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, file_mode())  # mkstemp's 0o600 -> the umask's mode, as every other file of a run
        with os.fdopen(fd, "w") as f:
            json.dump(_finite(data), f, indent=2, default=str, allow_nan=False)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


class Unreadable(Exception):
    """A file that exists but is not the JSON object it should be (truncated, overwritten, ...)."""


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


# ----------------------------------------------------------------------------------------------- record

@dataclass
class RunRecord:
    """One run: what metrics.json holds, what the sweep plans (status "missing" until it ran), what the
    report reads. Accuracies and errors are fractions; *_error = 1 - *_acc."""
    status: str
    reason: Optional[str] = None
    result_key: Optional[str] = None
    model: Optional[str] = None
    family: Optional[str] = None
    variant: Optional[str] = None
    data: Optional[str] = None
    preprocess: Optional[str] = None
    augment: Optional[str] = None
    lr: Optional[float] = None
    seed: Optional[int] = None
    batch_size: Optional[int] = None
    num_params: Optional[int] = None
    epochs_run: Optional[int] = None
    max_epochs: Optional[int] = None
    train_size: Optional[int] = None          # images per split: what the result was fitted on
    val_size: Optional[int] = None
    test_size: Optional[int] = None
    images_seen: Optional[int] = None         # training images over the whole run (all ranks)
    train_acc: Optional[float] = None         # the last epoch's, in training mode (dropout on)
    train_error: Optional[float] = None
    val_acc: Optional[float] = None           # the final model's
    val_error: Optional[float] = None
    test_acc: Optional[float] = None          # the final model's: the reported number
    test_error: Optional[float] = None
    best_val_test_acc: Optional[float] = None  # the best-validation checkpoint's test accuracy
    best_val_test_error: Optional[float] = None
    val_acc_top5: Optional[float] = None
    test_acc_top5: Optional[float] = None
    val_live_fraction: Optional[float] = None  # validation images with any class score > 0, final model
    wall_time_s: Optional[float] = None       # over all starts of a resumed run (to its checkpoint, or signal)
    wall_time_this_start_s: Optional[float] = None  # the start that wrote this record
    train_images_per_s: Optional[float] = None
    world_size: Optional[int] = None          # batch_size is per device: global batch = batch_size x world_size
    resumed_from: Optional[str] = None
    output_dir: Optional[str] = None
    overrides: list[str] = field(default_factory=list)
    device: Optional[str] = None
    precision: Optional[str] = None           # what ran (Lightning runs 16-mixed as bf16-mixed on a CPU)
    precision_requested: Optional[str] = None
    precision_reason: Optional[str] = None    # why (trainer.precision=auto: the hardware's native bf16 or not)
    cpu: Optional[str] = None                 # the CPU's model and its speed-relevant flags (CPU runs)
    slurm_job_id: Optional[str] = None
    wandb_run_id: Optional[str] = None
    versions: dict[str, str] = field(default_factory=dict)
    git_commit: Optional[str] = None

    def __post_init__(self) -> None:
        if self.status not in REPORT_STATUSES:
            raise ValueError(f"status {self.status!r}; valid: {', '.join(REPORT_STATUSES)}")

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "RunRecord":
        """Tolerant of records of earlier versions: unknown keys are ignored, missing ones are None."""
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in names}
        if kwargs.get("status") not in REPORT_STATUSES:
            kwargs["status"] = "failed"
            kwargs["reason"] = f"unknown status {data.get('status')!r} in {METRICS_FILE}"
        return cls(**kwargs)


def write_record(run_dir: str | Path, record: RunRecord) -> Path:
    if record.status not in STATUSES:
        raise ValueError(f"a run's {METRICS_FILE} cannot say {record.status!r}")
    return write_json(Path(run_dir) / METRICS_FILE, record.to_dict())


def read_record(run_dir: str | Path) -> Optional[RunRecord]:
    """The run's RunRecord; None when it has none; Unreadable when metrics.json is damaged."""
    data = read_json(Path(run_dir) / METRICS_FILE)
    return None if data is None else RunRecord.from_dict(data)


def read_run_info(run_dir: str | Path) -> Optional[dict[str, Any]]:
    """run.json, or None when absent or damaged (then the run's config is unknown)."""
    try:
        return read_json(Path(run_dir) / RUN_FILE)
    except Unreadable:
        return None


# ------------------------------------------------------------------------------------------- run state

@dataclass
class RunState:
    """What to do with a run folder for a run of result key `key`.

    kind: new (nothing there) | done (finished, same key: skip) | resume (same key, last.ckpt) |
          rerun (same key, failed / interrupted / damaged record, nothing to resume) |
          mismatch (a run of another or unknown config: never reused)"""
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
    anything = record is not None or damaged or info is not None or last.is_file()
    if not anything:
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
    if record is not None and record.finished:
        return RunState("done", f"finished ({record.status})", record)
    if last.is_file():
        why = f"{damaged}; " if damaged else (f"{record.status} before; " if record else "")
        return RunState("resume", why + "resume from last.ckpt", record)
    return RunState("rerun", damaged or (f"{record.status} before" if record else "started, no checkpoint"), record)


# ---------------------------------------------------------------------------------------- run folder

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


def lock(folder: str | Path, what: str):
    """An exclusive, non-blocking lock on <folder>/.lock (released when the process exits, however it
    exits): a second process on the same folder gets one line instead of a race."""
    from filelock import FileLock, Timeout

    lk = FileLock(str(Path(folder) / LOCK_FILE))
    try:
        lk.acquire(timeout=0)
    except Timeout:
        raise UserError(f"{folder} is in use by another {what} (lock {Path(folder) / LOCK_FILE} held): "
                        f"wait for it, or use another folder") from None
    return lk


def versions() -> dict[str, str]:
    import hydra
    import lightning
    import torch
    import torchvision
    return {"python": sys.version.split()[0], "torch": torch.__version__, "torchvision": torchvision.__version__,
            "lightning": lightning.__version__, "hydra": hydra.__version__}


def git_commit() -> Optional[str]:
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


# ------------------------------------------------------------------------------------------- manifest

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


# ------------------------------------------------------------------------------------------- lr choice

@dataclass
class Choice:
    """Per network (and setting): the learning rate chosen on validation error, and its test error.

    `rows` are the runs the test error is reported from: the final runs (retrained on the whole training
    set at the chosen lr, +sweep=final) when there are any, else the selection runs at that lr."""
    model: str
    family: Optional[str]
    variant: Optional[str]
    data: Optional[str]
    augment: Optional[str]
    setting: str                       # what sets these runs apart from the folder's others ("" if nothing)
    lr: Optional[float]
    chosen_on: str                     # "val" (the paper's rule), "test" (no validation split) or "none"
    rows: list[Any]                    # records of the runs reported (see above)
    candidates: dict[float, float]     # lr -> the score it was chosen on (mean error, common seeds)
    protocol: str = "select"           # "final": rows were trained on every training image; "select": on
                                       # the training split left after holding out the validation images
    num_params: Optional[int] = None

    def _values(self, attr: str) -> list[float]:
        return [getattr(r, attr) for r in self.rows if getattr(r, attr) is not None]

    @property
    def test_errors(self) -> list[float]:
        return self._values("test_error")

    @property
    def test_mean(self) -> Optional[float]:
        e = self.test_errors
        return sum(e) / len(e) if e else None

    @property
    def test_std(self) -> Optional[float]:
        e = self.test_errors
        if len(e) < 2:
            return None
        m = sum(e) / len(e)
        return math.sqrt(sum((x - m) ** 2 for x in e) / (len(e) - 1))

    @property
    def val_mean(self) -> Optional[float]:
        return self.candidates.get(self.lr) if self.chosen_on == "val" and self.lr is not None else None

    @property
    def statuses(self) -> set[str]:
        return {r.status for r in self.rows}


def choose(rows: list[Any]) -> list[Choice]:
    """Per group of runs that differ only in lr, seed and protocol (`row.group`): the lr with the lowest
    validation error, averaged over the seeds that every lr has (extra seeds at the chosen lr never tilt
    the choice); ties go to a non-diverged run, then the larger lr. No validation split at all: chosen on
    test error (flagged). Rows need: group, model, family, variant, data, augment, setting, lr, seed,
    status, val_error, test_error, val_size, num_params."""
    groups: dict[tuple, list[Any]] = {}
    for r in rows:
        if r.model is not None:
            groups.setdefault(r.group, []).append(r)
    choices = []
    for members in groups.values():
        first = members[0]
        done = [r for r in members if r.status in FINISHED and r.lr is not None]
        final = [r for r in done if r.val_size == 0]          # trained on every training image (+sweep=final)
        select = [r for r in done if r.val_size != 0] or final
        metric = "val_error" if any(r.val_error is not None for r in select) else "test_error"
        by_lr: dict[float, list[Any]] = {}
        for r in select:
            if getattr(r, metric) is not None:
                by_lr.setdefault(r.lr, []).append(r)
        params = next((r.num_params for r in members if r.num_params), None)
        base = dict(model=first.model, family=first.family, variant=first.variant, data=first.data,
                    augment=first.augment, setting=first.setting, num_params=params)
        if not by_lr:
            choices.append(Choice(**base, lr=None, chosen_on="none", rows=[], candidates={}))
            continue
        common = set.intersection(*({r.seed for r in rs} for rs in by_lr.values()))
        scores = {}
        for lr, rs in by_lr.items():
            use = [r for r in rs if r.seed in common] or rs
            scores[lr] = sum(getattr(r, metric) for r in use) / len(use)
        diverged = {lr: any(r.status == "diverged" for r in rs) for lr, rs in by_lr.items()}
        lr = min(scores, key=lambda k: (scores[k], diverged[k], -k))
        final_at = [r for r in final if r.lr == lr]
        reported = final_at if final_at and select is not final else [r for r in select if r.lr == lr]
        reported = sorted(reported, key=lambda r: (r.seed is None, r.seed))
        choices.append(Choice(**base, lr=lr, chosen_on="val" if metric == "val_error" else "test", rows=reported,
                              candidates=scores, protocol="final" if reported and reported[0].val_size == 0 else "select"))
    return choices


# ------------------------------------------------------------------------------------ a sweep folder

# Shown in their own columns, so not part of a run's "setting". data.val_size is the protocol: the lr
# selection runs hold out validation images, the final runs (+sweep=final) train on all (val_size=0).
VARYING_KEYS = {"optimizer.lr", "seed", "model", "data", "augment", "data.val_size"}
# Identity keys a run's lr, seed and protocol set: left out of the config digest that groups runs.
VARYING_IDENTITY = {"optimizer.lr", "seed", "data.val_size"}


@dataclass
class Row(RunRecord):
    """One job of the sweep: its RunRecord (status "missing" when it left none), where it is, and what
    sets it apart from the folder's other runs."""
    job: str = ""
    path: Path = Path(".")
    setting: str = ""       # overrides that set this run apart from the others, beyond model/data/augment/lr/seed
    digest: str = "unknown"  # its config (run.json identity) minus lr, seed and protocol

    @property
    def settings(self) -> list[str]:
        return sorted(o for o in self.overrides if override_key(o) not in VARYING_KEYS and not is_neutral(override_key(o)))

    @property
    def group(self) -> tuple:
        return (self.data, self.augment, self.model, self.setting)


def override_key(override: str) -> str:
    """The key an override sets: `+model.lr=0.1` -> `model.lr`."""
    return override.lstrip("+~").split("=", 1)[0].strip()


# ----------------------------------------------------------------------------------------------- reading

def _job_dirs(sweep_dir: Path) -> list[Path]:
    return sorted(d for d in sweep_dir.iterdir()
                  if d.is_dir() and any((d / f).exists() for f in (METRICS_FILE, RUN_FILE, ".hydra")))


def collect(sweep_dir: str | Path) -> list[Row]:
    """Every job the folder holds or the sweep planned (sweep.json), with its record or as missing."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise UserError(f"{sweep_dir}: no such folder; give a sweep folder, e.g. outputs/sweeps/pooling_ablation")
    planned = read_manifest(sweep_dir).get("jobs", {})
    names = {d.name: d for d in _job_dirs(sweep_dir)}
    for sub in planned:
        names.setdefault(sub, sweep_dir / sub)
    is_sweep = planned or (sweep_dir / "multirun.yaml").is_file() or any((d / METRICS_FILE).is_file() for d in names.values())
    if not names or not is_sweep:
        raise UserError(f"{sweep_dir}: not a sweep folder (no job folders with {METRICS_FILE} or .hydra/, "
                        f"no {MANIFEST}); give the folder a sweep wrote, e.g. outputs/sweeps/pooling_ablation")
    rows = [_row(name, path, planned.get(name, {})) for name, path in sorted(names.items())]
    common = set(common_settings(rows))
    for r in rows:
        r.setting = " ".join(o for o in r.settings if o not in common)
    # runs with the same overrides but another config (an edited YAML, another version's defaults) are
    # never averaged together: they get the config's digest in their setting
    by_group: dict[tuple, set[str]] = {}
    for r in rows:
        by_group.setdefault(r.group, set()).add(r.digest)
    for r in rows:
        if len(by_group[r.group]) > 1:
            r.setting = (r.setting + " " if r.setting else "") + f"[config {r.digest[:8]}]"
    return rows


def common_settings(rows: list[Row]) -> list[str]:
    """Overrides every job of the folder shares (a short schedule, a data subset, ...): the report's header."""
    return sorted(set.intersection(*(set(r.settings) for r in rows))) if rows else []


def _digest(path: Path) -> str:
    info = read_run_info(path)
    ident = (info or {}).get("identity")
    if not isinstance(ident, dict):
        return "unknown"
    return result_key({k: v for k, v in ident.items() if k not in VARYING_IDENTITY})


def _row(name: str, path: Path, plan: dict) -> Row:
    try:
        record = read_record(path)
        damaged = None
    except Unreadable as e:
        record, damaged = None, str(e)
    if record is not None:
        data = record.to_dict()
        data["overrides"] = list(data.get("overrides") or plan.get("overrides") or _overrides_file(path))
        return Row(**data, job=name, path=path, digest=_digest(path))
    # no (readable) metrics.json: the job never ran, is still running, or died without a record
    info = {k: v for k, v in plan.items() if k in RunRecord.__dataclass_fields__ and k not in ("status", "reason")}
    if (path / ".hydra" / "config.yaml").is_file():  # values read as data (allconv_sweep.records)
        from allconv_sweep.records import config_values
        values = config_values(path / ".hydra" / "config.yaml", {
            "model.name": str, "model.family": str, "model.variant": str, "data.name": str, "augment.name": str,
            "optimizer.lr": float, "seed": int})
        for field_, key in (("model", "model.name"), ("family", "model.family"), ("variant", "model.variant"),
                            ("data", "data.name"), ("augment", "augment.name"), ("lr", "optimizer.lr"),
                            ("seed", "seed")):
            info.setdefault(field_, values[key])
    started = (path / ".hydra").is_dir() or (path / RUN_FILE).is_file()
    if damaged:
        reason = f"{damaged}: its result is unknown"
    elif plan.get("reason"):  # the sweep saw it end (a SLURM job cancelled, killed, ...)
        reason = str(plan["reason"])
    elif err := _logged_error(path):  # stopped by bad input: the one line it printed
        reason = err
    else:
        reason = f"no {METRICS_FILE}: " + ("started but never finished (running, killed, or stopped by an error: "
                                           "see the job's .log)" if started else "never started")
    reason += "; last.ckpt present, a re-run resumes it" if (path / "checkpoints" / "last.ckpt").is_file() else ""
    info["overrides"] = list(info.get("overrides") or _overrides_file(path))
    info["lr"] = _f(info.get("lr"))
    return Row(status="missing", reason=reason, **info, job=name, path=path, digest=_digest(path))


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


def _overrides_file(path: Path) -> list[str]:
    from allconv_sweep.records import read_overrides_file  # shown as text; checked before any is composed
    return read_overrides_file(path / ".hydra" / "overrides.yaml")


def _f(v: Any) -> Optional[float]:
    try:
        return None if v is None else float(v)
    except (TypeError, ValueError):
        return None


