from allconv_sweep.data.datamodule import ImageDataModule

__all__ = ["ImageDataModule", "build_datamodule"]


def build_datamodule(cfg: dict):
    """The data module for ``cfg['data']['name']`` from a resolved config: JPEG folders (imagenet) or the
    in-memory sets (cifar10, cifar100, fake)."""
    if cfg["data"]["name"] == "imagenet":
        from allconv_sweep.data.imagenet import ImageNetDataModule
        return ImageNetDataModule(cfg["data"], cfg["preprocess"], cfg["augment"], seed=int(cfg["seed"]))
    return ImageDataModule(cfg["data"], cfg["preprocess"], cfg["augment"],
                           cache_dir=cfg["paths"]["cache_dir"], seed=int(cfg["seed"]))
