"""What the inspection tools are given: the device and the checkpoint's data where it is now (evaluate and
visualize); visualize's options (conf/visualize.yaml), checked before anything is read, and its images."""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from allconv_sweep.errors import UserError
from allconv_sweep.inspection.attribution import RULES

TARGETS = ("units", "class", "filters")
SPLITS = ("train", "val", "test")


def device_from(name: str) -> torch.device:
    """device=auto | cpu | cuda | cuda:<index> as a torch.device (auto: a GPU if any), or a one-line error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError):
        dev = None
    if dev is None or dev.type not in ("cpu", "cuda"):
        raise UserError(f"device={name!r}; valid: auto, cpu, cuda, cuda:<index>")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device={name!r} but no GPU is visible; valid here: auto, cpu")
    return dev


def data_module(run_cfg: dict, data: dict, cache_dir: str | None):
    """The data module of a checkpoint's run config, set up, with ``data``'s keys changed (where the data is
    now) and fitted transforms from ``cache_dir`` when given (else the run's paths.cache_dir). setup() alone:
    it downloads what is missing too (prepare_data is for one download among many processes)."""
    from allconv_sweep.training.components import datamodule_from

    unknown = sorted(set(data) - set(run_cfg["data"]))  # e.g. data.root for a checkpoint of data=fake
    if unknown:
        raise UserError(f"data.{unknown[0]}={data[unknown[0]]}: the checkpoint's data "
                        f"({run_cfg['data'].get('name')}) has no {unknown[0]}; it has: {', '.join(run_cfg['data'])}")
    cfg = {**run_cfg, "data": {**run_cfg["data"], **data}}
    if cache_dir:
        cfg["paths"] = {**run_cfg.get("paths", {}), "cache_dir": cache_dir}
    dm = datamodule_from(cfg)
    dm.setup()
    return dm


@dataclass
class Options:
    """conf/visualize.yaml's keys (data.root as data_root); methods and units become lists, device a torch.device."""

    ckpt: str
    target: str
    layer: str | None
    units: Any          # None: the target's default units
    top_k: int
    methods: Any
    split: str
    num_images: int | None
    device: Any
    panel_px: int
    data_root: str | None
    cache_dir: str | None
    output_dir: Path

    @classmethod
    def from_config(cls, cfg: DictConfig | dict) -> Options:
        c = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
        return cls(**{f.name: c.get(f.name) for f in fields(cls)} | {"data_root": (c.get("data") or {}).get("root")})

    def __post_init__(self) -> None:
        if not self.ckpt:
            raise UserError("ckpt is required: ckpt=<run>/checkpoints/last.ckpt (written by python -m allconv_sweep)")
        self.ckpt = str(self.ckpt)
        if self.target not in TARGETS:
            raise UserError(f"target={self.target!r}; valid: {', '.join(TARGETS)}")
        self.methods = [self.methods] if isinstance(self.methods, str) else list(self.methods or [])
        if not self.methods or any(m not in RULES for m in self.methods):
            raise UserError(f"methods={self.methods}: choose one or more of {', '.join(RULES)}")
        if self.split not in SPLITS:
            raise UserError(f"split={self.split!r}; valid: {', '.join(SPLITS)}")
        if self.units is not None:
            self.units = [self.units] if isinstance(self.units, int) else list(self.units)
            if not self.units or any(isinstance(u, bool) or not isinstance(u, int) for u in self.units):
                raise UserError(f"units={self.units}: must be a list of unit indices, e.g. units=[0,1,2,3]")
        for key in ("top_k", "panel_px") + (() if self.num_images is None else ("num_images",)):  # None: all
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise UserError(f"{key}={value!r}: must be a positive integer")
        self.device = device_from(str(self.device or "auto"))
        self.output_dir = Path(self.output_dir)


@dataclass
class Images:
    x: torch.Tensor          # as the network sees them (preprocessed)
    raw: torch.Tensor        # as stored, in [0, 1], for display
    y: torch.Tensor
    index: torch.Tensor      # position in the split
    class_names: list[str]


def load_images(run_cfg: dict, opts: Options, n: int | None) -> Images:
    """``n`` images of ``opts.split`` (all when None)."""
    moved = {} if opts.data_root is None else {"root": opts.data_root}
    dm = data_module(run_cfg, moved, opts.cache_dir)
    if not hasattr(dm, "splits"):  # image folders (imagenet): n images spread evenly over the (class-sorted) split
        return Images(*_folder_images(dm, opts.split, n), list(dm.class_names))
    x, y = dm.splits[opts.split]  # in-memory sets (cifar10, cifar100, fake): the first n of the split
    if len(y) == 0:
        raise UserError(f"split={opts.split} has no images (the checkpoint's data.val_size="
                        f"{run_cfg['data'].get('val_size')}); valid: {', '.join(s for s in SPLITS if s != opts.split)}")
    x, y = x[:n].cpu(), y[:n].cpu()
    if run_cfg["preprocess"]["name"] == "none":
        raw = x.clamp(0, 1)
    else:  # same data config and split seed, no preprocessing: the same images as stored
        plain = data_module({**run_cfg, "preprocess": {"name": "none"}}, moved, opts.cache_dir)
        raw = plain.splits[opts.split][0][:n].cpu()
    return Images(x, raw, y, torch.arange(len(y)), list(dm.class_names))


def _folder_images(dm, split: str, n: int | None):
    """(x, raw, y, index): uint8 crops from the module's own evaluation transform, normalised by its own on-device
    step (never none: every class folder holds an image)."""
    from torch.utils.data import DataLoader, Subset

    dataset = dm.datasets[split]
    total = len(dataset)
    index = torch.arange(total) if n is None or n >= total else torch.linspace(0, total - 1, n).round().long()
    loader = DataLoader(Subset(dataset, index.tolist()), batch_size=64,
                        num_workers=min(8, int(dm.cfg.get("num_workers", 0))))
    xs, raws, ys = [], [], []
    for u8, y in loader:
        xs.append(dm.on_after_batch_transfer((u8.clone(), y), 0)[0])
        raws.append(u8.float() / 255)
        ys.append(y)
    return torch.cat(xs), torch.cat(raws), torch.cat(ys), index
