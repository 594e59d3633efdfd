"""launcher=gpus: Hydra's joblib launcher, one worker process per GPU slot, each job leasing one GPU.

The lease itself (file locks, CUDA_VISIBLE_DEVICES, lease.json) is in allconv_sweep.sweep.gpu_lease; this module
is the Hydra-facing part: its config node (hydra/launcher=allconv_gpus) and the launcher class, which
sizes the pool from the visible GPUs and wraps the task function with the lease.
(No `from __future__ import annotations` here: Hydra execs plugin modules outside sys.modules, and
dataclasses then cannot resolve string annotations.)
"""

from dataclasses import dataclass
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from hydra.types import HydraContext, TaskFunction
from omegaconf import MISSING, DictConfig

from hydra_plugins.hydra_joblib_launcher.config import JobLibLauncherConf
from hydra_plugins.hydra_joblib_launcher.joblib_launcher import JoblibLauncher


@dataclass
class GpuPoolLauncherConf(JobLibLauncherConf):
    _target_: str = "hydra_plugins.allconv_sweep_plugins.gpu_launcher.GpuPoolLauncher"
    # n_jobs, jobs_per_gpu, lease_dir: set by conf/launcher/gpus.yaml (launcher.*), their one home
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
        import sys

        from omegaconf import OmegaConf

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
