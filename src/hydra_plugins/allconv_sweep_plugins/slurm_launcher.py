"""launcher=slurm: hydra-submitit-launcher's SLURM array, waiting for every job however it ends.

The stock launcher returns `[job.results()[0] for job in jobs]`: the first job that fails or is cancelled
raises, the sweep stops waiting for the others, and the report is written while they still run. This one
waits for each job in turn and turns a job that ended without a result (cancelled, killed, out of memory,
timed out past its requeues) into a failed JobReturn naming the SLURM job and its state; the sweep writes
that reason into its manifest and the report lists the job as missing with it.
(No `from __future__ import annotations` here: Hydra execs plugin modules outside sys.modules.)
"""

import logging
from dataclasses import dataclass
from typing import Any, List, Sequence

from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn, JobStatus
from hydra_plugins.hydra_submitit_launcher.config import SlurmQueueConf
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher

log = logging.getLogger(__name__)


@dataclass
class AllconvSlurmQueueConf(SlurmQueueConf):
    _target_: str = "hydra_plugins.allconv_sweep_plugins.slurm_launcher.AllconvSlurmLauncher"


ConfigStore.instance().store(group="hydra/launcher", name="allconv_slurm", node=AllconvSlurmQueueConf,
                             provider="allconv_sweep")


class AllconvSlurmLauncher(SlurmLauncher):
    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        import submitit

        waiting: List[Any] = []
        original = submitit.AutoExecutor.map_array

        def keep(executor, fn, *iterables):  # the stock launch() maps, then waits on the first failure
            jobs = original(executor, fn, *iterables)
            waiting.extend(jobs)
            raise _Submitted()

        submitit.AutoExecutor.map_array = keep
        try:
            super().launch(job_overrides, initial_job_idx)
        except _Submitted:
            pass
        finally:
            submitit.AutoExecutor.map_array = original
        returns = []
        for job in waiting:
            try:
                returns.append(job.results()[0])
            except Exception as e:  # noqa: BLE001 - cancelled, killed, failed: keep waiting for the others
                state = job.state
                reason = f"SLURM job {job.job_id} ended {state} without a result ({type(e).__name__})"
                log.error(reason)
                ret = JobReturn()
                ret.status = JobStatus.FAILED
                ret.return_value = RuntimeError(reason)
                returns.append(ret)
        return returns


class _Submitted(Exception):
    """Raised out of the stock launch() right after submitting, so the waiting happens here."""
