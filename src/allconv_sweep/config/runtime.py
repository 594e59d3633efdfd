"""What the running Hydra app says about this process: inside a multirun? this job's overrides, its number,
its sweep folder. The one place that asks Hydra's global state; without Hydra (tests, notebooks, tools)
the answers are "no", [] and None."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional


def hydra_config() -> Optional[Any]:
    """Hydra's runtime config of this job, or None outside a Hydra app."""
    try:
        from hydra.core.hydra_config import HydraConfig
        return HydraConfig.get() if HydraConfig.initialized() else None
    except Exception:  # noqa: BLE001 - no Hydra (tests, notebooks)
        return None


def in_multirun() -> bool:
    """Whether this process runs a job of a multirun (-m, or a sweep config)."""
    hc = hydra_config()
    try:
        from hydra.types import RunMode
        return hc is not None and hc.mode == RunMode.MULTIRUN
    except Exception:  # noqa: BLE001 - no Hydra
        return False


def job_overrides() -> list[str]:
    """This job's overrides, as Hydra's task overrides ([] outside a Hydra app)."""
    hc = hydra_config()
    try:
        return list(hc.overrides.task) if hc is not None else []
    except Exception:  # noqa: BLE001 - called without Hydra (tests, notebooks)
        return []


def job_number() -> Optional[int]:
    """The job's number in its multirun (0-based), None for a single run."""
    hc = hydra_config()
    try:
        return hc.job.num if hc is not None and in_multirun() else None
    except Exception:  # noqa: BLE001
        return None


def sweep_dir() -> Optional[Path]:
    """The multirun's sweep folder, None for a single run."""
    hc = hydra_config()
    return Path(str(hc.sweep.dir)) if hc is not None and in_multirun() else None


def output_dir() -> Path:
    """This job's output folder (Hydra's runtime.output_dir); raises outside a Hydra app."""
    from hydra.core.hydra_config import HydraConfig

    return Path(HydraConfig.get().runtime.output_dir)
