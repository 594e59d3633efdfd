"""The data sets: reading them from disk, preprocessing (GCN + ZCA), batches and augmentation. Knows nothing
of the run config: training/components.py builds a data module from it."""

from allconv_sweep.data.datamodule import CifarDataModule, FakeDataModule, ImageDataModule

__all__ = ["CifarDataModule", "FakeDataModule", "ImageDataModule"]
