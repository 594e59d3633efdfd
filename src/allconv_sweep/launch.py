"""launcher=gpus: a pool of GPU slots shared through file locks, one slot per joblib worker process.

Why a lease and not just joblib: joblib starts n_jobs worker processes but knows nothing of GPUs. Each
worker, the first time it runs a job, takes the first free slot (an exclusive lock on
<lease_dir>/<slot>.lock) and keeps it until the worker exits; it sets CUDA_VISIBLE_DEVICES to that one
GPU before CUDA starts in the process, so every job it runs sees exactly one GPU, and a worker that
finishes a job takes the next one on the same GPU. The locks are machine-wide (the OS drops them when a
process dies), so two sweeps started side by side share the GPUs instead of doubling up. On a machine
without GPUs the slots are CPU slots (`launcher.n_jobs=2`: two jobs at once, each with its share of the
cores), which is how the tests cover this launcher.

Every leased job writes <job dir>/lease.json (slot, GPU, pid, host, start and end times).
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from allconv_sweep.errors import UserError

log = logging.getLogger(__name__)

LEASE_FILE = "lease.json"


@dataclass(frozen=True)
class Slot:
    name: str               # gpu<id>[-<k>] or cpu<k>: the lock file's name
    gpu: Optional[str]      # the CUDA_VISIBLE_DEVICES value for it (None: a CPU slot)


def visible_gpus() -> list[str]:
    """The GPUs this process may use, as CUDA_VISIBLE_DEVICES entries (indices or UUIDs)."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [g.strip() for g in env.split(",") if g.strip() and g.strip() != "-1"]
    try:
        import torch
        return [str(i) for i in range(torch.cuda.device_count())]
    except Exception:  # noqa: BLE001 - no usable CUDA: a CPU-only machine
        return []


def plan_slots(n_jobs: Optional[int], jobs_per_gpu: int = 1, gpus: Optional[list[str]] = None) -> list[Slot]:
    """GPU slots (each GPU jobs_per_gpu times) when GPUs are visible, else CPU slots; n_jobs caps them."""
    if n_jobs is not None and (isinstance(n_jobs, bool) or not isinstance(n_jobs, int) or n_jobs < 1):
        raise UserError(f"launcher.n_jobs={n_jobs!r}: must be a positive integer, or null for one job per visible GPU")
    if isinstance(jobs_per_gpu, bool) or not isinstance(jobs_per_gpu, int) or jobs_per_gpu < 1:
        raise UserError(f"launcher.jobs_per_gpu={jobs_per_gpu!r}: must be a positive integer")
    gpus = visible_gpus() if gpus is None else gpus
    if not gpus:
        return [Slot(f"cpu{k}", None) for k in range(n_jobs or 1)]
    slots = [Slot(f"gpu{g}" + (f"-{k}" if jobs_per_gpu > 1 else ""), g) for k in range(jobs_per_gpu) for g in gpus]
    if n_jobs is not None and n_jobs > len(slots):
        raise UserError(f"launcher.n_jobs={n_jobs}: only {len(gpus)} GPU(s) visible ({','.join(gpus)}) x "
                        f"launcher.jobs_per_gpu={jobs_per_gpu} = {len(slots)} slots; use launcher.n_jobs<={len(slots)} "
                        f"or raise launcher.jobs_per_gpu")
    return slots[: n_jobs or len(slots)]


# lease_dir -> (slot, lock) held by this process; kept until the process exits
_HELD: dict[str, tuple[Slot, Any]] = {}


def acquire(slots: list[Slot], lease_dir: str, poll_s: float = 0.5) -> Slot:
    """This process's slot in lease_dir: the one it already holds, else the first free one (waits)."""
    from filelock import FileLock, Timeout

    if lease_dir in _HELD:
        return _HELD[lease_dir][0]
    Path(lease_dir).mkdir(parents=True, exist_ok=True)
    waited = False
    while True:
        for slot in slots:
            lock = FileLock(str(Path(lease_dir) / f"{slot.name}.lock"))
            try:
                lock.acquire(timeout=0)
            except Timeout:
                continue
            _HELD[lease_dir] = (slot, lock)
            return slot
        if not waited:
            log.info("all %d slots in %s are leased (another sweep?); waiting for one", len(slots), lease_dir)
            waited = True
        time.sleep(poll_s)


class LeasedTask:
    """The Hydra task function, run inside a leased slot (picklable: joblib ships it to its workers)."""

    def __init__(self, task_function: Callable[[Any], Any], slots: list[Slot], lease_dir: str) -> None:
        self.task_function = task_function
        self.slots = slots
        self.lease_dir = lease_dir

    def __call__(self, cfg: Any) -> Any:
        from hydra.core.hydra_config import HydraConfig

        slot = acquire(self.slots, self.lease_dir)
        if slot.gpu is not None:
            _pin_gpu(slot.gpu)
        else:  # CPU slots: split the cores between the jobs running at once
            threads = max(1, (os.cpu_count() or 1) // len(self.slots))
            if "torch" in sys.modules:
                sys.modules["torch"].set_num_threads(threads)
            else:
                os.environ["OMP_NUM_THREADS"] = str(threads)
        out = Path(HydraConfig.get().runtime.output_dir)
        record = {"slot": slot.name, "gpu": slot.gpu, "slots": len(self.slots), "pid": os.getpid(),
                  "host": socket.gethostname(), "start": time.time(), "end": None}
        _write(out, record)
        try:
            return self.task_function(cfg)
        finally:
            record["end"] = time.time()
            _write(out, record)


def _pin_gpu(gpu: str) -> None:
    current = os.environ.get("CUDA_VISIBLE_DEVICES")
    if current == gpu:
        return
    import torch
    if torch.cuda.is_initialized():  # cannot happen with one sticky slot per worker; never run on two GPUs
        raise RuntimeError(f"CUDA already started in pid {os.getpid()} with CUDA_VISIBLE_DEVICES={current}; "
                           f"cannot move this worker to GPU {gpu}")
    os.environ["CUDA_VISIBLE_DEVICES"] = gpu


def _write(out: Path, record: dict) -> None:
    from allconv_sweep.runs import write_json

    out.mkdir(parents=True, exist_ok=True)
    write_json(out / LEASE_FILE, record)
