"""launcher=gpus: a pool of GPU slots shared through file locks, one slot per joblib worker process.

joblib knows nothing of GPUs: each worker, at its first job, takes the first free slot (an exclusive lock on
<lease_dir>/<slot>.lock, machine-wide, dropped by the OS when the process dies) and keeps it, pinning
CUDA_VISIBLE_DEVICES to that GPU before CUDA starts; two sweeps side by side share the GPUs. Without GPUs the
slots are CPU slots (how the tests cover it). Every leased job writes <job dir>/lease.json.
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

from filelock import FileLock, Timeout

from allconv_sweep.config import runtime
from allconv_sweep.errors import UserError
from allconv_sweep.runs import write_json

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
    """GPU slots (each GPU jobs_per_gpu times) when GPUs are visible, else CPU slots; n_jobs caps them (the
    schema checks both values; here only against the GPUs seen)."""
    gpus = visible_gpus() if gpus is None else gpus
    if not gpus:
        return [Slot(f"cpu{k}", None) for k in range(n_jobs or 1)]
    slots = [Slot(f"gpu{g}" + (f"-{k}" if jobs_per_gpu > 1 else ""), g) for k in range(jobs_per_gpu) for g in gpus]
    if n_jobs is not None and n_jobs > len(slots):
        raise UserError(f"launcher.n_jobs={n_jobs}: only {len(gpus)} GPU(s) visible ({','.join(gpus)}) x "
                        f"launcher.jobs_per_gpu={jobs_per_gpu} = {len(slots)} slots; use launcher.n_jobs<={len(slots)} "
                        f"or raise launcher.jobs_per_gpu")
    return slots[: n_jobs or len(slots)]


def usable_cpus() -> int:
    """The CPU cores this process may run on (its affinity mask: taskset, cgroups' cpusets, SLURM)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def mem_available() -> Optional[int]:
    """Bytes the machine can give new processes without swapping (MemAvailable); None where unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


# A job's peak memory (RSS): a fixed part (Python, torch, Lightning, the network; 1.3 GiB covers batch 256) plus
# ~17 bytes per byte of uint8 image held (the float32 sets, normalized copies, whitening). Measured on 2 cores
# with /usr/bin/time -v, 3 batches of 64, all_cnn_c, 32-true: data=fake (512 + 256 images) 1.30 GB; 4153
# + 1017 images (fake or the CIFAR-10 head) 1.53-1.55 GB, 1.61 GB at batch 256. Full CIFAR-10: ~4.4 GiB a job.
JOB_BASE_BYTES = int(1.3 * 2**30)
BYTES_PER_IMAGE_BYTE = 17
CIFAR_FOLDERS = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}


def job_memory_bytes(data: Any) -> int:
    """The estimate above: fake's train_size + test_size images, CIFAR's files on disk (the official 60,000
    where they are not there yet); ImageNet streams its images: the fixed part only."""
    data = data if hasattr(data, "get") else {}
    name, side = str(data.get("name", "")), int(data.get("image_size", 32) or 32)
    image_bytes = 3 * side * side
    if name == "fake":
        held = (int(data.get("train_size", 0) or 0) + int(data.get("test_size", 0) or 0)) * image_bytes
    elif name in CIFAR_FOLDERS:
        folder = Path(str(data.get("root", "data"))) / CIFAR_FOLDERS[name]
        files = [f for f in folder.iterdir() if f.is_file()] if folder.is_dir() else []
        held = sum(f.stat().st_size for f in files) if files else 60_000 * image_bytes
    else:
        held = 0
    return JOB_BASE_BYTES + BYTES_PER_IMAGE_BYTE * held


def limit_slots(slots: list[Slot], requested: Optional[int],
                job_bytes: Optional[int]) -> tuple[list[Slot], Optional[str]]:
    """The slots that fit this machine: on CPU slots at most one job per usable core, and at most as many jobs
    as MemAvailable holds at job_bytes each (at least one); with a one-line note when it kept fewer."""
    n, why = len(slots), []
    if slots and slots[0].gpu is None and n > (cpus := usable_cpus()):
        n = cpus
        why.append(f"no GPU visible and {cpus} usable CPU core{'s' if cpus != 1 else ''}")
    available = mem_available()
    if job_bytes and available and n > max(1, available // job_bytes):
        n = max(1, available // job_bytes)
        why.append(f"~{job_bytes / 2**30:.1f} GiB a job (estimate) and {available / 2**30:.1f} GiB available")
    if n == len(slots):
        return slots, None
    asked = f"launcher.n_jobs={requested}" if requested is not None else f"launcher=gpus ({len(slots)} slots)"
    return slots[:n], (f"{asked}: running {n} job{'s' if n != 1 else ''} at once ({'; '.join(why)}); "
                       f"the results are the same, the sweep takes longer")


# lease_dir -> (slot, lock) held by this process; kept until the process exits
_HELD: dict[str, tuple[Slot, Any]] = {}


def acquire(slots: list[Slot], lease_dir: str, poll_s: float = 0.5) -> Slot:
    """This process's slot in lease_dir: the one it already holds, else the first free one (waits)."""
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


@dataclass
class LeasedTask:
    """The Hydra task function, run inside a leased slot (picklable: joblib ships it to its workers)."""
    task_function: Callable[[Any], Any]
    slots: list[Slot]
    lease_dir: str

    def __call__(self, cfg: Any) -> Any:
        slot = acquire(self.slots, self.lease_dir)
        current = os.environ.get("CUDA_VISIBLE_DEVICES")
        if slot.gpu is None:  # CPU slots: split the cores between the jobs running at once
            threads = max(1, usable_cpus() // len(self.slots))
            if "torch" in sys.modules:
                sys.modules["torch"].set_num_threads(threads)
            else:
                os.environ["OMP_NUM_THREADS"] = str(threads)
        elif current != slot.gpu:
            import torch
            if torch.cuda.is_initialized():  # cannot happen with one sticky slot per worker; never run on two GPUs
                raise RuntimeError(f"CUDA already started in pid {os.getpid()} with CUDA_VISIBLE_DEVICES={current}; "
                                   f"cannot move this worker to GPU {slot.gpu}")
            os.environ["CUDA_VISIBLE_DEVICES"] = slot.gpu
        lease = runtime.output_dir() / LEASE_FILE  # Hydra made the job's folder before it called the task function
        record = {"slot": slot.name, "gpu": slot.gpu, "slots": len(self.slots), "pid": os.getpid(),
                  "host": socket.gethostname(), "start": time.time(), "end": None}
        write_json(lease, record)
        try:
            return self.task_function(cfg)
        finally:
            record["end"] = time.time()
            write_json(lease, record)
