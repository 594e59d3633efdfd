"""ImageNet (ILSVRC-2012, obtained by the user) from JPEG folders: DataLoader workers decode, crop and flip
into uint8 batches (4x less to copy than float32); scaling and normalisation run on the training device.
Every folder problem is one ``UserError`` line, raised in ``setup()`` before any training starts."""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader
from torchvision.datasets import ImageFolder
from torchvision.datasets.folder import IMG_EXTENSIONS
from torchvision.transforms import v2

from allconv_sweep.data.datamodule import DataModule
from allconv_sweep.errors import UserError


def _class_folders(folder: Path) -> list[str]:
    return sorted(e.name for e in os.scandir(folder) if e.is_dir() and not e.name.startswith("."))


def _examples(names: list[str], n: int = 3) -> str:
    return ", ".join(names[:n]) + (", ..." if len(names) > n else "")


class _ClassSubsetFolder(ImageFolder):
    """ImageFolder over a given list of class folders (a subset, or all) and at most ``max_per_class``
    images per class (the first by sorted file name, so every run sees the same subset)."""

    def __init__(self, root: Path, classes: list[str], transform, max_per_class: int | None = None):
        self._classes = classes
        try:
            super().__init__(str(root), transform=transform)
        except FileNotFoundError as e:  # a class folder without any image
            raise UserError(f"{root}: {e}") from None
        if max_per_class is not None:  # samples come sorted by class, then by file name
            groups = itertools.groupby(self.samples, key=lambda sample: sample[1])
            self.samples = self.imgs = [s for _, group in groups for s in itertools.islice(group, max_per_class)]
            self.targets = [label for _, label in self.samples]

    def find_classes(self, directory):  # torchvision's hook: our class subset
        return self._classes, {c: i for i, c in enumerate(self._classes)}

    def __getitem__(self, index: int):
        try:
            return super().__getitem__(index)
        except (OSError, ValueError) as e:  # PIL: truncated or not an image (raised in a DataLoader worker)
            path = self.samples[index][0]
            raise UndecodableImage(f"imagenet: cannot decode {path} ({type(e).__name__}: {e}); "
                                   f"remove or replace the file") from None


class UndecodableImage(RuntimeError):
    """An image that cannot be decoded; the run ends failed with the file named."""


class ImageNetDataModule(DataModule):
    """``data=imagenet``: train / val (/ test, the val folder by default) ImageFolders; preprocess=standardize
    uses data.mean/std, none scales to [0, 1]; nothing is fitted (cache_dir is unused)."""

    PREPROCESS = ("standardize", "none")
    AUGMENT = ("random_resized_crop", "none")

    _norm: tuple[torch.Tensor, torch.Tensor] | None = None  # data.mean, data.std on the batches' device

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.datasets: dict[str, ImageFolder] = {}

    def _folder(self, key: str) -> Path:
        root = Path(self.cfg["root"]).expanduser()
        if not root.is_dir():
            raise UserError(f"data.root={root}: no such folder (ImageNet expects {root}/train/<wnid>/*.JPEG "
                            f"and {root}/val/<wnid>/*.JPEG)")
        folder = root / self.cfg[key]
        if not folder.is_dir():
            raise UserError(f"{folder}: no such folder (data.{key}={self.cfg[key]!r} under data.root={root})")
        loose = sum(1 for e in os.scandir(folder) if e.is_file() and e.name.lower().endswith(IMG_EXTENSIONS))
        if loose:
            raise UserError(f"{folder}: {loose} images lie directly in the folder, not sorted into class folders "
                            f"<wnid>/ (for ILSVRC-2012 val, sort them first, e.g. with the usual valprep.sh)")
        if not _class_folders(folder):
            raise UserError(f"{folder}: no class folders (expects {folder}/<wnid>/*.JPEG)")
        return folder

    def _transforms(self, train: bool):
        size, c = int(self.cfg["image_size"]), self.cfg
        if train and self.aug["name"] == "random_resized_crop":
            steps = [v2.RandomResizedCrop(size, scale=tuple(self.aug["scale"]), ratio=tuple(self.aug["ratio"]),
                                          antialias=True)]
            if self.aug.get("flip", True):
                steps.append(v2.RandomHorizontalFlip())
        else:
            steps = [v2.Resize(int(c["resize"]), antialias=True), v2.CenterCrop(size)]
        return v2.Compose([*steps, v2.PILToTensor()])  # uint8 CHW; scaled and normalised on the device

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        train_dir, val_dir, test_dir = self._folder("train_dir"), self._folder("val_dir"), self._folder("test_dir")
        train_classes = _class_folders(train_dir)
        for other in {val_dir, test_dir}:
            other_classes = _class_folders(other)
            if other_classes != train_classes:
                only_train = sorted(set(train_classes) - set(other_classes))
                only_other = sorted(set(other_classes) - set(train_classes))
                raise UserError(f"{train_dir} and {other} hold different classes ({len(train_classes)} vs "
                                f"{len(other_classes)} folders): {len(only_train)} only in train "
                                f"({_examples(only_train)}), {len(only_other)} only in {other.name} "
                                f"({_examples(only_other)})")
        if self.num_classes > len(train_classes):
            raise UserError(f"data.num_classes={self.num_classes} but {train_dir} has {len(train_classes)} class "
                            f"folders: set data.num_classes={len(train_classes)} (or fewer, for a subset)")
        classes = self.class_names = train_classes[: self.num_classes]
        self.datasets["train"] = _ClassSubsetFolder(train_dir, classes, self._transforms(True),
                                                    self.cfg.get("max_per_class"))
        self.datasets["val"] = _ClassSubsetFolder(val_dir, classes, self._transforms(False))
        self.datasets["test"] = (self.datasets["val"] if test_dir == val_dir
                                 else _ClassSubsetFolder(test_dir, classes, self._transforms(False)))

    def describe(self) -> dict[str, int]:
        return {k: len(v) for k, v in self.datasets.items()}

    def _loader(self, split: str, train: bool) -> DataLoader:
        workers, pin = int(self.cfg["num_workers"]), self.cfg.get("pin_memory", "auto")
        if pin == "auto":
            pin = self.trainer is not None and self.trainer.strategy.root_device.type == "cuda"
        extra = {"persistent_workers": bool(self.cfg.get("persistent_workers", True)),
                 "prefetch_factor": int(self.cfg.get("prefetch_factor", 2))} if workers > 0 else {}
        # under DDP Lightning swaps the sampler for a DistributedSampler: each process reads 1/devices of
        # the split (shuffled per epoch when training; evaluation pads the last shard with a few repeats)
        return DataLoader(self.datasets[split], batch_size=int(self.cfg["batch_size" if train else "eval_batch_size"]),
                          shuffle=train, num_workers=workers, pin_memory=bool(pin), drop_last=False, **extra)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        x, y = batch[0].float().div_(255), batch[1]
        if self.pre["name"] == "standardize":
            if self._norm is None or self._norm[0].device != x.device:
                self._norm = tuple(torch.tensor(self.cfg[k], dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
                                   for k in ("mean", "std"))
            x = x.sub_(self._norm[0]).div_(self._norm[1])
        return x, y
