"""A sweep's jobs, planned before anything is launched (by PaperSweeper, hydra_plugins/.../sweeper.py): each
job's config composed as Hydra will compose it and validated, its folder and state found (done: skip; last.ckpt
of the same result key: resume; another key in the folder: refused, never overwritten), the dry run's listing,
and sweep.json, so the report counts a job that never wrote a metrics.json as missing."""

from __future__ import annotations

import copy
import os
import sys
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

from hydra._internal.config_loader_impl import ConfigLoaderImpl, get_overrides_dirname
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, ListConfig, OmegaConf

from allconv_sweep import config as config_mod
from allconv_sweep import runs
from allconv_sweep.config.files import job_dirname
from allconv_sweep.config.identity import PATH_KEYS, is_neutral, override_key, result_key
from allconv_sweep.errors import UserError
from allconv_sweep.runs import RunRecord, RunState
from allconv_sweep.runs.record import CONFIG_FIELDS

OUTPUT_DIR = "${hydra:runtime.output_dir}"  # conf/paths/default.yaml: the job's folder, made by Hydra
STATE_TEXT = {"done": "done, skip", "resume": "resume from last.ckpt", "rerun": "run again", "new": "run",
              "mismatch": "ANOTHER CONFIG: refused"}

# In a multirun, each Lightning DDP child process re-runs this command line, which holds the whole sweep.
DDP_ISSUES = ("https://github.com/facebookresearch/hydra/issues/2070 and "
              "https://github.com/Lightning-AI/pytorch-lightning/pull/18175")
SPAWN_STRATEGIES = ("ddp_spawn",)   # mp.spawn re-runs no command line


@dataclass
class Job:
    overrides: list[str]
    dir: Path
    planned: RunRecord                 # what the job will record (status "missing" until it has run)
    state: RunState = field(default_factory=lambda: RunState("new"))
    config: Optional[DictConfig] = None  # the composed config, kept for the first job only (printed once)


def check_ddp(job_cfg: DictConfig, kind: str) -> None:
    """Refuse Lightning DDP inside a multirun whose jobs run in this machine's processes (kind: launcher.name);
    SLURM starts one task per GPU, Lightning joins them and re-runs nothing."""
    devices = OmegaConf.select(job_cfg, "trainer.devices", default=1)
    text = str(devices).strip()  # None and booleans: one device
    if isinstance(devices, (list, ListConfig)):
        several = len(devices) > 1
    elif text in ("auto", "-1"):  # launcher=gpus shows each job one GPU
        several = kind != "gpus"
    else:  # "0,1", or a count
        several = sum(bool(d.strip()) for d in text.split(",")) > 1 if "," in text else text.isdigit() and int(text) > 1
    strategy = OmegaConf.select(job_cfg, "trainer.strategy", default=None)
    if kind == "slurm" or not several or strategy in SPAWN_STRATEGIES:
        return
    n = devices if str(devices).isdigit() else "<n>"
    raise UserError(
        f"trainer.devices={devices} with launcher={kind}: Lightning DDP re-runs this command line in each "
        f"child process, and in a Hydra multirun that line is the whole sweep, so every child would start "
        f"the sweep again (upstream: {DDP_ISSUES}); instead use launcher=gpus with trainer.devices=1 "
        f"(one job per GPU, several jobs at once), or launcher=slurm launcher.gpus_per_job={n} "
        f"(SLURM starts the DDP processes), or train one network without a sweep: "
        f"python -m allconv_sweep trainer.devices={devices} ...")


