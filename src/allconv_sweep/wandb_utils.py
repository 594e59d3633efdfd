"""wandb: offline without credentials; one W&B run per run folder (resumed, not duplicated, after a kill);
the config once (flat, resolved); every multirun grouped; the summary says what metrics.json says."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Optional

from omegaconf import DictConfig, OmegaConf

# metrics.json fields copied into the W&B summary under the same names (what a runs table compares)
SUMMARY_KEYS = ("status", "reason", "result_key", "train_error", "val_error", "test_error", "test_acc",
                "best_val_test_error", "best_val_test_acc", "test_acc_top5", "val_live_fraction", "epochs_run",
                "images_seen", "train_images_per_s", "num_params", "wall_time_s", "resumed_from", "slurm_job_id")


def has_credentials() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        return "api.wandb.ai" in netrc.read_text()
    except OSError:
        return False


def flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _hydra() -> Optional[Any]:
    try:
        from hydra.core.hydra_config import HydraConfig
        return HydraConfig.get() if HydraConfig.initialized() else None
    except Exception:  # noqa: BLE001 - no Hydra (tests, notebooks)
        return None


def default_group() -> Optional[str]:
    """Any multirun gets a group: the sweep folder's name (with its date for the default
    outputs/multiruns/<date>/<time> layout, where the time alone would be ambiguous)."""
    from hydra.types import RunMode

    hc = _hydra()
    if hc is None or hc.mode != RunMode.MULTIRUN:
        return None
    folder = Path(str(hc.sweep.dir))
    if re.fullmatch(r"\d\d-\d\d-\d\d", folder.name):
        return f"{folder.parent.name}_{folder.name}"
    return folder.name


def make_wandb_logger(cfg: DictConfig, output_dir: Path, info: dict):
    from lightning.pytorch.loggers import WandbLogger

    w = cfg.logger
    mode = w.get("mode") or os.environ.get("WANDB_MODE") or ("online" if has_credentials() else "offline")
    container = OmegaConf.to_container(cfg, resolve=True)
    container.pop("hydra", None)
    container["model"].pop("layers", None)  # the layer list is the model's name; keep the table readable
    config = flatten(container)
    config["result_key"] = info.get("result_key")
    config["overrides"] = list(info.get("overrides") or [])
    hc = _hydra()
    name = w.get("run_name") or (hc.job.override_dirname if hc is not None and default_group() else None)
    tags = list(w.get("tags") or []) + [f"family:{cfg.model.get('family')}", f"variant:{cfg.model.get('variant')}",
                                        f"data:{cfg.data.name}"]
    return WandbLogger(project=w.project, entity=w.get("entity"), group=w.get("group") or default_group(),
                       name=name or f"{cfg.model.name}-{cfg.data.name}-lr{cfg.optimizer.lr}-s{cfg.seed}",
                       id=info.get("wandb_run_id"), resume="allow", tags=tags, save_dir=str(output_dir),
                       offline=mode == "offline", mode=mode, config=config, reinit="finish_previous")


def finish_wandb(logger, metrics: Optional[dict]) -> None:
    import wandb

    run = logger.experiment
    for key in SUMMARY_KEYS:
        if metrics is not None and key in metrics:
            run.summary[key] = metrics.get(key)
    wandb.finish(exit_code=0 if metrics is not None and metrics.get("status") in ("ok", "diverged") else 1)
