"""Shared fixtures: the real configs composed with tmp_path outputs and tiny synthetic data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from omegaconf import DictConfig, open_dict

from allconv_sweep.config import compose

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("ALLCONV_SHARED_DATA", ROOT.parent / "shared" / "data"))

# Two cores: keep every test process on them without oversubscription.
torch.set_num_threads(min(2, os.cpu_count() or 1))

# Tiny, fast, learnable: about a second per epoch of All-CNN-C on 2 CPU cores.
TINY = [
    "data=fake", "preprocess=standardize",
    "data.train_size=96", "data.val_size=32", "data.test_size=32", "data.batch_size=32",
    "trainer.max_epochs=1", "trainer.enable_progress_bar=false", "print_config=false",
]


def make_cfg(tmp_path: Path, overrides: list[str] | None = None, tiny: bool = True) -> DictConfig:
    cfg = compose((TINY if tiny else []) + list(overrides or []))
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path / "run")
        cfg.paths.cache_dir = str(tmp_path / "cache")
    return cfg


@pytest.fixture
def cfg_factory(tmp_path):
    """cfg_factory(["model=model_a", ...]) -> a composed config writing under tmp_path."""
    def factory(overrides=None, tiny=True, sub="run"):
        cfg = make_cfg(tmp_path, overrides, tiny)
        cfg.paths.output_dir = str(tmp_path / sub)
        return cfg
    return factory


def shared_cifar(name: str) -> Path:
    folder = {"cifar10": "cifar10-head", "cifar100": "cifar100-head"}[name]
    path = SHARED_DATA / folder
    if not path.is_dir():
        pytest.skip(f"{path} not present (real CIFAR heads live only on the project's dev machines)")
    return path
