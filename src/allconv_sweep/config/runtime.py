"""What the running Hydra app says about this process: inside a multirun? this job's overrides, its number,
its sweep folder. The one place that asks Hydra's global state; without Hydra (tests, notebooks, tools)
the answers are "no", [] and None."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional


def hydra_config() -> Optional[Any]:
    """Hydra's runtime config of this job, or None outside a Hydra app."""
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.get() if HydraConfig.initialized() else None


def in_multirun() -> bool:
    """Whether this process runs a job of a multirun (-m, or a sweep config)."""
    from hydra.types import RunMode

    hc = hydra_config()
    return hc is not None and hc.mode == RunMode.MULTIRUN


def job_overrides() -> list[str]:
    hc = hydra_config()
    return list(hc.overrides.task) if hc is not None else []


def job_number() -> Optional[int]:
    """The job's number in its multirun (0-based)."""
    return hydra_config().job.num if in_multirun() else None


def sweep_dir() -> Optional[Path]:
    return Path(str(hydra_config().sweep.dir)) if in_multirun() else None


def output_dir() -> Path:
    """This job's output folder (Hydra's runtime.output_dir); raises outside a Hydra app."""
    return Path(hydra_config().runtime.output_dir)
