"""PaperSweeper: Hydra's basic sweeper (the same grid syntax and job order) plus what a paper sweep needs.

Set by sweeps/_common.yaml (hydra.sweeper._target_). Before launching it composes every job's config
(allconv_sweep.sweep.plan) and then:
- `sweep.dry_run=true`: prints the jobs with their folders and state, launches and writes nothing;
- skips jobs whose metrics.json says ok or diverged (a re-run of a sweep trains nothing new), launches
  the rest (unfinished ones resume from their last.ckpt inside train());
- never raises for a failed job: every job of the sweep runs, and the report callback lists failures;
- refuses, in one line, bad values and Lightning DDP inside a local multirun (allconv_sweep.sweep.check_ddp);
- the seeds sweep (sweep.from set): jobs are built from another sweep's chosen runs, with more seeds.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any, List, Optional, Sequence

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)


def _user_error(exc: BaseException) -> Optional[BaseException]:
    from allconv_sweep.errors import UserError

    while exc is not None:
        if isinstance(exc, UserError):
            return exc
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return None


def _exit_user_error(exc: BaseException) -> None:
    print(f"error: {exc}", file=sys.stderr)
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
        from allconv_sweep import sweep as plan_mod
        from allconv_sweep.errors import UserError

        assert self.config is not None and self.launcher is not None and self.hydra_context is not None
        cfg = self.config
        name = str(OmegaConf.select(cfg, "sweep.name", default=None) or "multirun")
        kind = plan_mod.launcher_kind(cfg)
        try:
            if name == "_common" or OmegaConf.select(cfg, "sweep.name", default=None) is None:
                raise UserError("+sweep=_common is the part every sweep shares, not a sweep; choose one of: "
                                "lr_grid, pooling_ablation, cifar100, augmented, seeds")
            sweep_node = cfg.get("sweep") or {}
            if "from" in sweep_node:  # the seeds sweep
                job_lists: Sequence[Sequence[str]] = plan_mod.seed_jobs(cfg, arguments)
            else:
                parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
                parsed = parser.parse_overrides(self._parse_config() + list(arguments))
                job_lists = self.split_arguments(parsed, None)[0]
            jobs = plan_mod.plan(cfg, self.hydra_context.config_loader, job_lists, kind)
        except UserError as e:
            _exit_user_error(e)
        sweep_dir = Path(str(cfg.hydra.sweep.dir)).absolute()

        if OmegaConf.select(cfg, "sweep.dry_run", default=False):
            print(plan_mod.describe(name, sweep_dir, kind, jobs))
            print("dry run: nothing launched, nothing written")
            return []

        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(cfg, sweep_dir / ("multirun.yaml" if name == sweep_dir.name else f"multirun.{name}.yaml"))
        plan_mod.write_manifest(sweep_dir, name, jobs)
        todo = [j for j in jobs if j.state not in plan_mod.FINISHED]
        log.info(f"sweep {name} in {sweep_dir}: {len(jobs)} jobs; {plan_mod.summary(jobs)}")
        returns = []
        size = self.max_batch_size or len(todo) or 1
        for start in range(0, len(todo), size):
            batch = [j.overrides for j in todo[start:start + size]]
            # A failed job is recorded (metrics.json status failed, or no metrics.json) and listed by the
            # report; unlike BasicSweeper we do not raise here, so every job of the sweep runs.
            try:
                returns.append(self.launcher.launch(batch, initial_job_idx=start))
            except Exception:  # noqa: BLE001 - e.g. a SLURM job killed past its requeues: report, don't abort
                log.exception("a job of this batch ended without a result; the report counts it as missing "
                              "(jobs already submitted to a cluster keep running: re-run the command to collect them)")
        return returns
