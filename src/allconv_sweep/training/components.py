"""The run's parts built from its (resolved) config: the data module."""

from allconv_sweep.config import build


def datamodule_from(cfg):
    """The data module a (resolved) run config names: instantiate(cfg.data) with what every data module also
    needs from the rest of the config (the preprocess and augment groups, the whitening cache, the seed)."""
    from omegaconf import DictConfig, OmegaConf

    if isinstance(cfg, DictConfig):
        cfg = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    return build(cfg["data"], preprocess=cfg["preprocess"], augment=cfg["augment"], seed=int(cfg["seed"]),
                       cache_dir=(cfg.get("paths") or {}).get("cache_dir"), _convert_="all")