def plan(master: DictConfig, config_loader: Any, job_overrides: Sequence[Sequence[str]], kind: str,
         swept: Iterable[str] = ()) -> list[Job]:
    """Compose every job's config as Hydra will, check it, and find its folder and state. Composing is the slow
    part (~0.2 s a job): jobs that choose the same group options share one composition, and each job's value
    overrides are applied to a copy as Hydra applies them (pooling_ablation's 48 jobs: 12 compositions).

    A job is its result key, however it is spelled: a job whose config another job already has is planned
    once; a finished or started run of its key anywhere in the sweep folder is found (skip, resume). A new job's
    folder is named by what sets it apart (config.files.job_dirname): the swept keys (`swept`, and every key
    whose value differs between the jobs) and the other overrides that change the config, not those that
    restate a default (model=all_cnn_c) nor the keys that cannot change a result (NEUTRAL_KEYS, paths)."""
    parser = OverridesParser.create()
    repo = config_loader.repository
    composed: dict[tuple[str, ...], DictConfig] = {}

    def compose(groups: tuple[str, ...]) -> DictConfig:
        if groups not in composed:
            composed[groups] = config_loader.load_sweep_config(master, list(groups))
        return composed[groups]

    sweep_dir = Path(os.path.abspath(str(master.hydra.sweep.dir)))
    own_subdir = any(override_key(o) == "hydra.sweep.subdir" for o in master.hydra.overrides.hydra)
    parsed_jobs = [parser.parse_overrides(list(j)) for j in job_overrides]
    texts = [{o.key_or_group: _text(o) for o in job if not o.is_hydra_override()} for job in parsed_jobs]
    swept = set(swept) | {k for t in texts for k in t if len({u.get(k) for u in texts}) > 1}
    by_key = _folders_by_key(sweep_dir)
    jobs: list[Job] = []
    seen: dict[Path, list[str]] = {}
    keys: dict[str, list[str]] = {}
    for overrides, parsed in zip(map(list, job_overrides), parsed_jobs):
        # Hydra's rule (defaults_list.Overrides): a group override names an existing group, no dict value
        is_group = [repo.group_exists(o.key_or_group) and not isinstance(o.value(), dict) for o in parsed]
        groups = tuple(o.input_line for o, g in zip(parsed, is_group) if g)
        values = [o for o, g in zip(parsed, is_group) if not g]
        cfg = copy.deepcopy(compose(groups))
        if values:
            ConfigLoaderImpl._apply_overrides_to_config(values, cfg)
            dirname_cfg = cfg.hydra.job.config.override_dirname
            cfg.hydra.job.override_dirname = get_overrides_dirname(
                overrides=[o for o in parsed if not o.is_hydra_override()], kv_sep=dirname_cfg.kv_sep,
                item_sep=dirname_cfg.item_sep, exclude_keys=dirname_cfg.exclude_keys)
        where = cfg.paths._get_node("output_dir")._value() if "paths" in cfg else None
        if where != OUTPUT_DIR:  # every job writes into its own folder (job_dir), not one the overrides name
            raise UserError(f"paths.output_dir={where}: a sweep's job writes into its own folder of the sweep "
                            f"({OUTPUT_DIR}); nothing was launched. Drop paths.output_dir (sweep.root=... or "
                            f"sweep.name=... move the sweep)")
        ident = config_mod.validate(cfg)
        check_ddp(cfg, kind)
        key = result_key(ident)
        if key in keys:  # 0.05 and 5e-2, or model=all_cnn_c and the default: one job
            this, first = (" ".join(o for o in j if override_key(o) in swept) or " ".join(j)
                           for j in (overrides, keys[key]))
            same = "comes more than once in the sweep (values are normalised: 5e-2 is 0.05)" if this == first \
                else f"is the same job as {first} (the same config)"
            print(f"note: {this} {same}; planned once", file=sys.stderr)
            continue
        keys[key] = overrides
        resume = bool(OmegaConf.select(cfg, "resume", default=True))
        if own_subdir:
            job_dir = Path(os.path.abspath(Path(str(cfg.hydra.sweep.dir)) / str(cfg.hydra.sweep.subdir)))
            if job_dir.parent != sweep_dir:  # the manifest and the report know a sweep's jobs as its sub-folders
                raise UserError(f"hydra.sweep.subdir={cfg.hydra.sweep.subdir!s}: the job folder {job_dir} is not a "
                                f"folder of its own inside the sweep folder {sweep_dir}; nothing was launched. Give "
                                f"one folder name (the default: ${{allconv.safe_dirname:${{hydra.job.override_dirname}}}})")
        else:
            last = {o.key_or_group: o for o in parsed}  # a key set twice has its last value, as Hydra applies them
            named = [(k, _text(o)) for k, o in last.items() if _names_the_job(o, swept, groups, compose)]
            job_dir = sweep_dir / job_dirname(named)
        state = runs.run_state(job_dir, key, ident, resume=resume)
        if state.kind in ("new", "mismatch") and by_key.get(key, job_dir) != job_dir:  # its run, elsewhere
            job_dir = by_key[key]
            state = runs.run_state(job_dir, key, ident, resume=resume)
        if job_dir in seen:
            raise UserError(f"two jobs would share the folder {job_dir} ({' '.join(seen[job_dir])} and "
                            f"{' '.join(overrides)}): they differ only in keys a folder name leaves out (keys that "
                            f"cannot change a result, and the paths {', '.join(PATH_KEYS)})")
        seen[job_dir] = overrides
        if not own_subdir:
            quoted = job_dir.name.replace("\\", "\\\\").replace("'", "\\'")
            overrides = overrides + [f"hydra.sweep.subdir='{quoted}'"]
        planned = RunRecord(
            status="missing", result_key=key, overrides=[o for o in overrides if not o.startswith("hydra.")],
            max_epochs=OmegaConf.select(cfg, "trainer.max_epochs", default=None),
            **{k: OmegaConf.select(cfg, path, default=None) for k, (path, _) in CONFIG_FIELDS.items()})
        jobs.append(Job(overrides=overrides, dir=job_dir, planned=planned, state=state, config=None if jobs else cfg))
    return jobs


