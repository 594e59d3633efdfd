"""wandb: offline without credentials, flattened config, final metrics in the summary, one run per job."""

from __future__ import annotations

import os
from pathlib import Path

from omegaconf import DictConfig, OmegaConf


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


def make_wandb_logger(cfg: DictConfig, output_dir: Path, run_name: str):
    from lightning.pytorch.loggers import WandbLogger

    w = cfg.logger
    mode = w.get("mode") or os.environ.get("WANDB_MODE") or ("online" if has_credentials() else "offline")
    container = OmegaConf.to_container(cfg, resolve=True)
    container.pop("hydra", None)
    container["model"].pop("layers", None)  # the layer list is the model's name; keep the table readable
    tags = list(w.get("tags") or []) + [f"family:{cfg.model.get('family')}", f"variant:{cfg.model.get('variant')}",
                                        f"data:{cfg.data.name}"]
    return WandbLogger(project=w.project, entity=w.get("entity"), group=w.get("group"), name=w.get("run_name") or run_name,
                       tags=tags, save_dir=str(output_dir), offline=mode == "offline", mode=mode,
                       config=flatten(container), reinit="finish_previous")


def finish_wandb(logger, metrics: dict) -> None:
    import wandb

    run = logger.experiment
    for key in ("status", "test_error", "val_error", "best_val_test_error", "epochs_run", "train_images_per_s",
                "num_params", "wall_time_s"):
        run.summary[key] = metrics.get(key)
    wandb.finish()
