"""launcher=gpus: Hydra's joblib launcher, one worker process per GPU slot, each job leasing one GPU (the lease:
allconv_sweep.sweep.gpu_lease). No `from __future__ import annotations`: Hydra execs plugin modules outside
sys.modules, where dataclasses cannot resolve string annotations."""

import sys
from dataclasses import dataclass
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from hydra.types import HydraContext, TaskFunction
from omegaconf import MISSING, DictConfig, OmegaConf

from hydra_plugins.hydra_joblib_launcher.config import JobLibLauncherConf
from hydra_plugins.hydra_joblib_launcher.joblib_launcher import JoblibLauncher


@dataclass
class GpuPoolLauncherConf(JobLibLauncherConf):
    _target_: str = "hydra_plugins.allconv_sweep_plugins.gpu_launcher.GpuPoolLauncher"
    # set by conf/launcher/gpus.yaml (launcher.*), their one home
    n_jobs: Optional[int] = MISSING     # type: ignore[assignment]
    jobs_per_gpu: int = MISSING
    lease_dir: str = MISSING
    batch_size: str = "1"               # hand a worker one job at a time, so a freed GPU takes the next job
    pre_dispatch: str = "n_jobs"


ConfigStore.instance().store(group="hydra/launcher", name="allconv_gpus", node=GpuPoolLauncherConf,
                             provider="allconv_sweep")


class GpuPoolLauncher(JoblibLauncher):
    def __init__(self, n_jobs: Optional[int], lease_dir: str, jobs_per_gpu: int = 1, **joblib_kwargs: Any) -> None:
        from allconv_sweep.sweep.gpu_lease import plan_slots

        self.slots = plan_slots(n_jobs, jobs_per_gpu)
        self.requested = n_jobs
        self.lease_dir = lease_dir
        super().__init__(n_jobs=len(self.slots), **joblib_kwargs)

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        from allconv_sweep.sweep.gpu_lease import LeasedTask, job_memory_bytes, limit_slots

        # Capped, not refused: how many jobs run at once never changes a result (launcher is not part of a
        # job's folder or result key), so a command written for a bigger machine runs here, only slower.
        try:
            job_bytes: Optional[int] = job_memory_bytes(OmegaConf.select(config, "data"))
        except Exception:  # noqa: BLE001 - a data config this estimate cannot read: the job refuses it itself
            job_bytes = None
        self.slots, note = limit_slots(self.slots, self.requested, job_bytes)
        if note:
            print(f"note: {note}", file=sys.stderr)
        self.joblib["n_jobs"] = len(self.slots)
        super().setup(hydra_context=hydra_context, config=config,
                      task_function=LeasedTask(task_function, self.slots, self.lease_dir))
