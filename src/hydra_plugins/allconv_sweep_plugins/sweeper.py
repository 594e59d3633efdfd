"""PaperSweeper, the multirun driver of every sweep file (set by sweeps/_common.yaml): Hydra's basic sweeper (the
same grid syntax and job order) that first plans every job (allconv_sweep.sweep.plan: one-line refusals of bad
values, of DDP in a local multirun and of folders holding another config's run; sweep.dry_run lists the jobs),
then launches only the unfinished ones under a lock on the sweep folder, never raises for a failed job (the
report lists it), and on SIGTERM/SIGINT stops launching (the report is written; exit 128 + the signal).
With sweep.from set, the jobs are built from another sweep's chosen runs (allconv_sweep.sweep.follow_up)."""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, List, Optional, Sequence

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobStatus
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict

from allconv_sweep import runs
from allconv_sweep.config.files import group_options
from allconv_sweep.config.identity import override_key
from allconv_sweep.errors import RunInterrupted, UserError
from allconv_sweep.interrupts import lightning_is_handling_signals, note_interrupt

log = logging.getLogger(__name__)


def _user_error(exc: BaseException) -> Optional[BaseException]:
    while exc is not None:
        if isinstance(exc, UserError):
            return exc
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return None


def _exit_user_error(exc: BaseException) -> None:
    for line in str(exc).splitlines():
        print(f"error: {line}", file=sys.stderr)
    sys.exit(2)


class PaperSweeper(BasicSweeper):
    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        try:
            super().setup(hydra_context=hydra_context, task_function=task_function, config=config)
        except Exception as e:  # the launcher refused its settings (launcher.n_jobs, ...): one line
            err = _user_error(e)
            if err is None:
                raise
            _exit_user_error(err)

    def sweep(self, arguments: List[str]) -> Any:
        from allconv_sweep.sweep import follow_up
        from allconv_sweep.sweep import plan as plan_mod

        assert self.config is not None and self.launcher is not None and self.hydra_context is not None
        cfg = self.config
        name = str(OmegaConf.select(cfg, "sweep.name", default=None) or "multirun")
        kind = str(OmegaConf.select(cfg, "launcher.name", default=None) or "local")  # conf/launcher/<name>.yaml
        try:
            if "sweep" in cfg and (name == "_common" or OmegaConf.select(cfg, "sweep.name", default=None) is None):
                raise UserError("+sweep=_common is the part every sweep shares, not a sweep; choose one of: "
                                + ", ".join(group_options("sweep") or []))
            swept: set[str] = set()
            sweep_node = cfg.get("sweep") or {}
            if "from" in sweep_node and "variant" not in sweep_node:  # seeds, final: from another sweep's chosen runs
                job_lists: Sequence[Sequence[str]] = follow_up.seed_jobs(cfg, arguments)
            else:  # a sweep file's grid (hydra.sweeper.params) or a plain -m's: Hydra's basic sweeper's jobs
                parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
                parsed = parser.parse_overrides(self._parse_config() + list(arguments))
                swept = {o.key_or_group for o in parsed if o.is_sweep_override()}
                job_lists = follow_up.expand(cfg, self.split_arguments(parsed, None)[0])  # ablations, transfer
            jobs = plan_mod.plan(cfg, self.hydra_context.config_loader, job_lists, kind, swept)
            sweep_dir = Path(os.path.abspath(str(cfg.hydra.sweep.dir)))  # as plan() names it: sweep.from=../x too
            if OmegaConf.select(cfg, "sweep.dry_run", default=False):
                print(plan_mod.describe(name, sweep_dir, kind, jobs))
                print("dry run: nothing launched, nothing written")
                return []
            plan_mod.refuse_mismatches(jobs, sweep_dir)
            runs.ensure_writable(sweep_dir)
            folder_lock = runs.lock(sweep_dir, "sweep")  # released when the jobs are done (or the process dies)
        except UserError as e:
            _exit_user_error(e)
        note_interrupt(None)  # a fresh sweep (tests run several in one process)
        OmegaConf.save(cfg, sweep_dir / ("multirun.yaml" if name == sweep_dir.name else f"multirun.{name}.yaml"))
        plan_mod.write_manifest(sweep_dir, name, jobs)
        todo = [j for j in jobs if j.state.kind in ("new", "resume", "rerun")]
        log.info(f"sweep {name} in {sweep_dir}: {len(jobs)} jobs; {plan_mod.summary(jobs)}")
        _print_config_once(jobs)
        from allconv_sweep.console import SWEEP_JOBS, SWEEP_START
        os.environ[SWEEP_START], os.environ[SWEEP_JOBS] = str(time.time()), str(len(todo))
        returns = []
        size = self.max_batch_size or len(todo) or 1
        try:
            with _signals_raise():
                for start in range(0, len(todo), size):
                    batch = todo[start:start + size]
                    # unlike BasicSweeper, a failed job (recorded, listed by the report) never stops the sweep
                    try:
                        rets = self.launcher.launch([j.overrides for j in batch], initial_job_idx=start)
                        returns.append(rets)
                        # a job the launcher saw end without a result (a SLURM job cancelled or killed) that left
                        # no metrics.json: its reason goes into the sweep's manifest, where the report finds it
                        ended = [(j, r) for j, r in zip(batch, rets or []) if getattr(r, "status", None) ==
                                 JobStatus.FAILED and not (j.dir / runs.METRICS_FILE).exists()]
                        for job, ret in ended:
                            job.planned.reason = str(getattr(ret, "_return_value", "") or "ended without a result")
                        if ended:
                            plan_mod.write_manifest(sweep_dir, name, jobs)
                    except RunInterrupted as e:  # a signal: stop launching; the report says what is unfinished
                        log.error("sweep interrupted (%s): %s", e.signame, e)
                        note_interrupt(e)
                        break
                    except Exception:  # noqa: BLE001 - e.g. a SLURM job killed past its requeues: report, don't abort
                        log.exception("a job of this batch ended without a result; the report counts it as missing "
                                      "(jobs already submitted to a cluster keep running: re-run the command to collect them)")
        finally:
            folder_lock.release()
        return returns


def _print_config_once(jobs) -> None:
    """The first job's composed config, once for the sweep; each job then prints only its overrides."""
    first = jobs[0].config if jobs else None
    if first is None or not OmegaConf.select(first, "print_config", default=True):
        return
    from allconv_sweep.console import console
    from allconv_sweep.training.config_view import print_config

    shown = first.copy()
    with open_dict(shown):
        shown.pop("hydra", None)
        shown.paths.output_dir = "<the job's folder>"
        if "sweep" in shown:
            shown.sweep.dir = str(jobs[0].dir.parent)
        if "tracking" in shown:
            shown.tracking.run_name = "<the job's overrides>"
    console.print(f"[bold]config of job 1[/bold] (the others differ in: {_swept(jobs)})")
    print_config(shown, first)


def _swept(jobs) -> str:
    keys = {override_key(o) for j in jobs for o in j.overrides if not o.startswith("hydra.")}
    varying = sorted(k for k in keys if len({next((o for o in j.overrides if override_key(o) == k), None)
                                             for j in jobs}) > 1)
    return ", ".join(varying) or "nothing"


@contextmanager
def _signals_raise():
    """While the sweep launches jobs, SIGTERM raises RunInterrupted where Lightning is not handling it (between
    jobs, or while the gpus launcher waits); inside a job's fit, Lightning's handler stops the job itself."""
    def handler(signum, frame):
        if not lightning_is_handling_signals():
            raise RunInterrupted("SIGTERM", "SIGTERM received while the sweep was launching or waiting")

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)
