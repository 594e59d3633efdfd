"""The in-memory image sets, CIFAR-10/100 and fake: read -> class subset -> stratified val split ->
preprocess (fitted on the training split only) -> batches (sliced on the device, or a DataLoader) ->
whole-batch augmentation after transfer."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from allconv_sweep.data.augment import flip_translate
from allconv_sweep.data.cifar import ensure_cifar, read_cifar
from allconv_sweep.data.loader import TensorBatches
from allconv_sweep.data.whitening import fit_zca_cached, global_contrast_normalize
from allconv_sweep.errors import UserError


def stratified_split(y: torch.Tensor, val_size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (train, val): ``val_size`` images held out with every class in proportion, fixed by seed."""
    g = torch.Generator().manual_seed(seed)
    classes, counts = torch.unique(y, return_counts=True)
    # per-class quota by largest remainder, so quotas sum to exactly val_size
    exact = counts.double() * val_size / len(y)
    quota = exact.floor().long()
    rest = val_size - int(quota.sum())
    quota[torch.argsort(exact - quota, descending=True)[:rest]] += 1
    val = []
    for c, q in zip(classes.tolist(), quota.tolist()):
        idx = torch.nonzero(y == c).flatten()
        val.append(idx[torch.randperm(len(idx), generator=g)[:q]])
    val_idx = torch.sort(torch.cat(val)).values
    train = torch.ones(len(y), dtype=torch.bool)
    train[val_idx] = False
    return torch.nonzero(train).flatten(), val_idx


class DataModule(L.LightningDataModule):
    """What every data module shares: its config (``data`` over DEFAULTS), the preprocess and augment options
    it applies (one line naming them for any other), and the three loaders from the subclass's ``_loader``."""

    DEFAULTS: dict[str, Any] = {}  # what a module built without a config (tests) may leave out
    PREPROCESS: tuple[str, ...] = ()
    AUGMENT: tuple[str, ...] = ()

    def __init__(self, *, preprocess: dict, augment: dict, cache_dir: str | None = None, seed: int = 0, **data: Any):
        """preprocess / augment: the resolved groups; cache_dir: fitted whitening transforms; seed: the run's
        (batch order); data: the keys of conf/data/<name>.yaml, as config/schema.py checked them."""
        super().__init__()
        self.cfg = {**self.DEFAULTS, **data}
        self.pre, self.aug, self.cache_dir, self.seed = dict(preprocess), dict(augment), cache_dir, seed
        self.num_classes = int(self.cfg["num_classes"])
        for group, name, valid in (("preprocess", self.pre["name"], self.PREPROCESS),
                                   ("augment", self.aug["name"], self.AUGMENT)):
            if name not in valid:
                raise UserError(f"{group}={name} does not apply to data={self.cfg['name']}; valid: {', '.join(valid)}")

    def train_dataloader(self):
        return self._loader("train", True)

    def val_dataloader(self):
        return self._loader("val", False) if self.describe()["val"] else []

    def test_dataloader(self):
        return self._loader("test", False)