def _text(o: Any) -> str:
    """An override's value as text, the same however it was written (5e-2 and 0.05: 0.05)."""
    value = o.value()
    return value if isinstance(value, str) else o.get_value_element_as_str()


def _names_the_job(o: Any, swept: set[str], groups: tuple[str, ...], compose: Any) -> bool:
    """Whether an override goes into its job's folder name: not a neutral key or a path, and swept, or a change
    from the default it overrides (the value the config has without it; a group's choice without it)."""
    key = o.key_or_group
    if key == "sweep.variant":  # ablations, transfer: what sets the job apart may be a path (finetune_from)
        return True
    if o.is_hydra_override() or is_neutral(key) or key in PATH_KEYS:
        return False
    if key in swept or o.is_add() or o.is_delete() or o.is_force_add():
        return True
    if o.input_line in groups:
        return compose(tuple(g for g in groups if g != o.input_line)).hydra.runtime.choices.get(key) != o.value()
    try:
        default = OmegaConf.select(compose(groups), key, throw_on_missing=True)
    except Exception:  # noqa: BLE001 - no such key yet, or it resolves only in the job: named
        return True
    if isinstance(default, (DictConfig, ListConfig)):
        default = OmegaConf.to_container(default, resolve=True)
    if isinstance(default, Enum):
        return o.value() not in (default.name, default.value)
    return o.value() != default or isinstance(o.value(), bool) != isinstance(default, bool)


def _folders_by_key(sweep_dir: Path) -> dict[str, Path]:
    """The sweep's folders that hold a run (run.json, else metrics.json), by the run's result key."""
    found: dict[str, Path] = {}
    for d in sorted(p for p in sweep_dir.iterdir() if p.is_dir()) if sweep_dir.is_dir() else []:
        key = (runs.read_run_info(d) or {}).get("result_key")
        if key is None:
            try:
                key = getattr(runs.read_record(d), "result_key", None)
            except runs.Unreadable:
                pass
        if key:
            found.setdefault(key, d)
    return found


def refuse_mismatches(jobs: list[Job], sweep_dir: Path) -> None:
    """One line per job whose folder holds a run of another config; nothing has been launched yet."""
    bad = [j for j in jobs if j.state.kind == "mismatch"]
    if not bad:
        return
    lines = [f"{j.dir.name if j.dir.parent == sweep_dir else j.dir}: {j.state.why}" for j in bad]
    lines.append(f"{len(bad)} of {len(jobs)} job folders hold runs of another config; nothing was launched. "
                 f"Sweep into another folder (sweep.name=..., sweep.root=... or hydra.sweep.dir=...), or "
                 f"resume=false to retrain and replace them")
    raise UserError("\n".join(lines))


def write_manifest(sweep_dir: Path, name: str, jobs: list[Job]) -> Path:
    """sweep.json: the jobs every run of this sweep folder planned (merged: a seeds sweep adds its jobs)."""
    return runs.write_manifest(sweep_dir, name, [(j.dir.name, j.planned) for j in jobs if j.dir.parent == sweep_dir])


def describe(name: str, sweep_dir: Path, kind: str, jobs: list[Job]) -> str:
    width = len(str(len(jobs)))
    lines = [f"sweep {name}: {len(jobs)} jobs in {sweep_dir} (launcher: {kind})"]
    for i, j in enumerate(jobs):
        where = j.dir.name if j.dir.parent == sweep_dir else str(j.dir)
        why = f"  ({j.state.why})" if j.state.why and j.state.kind != "new" else ""
        lines.append(f"  {i + 1:>{width}}  {STATE_TEXT[j.state.kind]:<24}  {where}{why}")
    lines.append(summary(jobs))
    return "\n".join(lines)


def summary(jobs: list[Job]) -> str:
    n = {s: sum(j.state.kind == s for j in jobs) for s in STATE_TEXT}
    todo = n["new"] + n["rerun"] + n["resume"]
    done = [j.state.record.status for j in jobs if j.state.kind == "done" and j.state.record is not None]
    text = (f"{todo} to run ({n['resume']} resume from last.ckpt, {n['rerun']} run again), "
            f"{n['done']} finished and skipped ({done.count('ok')} ok, {done.count('diverged')} diverged)")
    return text + (f", {n['mismatch']} refused (another config in the folder)" if n["mismatch"] else "")
