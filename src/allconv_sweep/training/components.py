"""The run's parts built from its (resolved) config: the data module, and the config as the loggers record it."""

from typing import Any

from allconv_sweep.config import build


def datamodule_from(cfg):
    """The data module a (resolved) run config names: instantiate(cfg.data) with what every data module also
    needs from the rest of the config (the preprocess and augment groups, the whitening cache, the seed)."""
    from omegaconf import DictConfig, OmegaConf

    if isinstance(cfg, DictConfig):
        cfg = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    return build(cfg["data"], preprocess=cfg["preprocess"], augment=cfg["augment"], seed=int(cfg["seed"]),
                       cache_dir=(cfg.get("paths") or {}).get("cache_dir"), _convert_="all")


def flat_config(resolved: dict, info: dict) -> dict[str, Any]:
    """The resolved config as flat dotted keys (the layer list is the model's name), plus the run's result
    key and its overrides: what a tracker's runs table compares."""
    from allconv_sweep.training.wandb_run import flatten

    container = {k: v for k, v in resolved.items() if k != "hydra"}
    container["model"] = {k: v for k, v in container["model"].items() if k != "layers"}
    flat = flatten(container)
    flat["result_key"] = info.get("result_key")
    flat["overrides"] = list(info.get("overrides") or [])
    return flat
