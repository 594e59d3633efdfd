"""Every config in conf/ composes, and the objects it describes can be built."""

from __future__ import annotations

import pytest
from hydra.utils import instantiate

from allconv_sweep.config import compose, config_dir, to_container
from allconv_sweep.data.datamodule import ImageDataModule
from allconv_sweep.model.module import ImageClassifier
from allconv_sweep.training.components import datamodule_from

GROUPS = {p.name: sorted(q.stem for q in p.glob("*.yaml")) for p in config_dir().iterdir()
          if p.is_dir() and p.name not in ("hydra", "model", "data_model")}
CASES = [(g, o) for g, opts in GROUPS.items() for o in opts]


@pytest.mark.parametrize("group,option", CASES, ids=[f"{g}={o}" for g, o in CASES])
def test_every_group_option_composes_and_resolves(group, option):
    key = f"+{group}" if group == "sweep" else group  # experiment is in the defaults list (null)
    cfg = compose([f"{key}={option}"])
    cfg.paths.output_dir = "unused"
    resolved = to_container(cfg)
    assert resolved["model"]["layers"] and resolved["data"]["num_classes"] > 0


def test_default_config_is_the_papers_protocol():
    cfg = compose([])
    assert cfg.model.name == "all_cnn_c" and cfg.data.name == "cifar10" and cfg.preprocess.name == "gcn_zca"
    assert cfg.augment.name == "none" and cfg.optimizer.lr == 0.05 and cfg.optimizer.momentum == 0.9
    assert cfg.optimizer.weight_decay == 0.001 and cfg.data.batch_size == 256 and cfg.trainer.max_epochs == 350
    assert list(cfg.scheduler.milestones) == [200, 250, 300] and cfg.scheduler.gamma == 0.1
    assert cfg.model.final_relu is True and cfg.model.init == "caffe_xavier" and list(cfg.logger) == ["csv"]
    assert cfg.preprocess.gcn_scale == 55.0 and cfg.preprocess.zca_filter_bias == 0.1 and cfg.data.val_size == 5000


@pytest.mark.parametrize("data", ["fake", "cifar10", "cifar100"])
def test_model_and_datamodule_instantiate(data):
    cfg = compose([f"data={data}", "preprocess=none"])
    cfg.paths.output_dir = "unused"
    r = to_container(cfg)
    model = ImageClassifier(instantiate(r["model"]), r["data"]["num_classes"], config=r)
    assert model.num_classes == r["data"]["num_classes"]
    dm = datamodule_from(r)  # constructing reads nothing from disk
    assert isinstance(dm, ImageDataModule) and dm.num_classes == r["data"]["num_classes"]


def test_every_config_folder_ships_in_the_wheel():
    """A non-editable install finds conf/ and sweeps/ under <prefix>/share/allconv_sweep (config.py)."""
    import tomllib

    root = config_dir().parent
    shipped = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["data-files"]
    folders = {str(p.parent.relative_to(root)) for d in ("conf", "sweeps") for p in (root / d).rglob("*.yaml")}
    assert {f"share/allconv_sweep/{f}" for f in folders} == set(shipped)
    assert all(shipped[f"share/allconv_sweep/{f}"] == [f"{f}/*.yaml"] for f in folders)
