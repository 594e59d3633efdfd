"""ImageNet: the paper's All-CNN for ImageNet, the ImageFolder data module, and a 2-process DDP run (CPU, gloo).

The data is a tiny ImageFolder of random JPEGs written by the tests; training runs use 64x64 crops (the
network accepts >= 59) to stay fast, the network checks use the paper's 224x224.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from PIL import Image

from allconv_sweep import config as config_mod
from allconv_sweep.config import compose
from allconv_sweep.data.imagenet import ImageNetDataModule
from allconv_sweep.errors import UserError
from allconv_sweep.model.nets import count_parameters, feature_size_before_pool
from allconv_sweep.training.components import datamodule_from

PAPER_PARAMS = 9_372_840  # conf/model/all_cnn_imagenet.yaml lists it per layer
CLASSES = [f"n{i:08d}" for i in range(6)]  # wnid-like names; 6 > 5 so top-5 accuracy is logged
FAST = ["data.image_size=64", "data.resize=72", "data.batch_size=8", "data.eval_batch_size=8",
        "data.num_workers=0", "trainer.max_epochs=1", "trainer.enable_progress_bar=false", "print_config=false"]


def _write_images(folder: Path, label: int, n: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(1000 * label + n + len(folder.parts))
    for i in range(n):
        h, w = 72 + 8 * (i % 3), 96 - 8 * (i % 2)  # odd sizes and aspect ratios, like real photos
        base = torch.tensor([40 * label % 256, 255 - 40 * label % 256, 128], dtype=torch.float32)
        px = (base + 60 * torch.randn(h, w, 3, generator=g)).clamp(0, 255).to(torch.uint8)
        Image.fromarray(px.numpy()).save(folder / f"img_{label}_{i:03d}.JPEG", quality=85)


def make_imagefolder(root: Path, train_per_class: int = 4, val_per_class: int = 2,
                     classes: list[str] = CLASSES, val_classes: list[str] | None = None) -> Path:
    for k, wnid in enumerate(classes):
        _write_images(root / "train" / wnid, k, train_per_class)
    for k, wnid in enumerate(classes if val_classes is None else val_classes):
        _write_images(root / "val" / wnid, k, val_per_class)
    return root


@pytest.fixture(scope="module")
def tiny_imagenet(tmp_path_factory) -> Path:
    return make_imagefolder(tmp_path_factory.mktemp("imagenet"))


def _resolved(overrides: list[str]) -> dict:
    cfg = compose(overrides)
    cfg.paths.output_dir = "unused"  # ${hydra:runtime.output_dir} exists only under @hydra.main
    return config_mod.to_container(cfg)


def _dm(root: Path, extra: list[str] | None = None) -> ImageNetDataModule:
    dm = datamodule_from(_resolved(["model=all_cnn_imagenet", "data=imagenet", f"data.root={root}",
                                     f"data.num_classes={len(CLASSES)}", *FAST, *(extra or [])]))
    assert isinstance(dm, ImageNetDataModule)
    return dm


# -- the network ------------------------------------------------------------------------------------

def test_network_parameters_outputs_and_6x6_map():
    cfg = _resolved(["model=all_cnn_imagenet", "data=imagenet"])
    net = instantiate(cfg["model"]).eval()
    assert count_parameters(net) == PAPER_PARAMS
    assert feature_size_before_pool(net, 224) == (6, 6)
    convs = [n for n, m in net.named_children() if isinstance(m, torch.nn.Conv2d)]
    assert convs == [f"conv{i}" for i in range(1, 13)]
    assert (net.conv1.kernel_size, net.conv1.stride, net.conv4.kernel_size) == ((11, 11), (4, 4), (5, 5))
    assert [net[i].stride[0] for i in range(len(net)) if isinstance(net[i], torch.nn.Conv2d)].count(2) == 3
    with torch.no_grad():
        out = net(torch.randn(2, 3, 224, 224))
    assert out.shape == (2, 1000)


# -- the data module --------------------------------------------------------------------------------

def test_config_defaults_for_imagenet():
    cfg = compose(["data=imagenet"])
    assert (cfg.preprocess.name, cfg.augment.name) == ("standardize", "random_resized_crop")
    assert compose(["data=imagenet", "augment=none"]).augment.name == "none"  # the command line still wins
    assert compose([]).preprocess.name == "gcn_zca"  # CIFAR's defaults unchanged
    exp = compose(["experiment=imagenet_all_cnn"])
    assert (exp.model.name, exp.data.name, exp.optimizer.lr, exp.trainer.max_epochs) == ("all_cnn_imagenet", "imagenet", 0.01, 23)


def test_datamodule_subsets_and_batches(tiny_imagenet):
    dm = _dm(tiny_imagenet, ["data.num_classes=4", "data.max_per_class=3"])
    dm.prepare_data()
    dm.setup()
    assert dm.class_names == CLASSES[:4]
    assert dm.describe() == {"train": 4 * 3, "val": 4 * 2, "test": 4 * 2}
    assert dm.datasets["test"] is dm.datasets["val"]  # data.test_dir defaults to the val folder
    x, y = next(iter(dm.train_dataloader()))
    assert x.dtype == torch.uint8 and x.shape == (8, 3, 64, 64) and int(y.max()) < 4
    xv, _ = next(iter(dm.val_dataloader()))
    assert xv.shape == (8, 3, 64, 64)
    xn, _ = dm.on_after_batch_transfer((x, y), 0)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    torch.testing.assert_close(xn, (x.float() / 255 - mean) / std)


def test_trains_one_epoch_through_data_imagenet(tiny_imagenet, cfg_factory):
    from allconv_sweep.training.train import train

    cfg = cfg_factory(["model=all_cnn_imagenet", "data=imagenet", f"data.root={tiny_imagenet}",
                       f"data.num_classes={len(CLASSES)}", *FAST, "data.num_workers=1", "model.final_relu=false"],
                      tiny=False)
    m = train(cfg)
    assert m["status"] == "ok", m["reason"]
    assert (m["model"], m["data"], m["epochs_run"], m["world_size"]) == ("all_cnn_imagenet", "imagenet", 1, 1)
    assert m["num_params"] == PAPER_PARAMS - 1000 * 1024 - 1000 + len(CLASSES) * 1025  # 6-class head
    assert 0 <= m["val_acc"] <= m["val_acc_top5"] <= 1 and m["test_acc_top5"] is not None
    assert m["train_images_per_s"] > 0
    assert json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())["status"] == "ok"


# -- bad folders: one clear line each ---------------------------------------------------------------

def _error(root: Path, extra: list[str] | None = None) -> str:
    with pytest.raises(UserError) as e:
        dm = _dm(root, extra)
        dm.setup()
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_missing_folders(tmp_path):
    msg = _error(tmp_path / "nowhere")
    assert msg.startswith(f"data.root={tmp_path / 'nowhere'}: no such folder") and "train/<wnid>/*.JPEG" in msg
    make_imagefolder(tmp_path / "no_val", 1, 1)
    shutil.rmtree(tmp_path / "no_val" / "val")
    assert _error(tmp_path / "no_val").startswith(f"{tmp_path / 'no_val' / 'val'}: no such folder")
    for split in ("train", "val"):  # a class folder without images
        (tmp_path / "empty" / split / "n00000000").mkdir(parents=True)
    assert "Found no valid file for the classes n00000000" in _error(tmp_path / "empty", ["data.num_classes=1"])


def test_val_not_sorted_into_class_folders(tmp_path):
    root = make_imagefolder(tmp_path / "flat", 1, 1)
    shutil.rmtree(root / "val")
    _write_images(root / "val", 0, 5)  # the official val tarball: all images in one folder
    msg = _error(root)
    assert "5 images lie directly in the folder" in msg and "class folders" in msg


def test_train_val_class_mismatch(tmp_path):
    root = make_imagefolder(tmp_path / "mismatch", 1, 1, val_classes=CLASSES[:5] + ["n99999999"])
    msg = _error(root)
    assert "hold different classes" in msg and "1 only in train (n00000005)" in msg and "n99999999" in msg


def test_more_classes_asked_than_found_and_wrong_groups(tiny_imagenet):
    assert "set data.num_classes=6" in _error(tiny_imagenet, ["data.num_classes=1000"])
    with pytest.raises(UserError, match="augment=flip_translate does not apply to data=imagenet"):
        _dm(tiny_imagenet, ["augment=flip_translate"])
    with pytest.raises(UserError, match="preprocess=gcn_zca does not apply"):
        _dm(tiny_imagenet, ["preprocess=gcn_zca"])
    cfg = compose(["model=all_cnn_imagenet", "data=imagenet", "data.image_size=32"])
    cfg.paths.output_dir = "unused"
    with pytest.raises(UserError, match="data.image_size=32: the ImageNet network needs at least 59"):
        config_mod.validate(cfg)  # the schema's check (allconv_sweep/config/schema.py), before any data is read


# -- several devices: one run, two processes --------------------------------------------------------

def test_ddp_two_processes_on_cpu_write_one_metrics_json(tiny_imagenet, tmp_path):
    """`trainer=ddp trainer.devices=2` on CPU (gloo): Lightning re-launches `python -m allconv_sweep` for
    rank 1 with hydra.run.dir pinned; one folder, one metrics.json, one summary on the console."""
    run_dir = tmp_path / "ddp_run"
    cmd = [sys.executable, "-m", "allconv_sweep", "model=all_cnn_imagenet", "data=imagenet",
           f"data.root={tiny_imagenet}", f"data.num_classes={len(CLASSES)}", *FAST, "data.batch_size=4",
           "model.final_relu=false", "trainer=ddp", "trainer.devices=2", "trainer.accelerator=cpu",
           f"hydra.run.dir={run_dir}"]
    env = {k: v for k, v in os.environ.items() if k not in ("LOCAL_RANK", "RANK", "WORLD_SIZE", "MASTER_PORT")}
    env.update(OMP_NUM_THREADS="1", ALLCONV_CACHE=str(tmp_path / "cache"))
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    found = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("metrics.json"))
    assert found == [Path("ddp_run/metrics.json")]
    m = json.loads((run_dir / "metrics.json").read_text())
    assert (m["status"], m["world_size"], m["epochs_run"]) == ("ok", 2, 1)
    assert m["val_acc_top5"] is not None
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob(".hydra")) == [Path("ddp_run/.hydra")]
    assert [p.name for p in tmp_path.iterdir() if p.name != "cache"] == ["ddp_run"]  # rank 1 made no folder of its own
    assert proc.stdout.count("all_cnn_imagenet on imagenet") == 1  # the summary comes from rank 0 only


@pytest.mark.parametrize("workers", [0, 2])
def test_an_undecodable_jpeg_ends_the_run_failed_naming_the_file(tmp_path, cfg_factory, workers):
    root = make_imagefolder(tmp_path / "imagenet", train_per_class=2, val_per_class=1, classes=CLASSES[:3])
    bad = sorted((root / "train" / CLASSES[1]).iterdir())[0]
    bad.write_bytes(bad.read_bytes()[:200])  # a truncated download
    cfg = cfg_factory(["data=imagenet", "model=all_cnn_imagenet", f"data.root={root}", "data.num_classes=3",
                       *FAST, f"data.num_workers={workers}"], tiny=False)
    with pytest.raises(Exception):
        from allconv_sweep.training.train import train
        train(cfg)
    record = json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())
    assert record["status"] == "failed" and f"cannot decode {bad}" in record["reason"], record["reason"]
    assert "\n" not in record["reason"]
