"""Shared fixtures: the real configs composed with tmp_path outputs and tiny synthetic data."""

from __future__ import annotations

import json
import logging
import os
import struct
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import DictConfig, open_dict

from allconv_sweep.config import compose

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("ALLCONV_SHARED_DATA", ROOT.parent / "shared" / "data"))

# Two cores: keep every test process on them without oversubscription (make test runs two pytest workers).
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1) // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", 1))))

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


# Sweep jobs in tests: Model A on 64 fake images (32 train after 32 val), one epoch.
SWEEP_TINY = ["data=fake", "preprocess=standardize", "data.train_size=64", "data.val_size=32", "data.test_size=32",
              "data.batch_size=32", "trainer.max_epochs=1", "trainer.enable_progress_bar=false", "print_config=false",
              "model=model_a"]


def multirun(args: list[str], root: Path, tiny: bool = True) -> int:
    """`python -m allconv_sweep <args>` in this process; returns the exit code."""
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

    from allconv_sweep.__main__ import main

    sweep_root = [f"sweep.root={root}"] if any(a.startswith("+sweep=") for a in args) else []  # a plain -m has none
    argv = ["allconv_sweep", *args, *(SWEEP_TINY if tiny else []), *sweep_root, f"paths.cache_dir={root / 'cache'}"]
    old, root_logger = sys.argv, logging.getLogger()
    handlers, level = list(root_logger.handlers), root_logger.level
    GlobalHydra.instance().clear()
    sys.argv = argv
    try:
        main()
        return 0
    except SystemExit as e:
        return 0 if e.code is None else int(e.code)
    finally:  # leave no Hydra state behind for the tests that run after these
        sys.argv = old
        GlobalHydra.instance().clear()
        HydraConfig.instance().cfg = None
        root_logger.handlers[:] = handlers
        root_logger.setLevel(level)


def job_dirs(sweep_dir: Path) -> list[Path]:
    return sorted(d for d in sweep_dir.iterdir() if d.is_dir() and (d / ".hydra").is_dir())


def metrics(job: Path) -> dict:
    return json.loads((job / "metrics.json").read_text())


def wandb_records(path: Path, kind: str) -> list:
    """The records of one type (run, summary, config, history, ...) of a .wandb transaction log (LevelDB
    log format: 7-byte file header, then chunks of crc32 + little-endian length + type, in 32 KiB blocks)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data, pos, pieces, out = path.read_bytes(), 7, b"", []
    while pos + 7 <= len(data):
        if 32768 - pos % 32768 < 7:
            pos += 32768 - pos % 32768
            continue
        _, length, chunk = struct.unpack("<IHB", data[pos:pos + 7])
        if length == 0 and chunk == 0:
            break
        pieces += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if chunk in (1, 4):  # FULL or LAST
            record = pb.Record()
            record.ParseFromString(pieces)
            pieces = b""
            if record.WhichOneof("record_type") == kind:
                out.append(getattr(record, kind))
    return out


def wandb_run_records(path: Path) -> list:
    return wandb_records(path, "run")


def wandb_config(path: Path) -> dict:
    """The run's config: what it started with and every later update (log_hyperparams), later ones win; nested
    keys dotted (model.name), as W&B's runs table lists them."""
    from allconv_sweep.training.wandb_run import flatten

    config: dict = {}
    for record in wandb_records(path, "run") + wandb_records(path, "config"):
        for item in (record.config.update if hasattr(record, "config") else record.update):
            key = item.key or ".".join(item.nested_key)
            config[key] = json.loads(item.value_json)
    return flatten(config)


def wandb_summary(path: Path) -> dict:
    """The run's summary as the log leaves it (later updates win)."""
    summary: dict = {}
    for record in wandb_records(path, "summary"):
        for item in record.update:
            key = item.key or "/".join(item.nested_key)
            summary[key] = json.loads(item.value_json)
    return summary


def assert_close_to_scale(actual, expected, rel: float, what: str = "") -> None:
    """|actual - expected| small against the tensor's own scale (its norm, and its largest entry), not
    element by element: oneDNN sums in a different order on another CPU (AVX-512/AMX against AVX2), and an
    entry near 0 then differs by a few % while the tensor agrees to ~1e-6 of its size."""

    diff = (actual - expected).double()
    scale = expected.double()
    assert diff.norm() <= rel * scale.norm(), f"{what}: |diff| {diff.norm():.3g} vs |x| {scale.norm():.3g}"
    assert diff.abs().max() <= rel * scale.abs().max(), f"{what}: max diff {diff.abs().max():.3g}"
