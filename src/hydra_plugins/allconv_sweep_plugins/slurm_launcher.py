"""launcher=slurm: hydra-submitit-launcher's SLURM array, waiting for every job however it ends. The stock
launcher stops waiting at the first job that fails or is cancelled (`[job.results()[0] for job in jobs]`); this
one waits for each and turns a job that ended without a result into a failed JobReturn naming the SLURM job
and its state (the report lists it as missing with that reason). No `from __future__ import annotations`:
Hydra execs plugin modules outside sys.modules."""

import logging
import time
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
                _wait_until_slurm_says_ended(job)
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


def _wait_until_slurm_says_ended(job: Any, poll_s: float = 2.0, unknown_grace_s: float = 120.0) -> None:
    """submitit takes a job for done once its result file exists, but a requeued job still has its previous
    attempt's file while the next one runs: wait until SLURM's own state is final (sacct, forced). If sacct
    says UNKNOWN for unknown_grace_s, the file is read."""
    unknown_since = None
    while True:
        job.wait()  # the result file exists, or sacct already said the job ended
        state = job.watcher.get_state(job.job_id, mode="force").upper()
        if job.watcher.is_done(job.job_id, mode="cache"):
            return
        if state == "UNKNOWN":
            unknown_since = unknown_since or time.monotonic()
            if time.monotonic() - unknown_since > unknown_grace_s:
                log.warning("SLURM job %s: sacct does not know its state; reading its result file", job.job_id)
                return
        else:
            unknown_since = None
        time.sleep(poll_s)


class _Submitted(Exception):
    """Raised out of the stock launch() right after submitting, so the waiting happens here."""
