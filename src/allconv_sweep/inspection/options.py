"""What python -m allconv_sweep.visualize is asked to show: conf/visualize.yaml, checked before the checkpoint
or the data is read."""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from allconv_sweep.errors import UserError
from allconv_sweep.inspection.attribution import RULES
from allconv_sweep.inspection.device import device_from

TARGETS = ("units", "class", "filters")
SPLITS = ("train", "val", "test")


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
        for key in ("top_k", "num_images", "panel_px"):
            value = getattr(self, key)
            if key == "num_images" and value is None:  # the whole split
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise UserError(f"{key}={value!r}: must be a positive integer")
        self.device = device_from(str(self.device or "auto"))
        self.output_dir = Path(self.output_dir)
