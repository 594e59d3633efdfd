"""train(cfg) end to end on tiny synthetic data: metrics.json, resume, determinism, divergence."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import torch

from allconv_sweep.errors import UserError
from allconv_sweep.results import read_metrics
from allconv_sweep.train import train
from allconv_sweep.module import lr_factor, scaled_milestones

KEYS = {"status", "model", "data", "preprocess", "augment", "lr", "seed", "batch_size", "num_params", "epochs_run",
        "train_acc", "train_error", "val_acc", "val_error", "test_acc", "test_error", "best_val_test_error",
        "wall_time_s", "train_images_per_s", "versions", "git_commit"}


def test_tiny_run_writes_complete_metrics_and_checkpoint(cfg_factory):
    cfg = cfg_factory(["model=model_a", "trainer.max_epochs=2"])
    m = train(cfg)
    out = Path(cfg.paths.output_dir)
    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk["status"] == "ok" and KEYS <= set(on_disk)
    assert on_disk["model"] == "model_a" and on_disk["epochs_run"] == 2 and on_disk["num_params"] == 839_242
    assert math.isclose(on_disk["test_error"], 1 - on_disk["test_acc"]) and 0 <= on_disk["test_acc"] <= 1
    assert on_disk["best_val_test_acc"] is not None and on_disk["train_images_per_s"] > 0
    assert (out / "checkpoints" / "last.ckpt").is_file() and (out / "csv" / "metrics.csv").is_file()
    last = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert (last["epoch"], last["global_step"]) == (1, 4)  # the final epoch, whatever val/acc did
    assert not list(out.glob(".metrics.*.tmp"))  # the atomic write left nothing behind
    ck = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ck["hyper_parameters"]["cfg"]["model"]["name"] == "model_a"  # the config travels with the weights
    assert m["test_acc"] == on_disk["test_acc"]


def test_same_seed_same_metrics_other_seed_differs(cfg_factory):
    a = train(cfg_factory(["model=model_a"], sub="a"))
    b = train(cfg_factory(["model=model_a"], sub="b"))
    c = train(cfg_factory(["model=model_a", "seed=1"], sub="c"))
    for key in ("train_acc", "val_acc", "test_acc"):
        assert a[key] == b[key]
    la = Path(a["output_dir"], "csv/metrics.csv").read_text().splitlines()
    lb = Path(b["output_dir"], "csv/metrics.csv").read_text().splitlines()
    assert la == lb  # every logged loss, bit for bit
    lc = Path(c["output_dir"], "csv/metrics.csv").read_text().splitlines()
    assert la != lc


def test_resume_from_last_ckpt_runs_only_the_missing_epochs(cfg_factory):
    cfg = cfg_factory(["model=model_a", "trainer.max_epochs=1"])
    train(cfg)
    out = Path(cfg.paths.output_dir)
    (out / "metrics.json").unlink()  # as if the job had been killed after its last checkpoint
    cfg.trainer.max_epochs = 2
    m = train(cfg)
    assert m["resumed_from"] == str(out / "checkpoints" / "last.ckpt") and m["epochs_run"] == 2
    with open(out / "csv" / "metrics.csv") as f:
        epochs = {r["epoch"] for r in csv.DictReader(f) if r.get("train/loss_epoch")}
    assert epochs == {"1"}  # the resumed run trained epoch index 1 only (the log was started anew)


def test_finished_run_is_not_trained_again(cfg_factory, monkeypatch):
    cfg = cfg_factory(["model=model_a"])
    first = train(cfg)
    import lightning
    monkeypatch.setattr(lightning.Trainer, "fit", lambda *a, **k: pytest.fail("trained again"))
    assert train(cfg)["test_acc"] == first["test_acc"]


def test_huge_learning_rate_ends_diverged_not_crashed(cfg_factory):
    cfg = cfg_factory(["model=model_a", "optimizer.lr=1e6", "trainer.max_epochs=5"])
    m = train(cfg)
    assert m["status"] == "diverged" and m["epochs_run"] < 5
    assert "non-finite" in m["reason"] or "class score was 0" in m["reason"]
    assert read_metrics(cfg.paths.output_dir)["status"] == "diverged"


def test_dead_final_relu_ends_the_run_as_diverged(cfg_factory, monkeypatch):
    """A class conv whose scores are all negative (the collapse measured on real data) stops after 2 epochs."""
    import allconv_sweep.train as train_mod

    class Dead(train_mod.ImageClassifier):
        def __init__(self, cfg):
            super().__init__(cfg)
            torch.nn.init.constant_(self.net.conv9.bias, -100.0)

    monkeypatch.setattr(train_mod, "ImageClassifier", Dead)
    m = train(cfg_factory(["trainer.max_epochs=6", "optimizer.lr=0.01"]))
    assert m["status"] == "diverged" and m["epochs_run"] == 2 and "final ReLU is dead" in m["reason"], m


def test_dead_output_is_detected():
    """(Almost) no image with a class score > 0 for 2 epochs in a row (the final ReLU is dead) stops the run."""
    from allconv_sweep.callbacks import DivergenceMonitor

    mon = DivergenceMonitor(num_classes=10, dead_output_epochs=2, dead_output_fraction=0.01, chance_epochs=None)
    trainer = type("T", (), {"should_stop": False, "current_epoch": 5, "callback_metrics": {}, "world_size": 1})()
    module = type("M", (), {"fraction": 0.5, "alive_fraction": lambda self: self.fraction})()
    mon.on_train_epoch_end(trainer, module)
    module.fraction = 0.005
    mon.on_train_epoch_end(trainer, module)
    module.fraction = 0.02  # one live epoch resets the count
    mon.on_train_epoch_end(trainer, module)
    module.fraction = 0.0
    mon.on_train_epoch_end(trainer, module)
    assert mon.reason is None and not trainer.should_stop
    mon.on_train_epoch_end(trainer, module)
    assert trainer.should_stop and "final ReLU is dead" in mon.reason and "2.3026" in mon.reason


def test_chance_level_is_detected():
    from allconv_sweep.callbacks import DivergenceMonitor

    mon = DivergenceMonitor(num_classes=10, dead_output_epochs=None, chance_epochs=3, chance_margin=0.02)
    t = type("T", (), {"should_stop": False, "current_epoch": 1, "world_size": 1,
                   "callback_metrics": {"val/acc": torch.tensor(0.1)}})()
    mon.on_train_epoch_end(t, None)
    assert mon.reason is None  # too early to judge
    t.current_epoch = 2
    mon.on_train_epoch_end(t, None)
    assert t.should_stop and "chance" in mon.reason


def test_schedule_keeps_the_papers_shape():
    sched = {"milestones": [200, 250, 300], "of_epochs": 350, "gamma": 0.1}
    assert scaled_milestones(sched, 350) == [200, 250, 300]
    assert scaled_milestones(sched, 35) == [20, 25, 30]
    assert lr_factor(199.9, [200, 250, 300], 0.1, 0) == 1.0
    assert lr_factor(250, [200, 250, 300], 0.1, 0) == pytest.approx(0.01)
    assert lr_factor(0.5, [200], 0.1, warmup_epochs=1) == pytest.approx(0.5)


@pytest.mark.parametrize("override,match", [
    ("optimizer.lr=-0.1", r"optimizer.lr=-0.1: must be a positive number"),
    ("optimizer.lr=0", r"optimizer.lr=0: must be a positive number"),
    ("data.batch_size=0", r"data.batch_size=0: must be a positive integer"),
    ("data.val_size=100000", r"data.val_size=100000 but the training set has"),
])
def test_bad_values_stop_before_training_without_metrics(cfg_factory, override, match):
    cfg = cfg_factory([override])
    with pytest.raises(UserError, match=match):
        train(cfg)
    assert not (Path(cfg.paths.output_dir) / "metrics.json").exists()


def test_unwritable_output_folder(cfg_factory, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    cfg = cfg_factory()
    cfg.paths.output_dir = str(blocker / "run")
    with pytest.raises(UserError, match="is not writable"):
        train(cfg)


def test_finetune_loads_every_layer_but_the_class_conv(cfg_factory):
    """The transfer experiment: a 10-class checkpoint into a 3-class subset."""
    src = train(cfg_factory(["model=model_a"], sub="src"))
    ckpt = Path(src["output_dir"]) / "checkpoints" / "last.ckpt"
    cfg = cfg_factory(["model=model_a", "data.classes=[1,4,7]", "data.num_classes=3", f"finetune_from={ckpt}", "data.train_size=240",
                       "trainer.max_epochs=1"], sub="dst")
    from allconv_sweep.config import to_container
    from allconv_sweep.module import ImageClassifier
    from allconv_sweep.train import _finetune

    model = ImageClassifier(to_container(cfg))
    _finetune(model, str(ckpt))
    state = torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]
    assert torch.equal(model.net.conv1.weight, state["net.conv1.weight"])
    assert torch.equal(model.net.conv4.weight, state["net.conv4.weight"])
    assert model.net.conv5.weight.shape[0] == 3 and state["net.conv5.weight"].shape[0] == 10
    assert train(cfg)["status"] == "ok"
