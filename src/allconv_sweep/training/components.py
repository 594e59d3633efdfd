"""The run's parts built from its (resolved) config: the data module, and the config as the loggers record it."""

from typing import Any

from omegaconf import DictConfig, OmegaConf

from allconv_sweep.config import build
from allconv_sweep.training.wandb_run import flatten


def datamodule_from(cfg):
    """instantiate(cfg.data) with what every data module also needs: preprocess, augment, cache_dir, seed."""
    if isinstance(cfg, DictConfig):
        cfg = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    return build(cfg["data"], preprocess=cfg["preprocess"], augment=cfg["augment"], seed=int(cfg["seed"]),
                 cache_dir=(cfg.get("paths") or {}).get("cache_dir"), _convert_="all")


def flat_config(resolved: dict, info: dict) -> dict[str, Any]:
    """The resolved config as flat dotted keys (no layer list), with the result key and overrides: for trackers."""
    container = {k: v for k, v in resolved.items() if k != "hydra"}
    container["model"] = {k: v for k, v in container["model"].items() if k != "layers"}
    return {**flatten(container), "result_key": info.get("result_key"), "overrides": list(info.get("overrides") or [])}