class ImageDataModule(DataModule):
    """What CIFAR and the fake set share. A subclass says where the images come from: ``_read()`` returns
    {"train": (uint8 images N x 3 x H x W, int64 labels), "test": (...), "classes": [names]}."""

    DEFAULTS = {"image_size": 32, "split_seed": 0, "classes": None, "on_device": "auto", "num_workers": 0}
    PREPROCESS = ("gcn_zca", "standardize", "none")
    AUGMENT = ("none", "flip_translate")

    cache_hit: bool | None = None  # set by setup(): whether the whitening came from the cache
    device = torch.device("cpu")
    # the DataLoader's shuffling generator moves on every epoch: a resumed run needs its position
    _train_generator: torch.Generator | None = None
    _train_generator_state: torch.Tensor | None = None

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.splits: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def _subset_classes(self, raw: dict) -> dict:
        classes = self.cfg.get("classes")
        if not classes:
            return raw
        classes, n_all = [int(k) for k in classes], len(raw["classes"])
        if any(not 0 <= k < n_all for k in classes) or len(set(classes)) != len(classes):
            raise UserError(f"data.classes={classes}: need distinct class indices in 0..{n_all - 1}")
        remap = torch.full((n_all,), -1, dtype=torch.long)
        remap[torch.tensor(classes)] = torch.arange(len(classes))
        out = {"classes": [raw["classes"][k] for k in classes]}
        for split in ("train", "test"):
            x, y = raw[split]
            keep = remap[y] >= 0
            out[split] = (x[keep], remap[y[keep]])
        return out

    def _preprocess(self, train_x: torch.Tensor, others: list[torch.Tensor]) -> list[torch.Tensor]:
        """Fit on the training split only; apply the same transform to every split."""
        name, shape = self.pre["name"], train_x.shape[1:]
        if name == "none":
            return [x.float().div_(255) for x in [train_x, *others]]
        if name == "standardize":
            tx = train_x.float().div_(255)
            mean, std = tx.mean(dim=(0, 2, 3), keepdim=True), tx.std(dim=(0, 2, 3), keepdim=True)
            return [(x.float().div(255) - mean) / std for x in [train_x, *others]]
        scale = float(self.pre["gcn_scale"])
        gcn = [global_contrast_normalize(x.float(), scale) for x in [train_x, *others]]
        key_parts = {"dataset": self.cfg["name"], "val_size": self.cfg["val_size"],
                     "split_seed": self.cfg["split_seed"], "classes": self.cfg.get("classes"), "gcn_scale": scale}
        zca, self.cache_hit = fit_zca_cached(gcn[0], float(self.pre["zca_filter_bias"]), self.cache_dir, key_parts)
        return [zca(x).reshape(-1, *shape) for x in gcn]

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        raw = self._subset_classes(self._read())
        self.class_names = raw["classes"]
        x, y = raw["train"]
        val_size = int(self.cfg["val_size"])
        if val_size >= len(x):
            raise UserError(f"data.val_size={val_size} but the training set has {len(x)} images: "
                            f"choose 0 <= data.val_size < {len(x)}")
        if y.max() >= self.num_classes:
            raise UserError(f"data.num_classes={self.num_classes} but labels go up to {int(y.max())}")
        train_idx, val_idx = stratified_split(y, val_size, int(self.cfg["split_seed"]))
        xt, xv, xs = self._preprocess(x[train_idx], [x[val_idx], raw["test"][0]])
        self.splits = {"train": (xt, y[train_idx]), "val": (xv, y[val_idx]), "test": (xs, raw["test"][1])}

    def describe(self) -> dict[str, int]:
        return {k: len(v[1]) for k, v in self.splits.items()}

    def use_device(self, device: torch.device) -> None:
        """Move every split to ``device`` once (the whole set lives there; batches are slices)."""
        self.device = device
        self.splits = {k: (x.to(device), y.to(device)) for k, (x, y) in self.splits.items()}

    def _loader(self, split: str, train: bool):
        x, y = self.splits[split]
        bs = self.cfg["batch_size"] if train else self.cfg["eval_batch_size"]
        flag = self.cfg.get("on_device", "auto")
        on_device = self.device.type != "cpu" if flag == "auto" else bool(flag)
        if on_device and (self.trainer is None or self.trainer.world_size == 1):
            return TensorBatches(x, y, bs, shuffle=train, seed=self.seed)
        g, workers = torch.Generator().manual_seed(self.seed), int(self.cfg.get("num_workers", 0))
        if train:
            if self._train_generator_state is not None:  # resumed: where the checkpointed run left it
                g.set_state(self._train_generator_state)
                self._train_generator_state = None
            self._train_generator = g
        return DataLoader(TensorDataset(x.cpu(), y.cpu()), batch_size=bs, shuffle=train, num_workers=workers,
                          generator=g if train else None, pin_memory=self.device.type == "cuda",
                          persistent_workers=workers > 0)

    def state_dict(self) -> dict[str, Any]:
        """Saved in every checkpoint; TensorBatches needs nothing (its order is a function of seed and epoch)."""
        return {} if self._train_generator is None else {"train_generator": self._train_generator.get_state()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        # Lightning restores the data module before it asks for the train loader (_loader applies it)
        self._train_generator_state = state_dict.get("train_generator")

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        if self.aug["name"] == "flip_translate" and self.trainer is not None and self.trainer.training:
            x, y = batch
            batch = (flip_translate(x, int(self.aug["max_shift"]), bool(self.aug["flip"])), y)
        return batch


class CifarDataModule(ImageDataModule):
    """data=cifar10 / cifar100: the real "python version" files (data/cifar.py)."""

    DEFAULTS = {**ImageDataModule.DEFAULTS, "url": None, "archive_md5": None}  # +data.url=<a mirror>

    def _ensure(self):
        c = self.cfg
        return ensure_cifar(c["name"], c["root"], bool(c["download"]), bool(c["verify"]), c["url"], c["archive_md5"])

    def prepare_data(self) -> None:  # download once, on one process
        self._ensure()

    def _read(self) -> dict:
        return read_cifar(self.cfg["name"], self._ensure())


class FakeDataModule(ImageDataModule):
    """data=fake: synthetic, learnable, CIFAR-shaped (smoke runs and tests; no files)."""

    DEFAULTS = {**ImageDataModule.DEFAULTS, "total_classes": 10, "train_size": 512, "test_size": 256, "noise": 0.5}

    def _read(self) -> dict:
        """uint8 images: a fixed smooth random template per class (low-frequency colour blobs) plus noise."""
        k, size, noise = int(self.cfg["total_classes"]), int(self.cfg["image_size"]), float(self.cfg["noise"])
        g = torch.Generator().manual_seed(1234)
        templates = F.interpolate(torch.rand(k, 3, 4, 4, generator=g), size=(size, size), mode="bilinear",
                                  align_corners=False)

        def draw(n: int):
            y = (torch.arange(n) % k)[torch.randperm(n, generator=g)]  # balanced: stratified splits are exact
            x = templates[y] + noise * 0.25 * torch.randn(n, 3, size, size, generator=g)
            return (x.clamp(0, 1) * 255).round().to(torch.uint8), y

        return {"train": draw(int(self.cfg["train_size"])), "test": draw(int(self.cfg["test_size"])),
                "classes": [f"class_{i}" for i in range(k)]}
