from allconv_sweep.data.datamodule import ImageDataModule

__all__ = ["ImageDataModule"]
