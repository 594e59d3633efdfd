"""The images visualize shows: a split of the checkpoint's own data, preprocessed as in training, and as stored."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from allconv_sweep.errors import UserError
from allconv_sweep.inspection.options import SPLITS, Options


@dataclass
class Images:
    x: torch.Tensor          # as the network sees them (preprocessed)
    raw: torch.Tensor        # as stored, in [0, 1], for display
    y: torch.Tensor
    index: torch.Tensor      # position in the split
    class_names: list[str]


def load_images(run_cfg: dict, opts: Options, n: int | None) -> Images:
    """``n`` images of ``opts.split`` (all when None)."""
    from allconv_sweep.training.components import datamodule_from

    data = dict(run_cfg["data"])
    if opts.data_root is not None:
        data["root"] = opts.data_root
    paths = {**run_cfg.get("paths", {}), "cache_dir": opts.cache_dir or run_cfg.get("paths", {}).get("cache_dir")}
    cfg = {**run_cfg, "data": data, "paths": paths, "seed": int(run_cfg.get("seed", 0))}
    dm = datamodule_from(cfg)
    dm.prepare_data()
    dm.setup()
    if hasattr(dm, "splits"):  # in-memory sets (cifar10, cifar100, fake): the first n of the split
        x, y = dm.splits[opts.split]
        x, y = x[:n].cpu(), y[:n].cpu()
        if len(y) and run_cfg["preprocess"]["name"] == "none":
            raw = x.clamp(0, 1)
        elif len(y):  # same data config and split seed, no preprocessing: the same images as stored
            plain = datamodule_from({**cfg, "preprocess": {"name": "none"}})
            plain.setup()
            raw = plain.splits[opts.split][0][:n].cpu()
        index = torch.arange(len(y))
    else:  # image folders (imagenet): n images spread evenly over the (class-sorted) split
        x, raw, y, index = _folder_images(dm, opts.split, n)
    if len(y) == 0:
        raise UserError(f"split={opts.split} has no images (the checkpoint's data.val_size="
                        f"{data.get('val_size')}); valid: {', '.join(s for s in SPLITS if s != opts.split)}")
    return Images(x, raw, y, index, list(dm.class_names))


def _folder_images(dm, split: str, n: int | None):
    """uint8 crops from the module's own evaluation transform, normalised by its own on-device step."""
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
    if not ys:
        return torch.zeros(0), torch.zeros(0), torch.zeros(0, dtype=torch.long), index
    return torch.cat(xs), torch.cat(raws), torch.cat(ys), index
