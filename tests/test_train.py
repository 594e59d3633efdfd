"""train(cfg) end to end on tiny synthetic data: metrics.json, resume, determinism, divergence."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import torch

from allconv_sweep.errors import UserError
from allconv_sweep.model.schedule import scaled_milestones
from allconv_sweep.runs import read_record
from allconv_sweep.training.train import train

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


def test_resume_from_last_ckpt_runs_only_the_missing_epochs_and_keeps_the_csv_history(cfg_factory, monkeypatch):
    from allconv_sweep.training.callbacks import Throughput

    cfg = cfg_factory(["model=model_a", "trainer.max_epochs=2"])
    original = Throughput.on_train_epoch_start

    def crash_in_epoch_2(self, trainer, pl_module):
        if trainer.current_epoch == 1:
            raise RuntimeError("killed in epoch 2")
        return original(self, trainer, pl_module)

    monkeypatch.setattr(Throughput, "on_train_epoch_start", crash_in_epoch_2)
    with pytest.raises(RuntimeError, match="killed in epoch 2"):
        train(cfg)
    out = Path(cfg.paths.output_dir)
    assert read_record(out).status == "failed" and (out / "checkpoints" / "last.ckpt").is_file()
    monkeypatch.setattr(Throughput, "on_train_epoch_start", original)
    m = train(cfg)
    assert m["status"] == "ok" and m["resumed_from"] == str(out / "checkpoints" / "last.ckpt") and m["epochs_run"] == 2
    with open(out / "csv" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    trained = [r["epoch"] for r in rows if r.get("train/loss_epoch")]
    assert trained == ["0", "1"]  # epoch 1 from the first process, epoch 2 from the resumed one: one history
    assert m["train_images_per_s"] > 0 and m["train_acc"] is not None and m["images_seen"] == 2 * 64


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
    assert "is not finite" in m["reason"], m["reason"]  # Lightning's EarlyStopping(check_finite=True)
    assert read_record(cfg.paths.output_dir).status == "diverged"


def _dead_model(monkeypatch):
    """A class conv whose scores are all negative: the collapse measured on real data."""
    import allconv_sweep.training.train as train_mod

    class Dead(train_mod.ImageClassifier):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            torch.nn.init.constant_(self.net.conv9.bias, -100.0)

    monkeypatch.setattr(train_mod, "ImageClassifier", Dead)


def test_dead_final_relu_stops_once_the_image_window_closes(cfg_factory, monkeypatch):
    """64 training images an epoch, window 100 images: dead at the ends of epochs 1 and 2 (128 images) -> stop."""
    _dead_model(monkeypatch)
    m = train(cfg_factory(["trainer.max_epochs=6", "optimizer.lr=0.01", "callbacks.divergence.dead_output_images=100"]))
    assert m["status"] == "diverged" and m["epochs_run"] == 2 and "final ReLU dead" in m["reason"], m
    assert "128 training images" in m["reason"]


def test_dead_at_the_end_is_diverged_even_before_the_window_closes(cfg_factory, monkeypatch):
    _dead_model(monkeypatch)
    m = train(cfg_factory(["trainer.max_epochs=2", "optimizer.lr=0.01"]))  # default window: 100k images
    assert m["status"] == "diverged" and m["epochs_run"] == 2 and "dead at the end" in m["reason"], m


def test_dead_output_is_not_judged_without_a_final_relu(cfg_factory, monkeypatch):
    _dead_model(monkeypatch)
    m = train(cfg_factory(["trainer.max_epochs=2", "optimizer.lr=0.01", "model.final_relu=false",
                           "callbacks.divergence.dead_output_images=1"]))
    assert m["status"] == "ok", m


class _Trainer:
    def __init__(self):
        self.should_stop, self.current_epoch, self.world_size, self.callback_metrics = False, 0, 1, {}


def _epoch(mon, trainer, images, **metrics):
    """One training epoch of `images` images, then its epoch-end check with these metrics (val_acc=...)."""
    mon.on_train_batch_end(trainer, None, None, (None, torch.zeros(images)), 0)
    trainer.callback_metrics = {k.replace("_", "/", 1): torch.tensor(v) for k, v in metrics.items()}
    mon.on_train_epoch_end(trainer, None)
    trainer.current_epoch += 1


def test_dead_output_window_counts_images_and_resets_when_alive():
    from allconv_sweep.training.callbacks import DivergenceMonitor

    mon = DivergenceMonitor(num_classes=10, dead_output_images=10_000, chance_images=None)
    t = _Trainer()
    _epoch(mon, t, 4000, val_live_fraction=0.5)
    _epoch(mon, t, 4000, val_live_fraction=0.005)     # dead since 4,000
    _epoch(mon, t, 4000, val_live_fraction=0.02)      # alive again: the streak resets
    _epoch(mon, t, 4000, val_live_fraction=0.0)       # dead since 12,000
    _epoch(mon, t, 4000, val_live_fraction=0.0)       # 8,000 images dead: not yet
    assert mon.reason is None and not t.should_stop and mon.dead_at_end
    _epoch(mon, t, 4000, val_live_fraction=0.0)       # 12,000 >= 10,000
    assert t.should_stop and "final ReLU dead" in mon.reason and "2.3026" in mon.reason
    assert "12,000 training images" in mon.reason
    other = DivergenceMonitor(num_classes=10)  # the streak survives a resume
    other.load_state_dict(mon.state_dict())
    assert (other.images_seen, other.dead_since, other.dead_at_end) == (24_000, 12_000, True)


def test_a_slow_healthy_run_like_the_caffe_reference_is_never_stopped():
    """The working Caffe reproduction (batch 256, full set): on the ln 10 plateau with ~50% of images live for
    ~1,000 steps (256k images), learning after. With the config's defaults it must run on."""
    from hydra.utils import instantiate

    from allconv_sweep.config import compose

    mon = instantiate(compose([]).callbacks.divergence)  # the windows as configured
    t = _Trainer()
    for epoch in range(12):  # 12 x 45,000 = 540k images, at chance for the first 6 (270k)
        _epoch(mon, t, 45_000, val_live_fraction=0.5, val_acc=0.10 if epoch < 6 else 0.35)
    assert mon.reason is None and not t.should_stop


def test_chance_level_is_detected_after_the_image_window():
    from allconv_sweep.training.callbacks import DivergenceMonitor

    mon = DivergenceMonitor(num_classes=10, chance_images=10_000, chance_margin=0.02)
    t = _Trainer()
    _epoch(mon, t, 6000, val_acc=0.1, val_live_fraction=0.5)
    assert mon.reason is None  # too early to judge
    _epoch(mon, t, 6000, val_acc=0.1, val_live_fraction=0.5)
    assert t.should_stop and "chance" in mon.reason and "12,000 training images" in mon.reason


def test_schedule_keeps_the_papers_shape():
    m = [200, 250, 300]
    assert scaled_milestones(m, 350, 350) == [200, 250, 300]
    assert scaled_milestones(m, 350, 35) == [20, 25, 30]
    assert scaled_milestones(m, 350, 12) == [7, 9, 10]


@pytest.mark.parametrize("epochs,expected", [(5, [3, 4]), (4, [2, 3]), (3, [2]), (2, [1]), (1, [])])
def test_short_schedules_never_stack_two_drops_on_one_epoch(epochs, expected):
    """Rounding 200/250/300 of 350 to 5 epochs gives 3, 4, 4 (two drops at once): spread one epoch apart,
    and dropped where they would land on or after the last epoch."""
    got = scaled_milestones([200, 250, 300], 350, epochs)
    assert got == expected and len(set(got)) == len(got) and all(0 < m < epochs for m in got)


def _lrs(schedule, steps: int) -> list[float]:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    sched = schedule(opt)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_the_paper_schedule_is_torch_multistep_per_step():
    from allconv_sweep.model.schedule import paper_schedule

    lrs = _lrs(lambda o: paper_schedule(o, milestones=[200, 250, 300], of_epochs=350, gamma=0.1, warmup_epochs=0,
                                        max_epochs=35, steps_per_epoch=2), 70)
    assert lrs[39] == pytest.approx(0.1) and lrs[40] == pytest.approx(0.01)
    assert lrs[50] == pytest.approx(0.001) and lrs[60] == pytest.approx(1e-4) and lrs[69] == pytest.approx(1e-4)


def test_warmup_is_linear_then_the_paper_schedule():
    from allconv_sweep.model.schedule import paper_schedule

    lrs = _lrs(lambda o: paper_schedule(o, milestones=[200], of_epochs=350, gamma=0.1, warmup_epochs=2,
                                        max_epochs=35, steps_per_epoch=4), 140)
    # 8 warm-up steps: LinearLR from lr/8 at step 0 to lr at step 8, in equal steps
    assert lrs[:9] == pytest.approx([0.1 * (1 / 8 + 7 / 8 * t / 8) for t in range(9)])
    assert lrs[79] == pytest.approx(0.1) and lrs[80] == pytest.approx(0.01)      # the drop at epoch 20 still at step 80
    with pytest.raises(UserError, match="warmup_epochs=30 ends after the first lr drop"):
        _lrs(lambda o: paper_schedule(o, milestones=[200], of_epochs=350, gamma=0.1, warmup_epochs=30,
                                      max_epochs=35, steps_per_epoch=4), 1)


@pytest.mark.parametrize("override,match", [
    ("optimizer.lr=-0.1", r"optimizer.lr=-0.1: must be a finite number > 0"),
    ("optimizer.lr=0", r"optimizer.lr=0.0: must be a finite number > 0"),
    ("data.batch_size=0", r"data.batch_size=0: must be an integer > 0"),
    ("data.val_size=100000", r"data.val_size=100000 but the training set has"),
    # values that used to slip through (train with NaN, traceback, or be taken as a string)
    ("optimizer.lr=nan", r"optimizer.lr=nan: must be a finite number > 0"),
    ("optimizer.lr=inf", r"optimizer.lr=inf: must be a finite number > 0"),
    ("seed=-1", r"seed=-1: must be an integer in \[0, 2\^32\)"),
    ("data.batch_size=9223372036854775808", r"data.batch_size=9223372036854775808: must be an integer > 0 up to"),
    ("optimizer.lr=${oc.env:ALLCONV_UNSET_FOR_TEST}", r"optimizer.lr: cannot resolve its value \(Environment variable 'ALLCONV_UNSET_FOR_TEST' not found"),
    ("optimizer.lr=${optimizer.momentum}x${optimizer.lr}", r"optimizer.lr: cannot resolve its value"),
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
    from hydra.utils import instantiate

    from allconv_sweep.config import to_container
    from allconv_sweep.model.module import ImageClassifier
    from allconv_sweep.training.train import _finetune

    resolved = to_container(cfg)
    model = ImageClassifier(instantiate(resolved["model"]), 3, config=resolved)
    _finetune(model, str(ckpt))
    state = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    assert torch.equal(model.net.conv1.weight, state["net.conv1.weight"])
    assert torch.equal(model.net.conv4.weight, state["net.conv4.weight"])
    assert model.net.conv5.weight.shape[0] == 3 and state["net.conv5.weight"].shape[0] == 10
    assert train(cfg)["status"] == "ok"



class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("content", ["random", "pickle"])
def test_finetune_from_a_file_that_is_not_a_checkpoint_is_one_line_and_runs_no_code(cfg_factory, tmp_path, content):
    path, marker = tmp_path / "weights.ckpt", tmp_path / "pwned"
    if content == "random":
        path.write_bytes(bytes(range(256)) * 40)
    else:
        torch.save({"state_dict": _Payload(marker)}, path)  # what torch.load(weights_only=False) would execute
    cfg = cfg_factory(["model=model_a", f"finetune_from={path}"])
    with pytest.raises(UserError, match=r"finetune_from=.*weights.ckpt: not a checkpoint this tool can load"):
        train(cfg)
    assert not marker.exists() and not (Path(cfg.paths.output_dir) / "metrics.json").exists()


def test_a_nan_in_the_first_epoch_is_diverged():
    """Lightning's EarlyStopping(check_finite=True) records stopped_epoch = the current epoch: 0 when the
    first epoch's loss is NaN. The run's status must say diverged then too (it used to read stopped_epoch > 0)."""
    from types import SimpleNamespace

    from lightning.pytorch.callbacks import EarlyStopping

    from allconv_sweep.training.outcome import run_status as _status

    nonfinite = EarlyStopping(monitor="train/loss_epoch", check_finite=True, patience=10**9)
    trainer = SimpleNamespace(callback_metrics={"train/loss_epoch": torch.tensor(float("nan"))}, current_epoch=0,
                              fast_dev_run=False, should_stop=False,
                              strategy=SimpleNamespace(reduce_boolean_decision=lambda d, all: d))
    nonfinite._run_early_stopping_check(trainer)
    assert trainer.should_stop and nonfinite.stopped_epoch == 0
    status, reason = _status(None, nonfinite, 10)
    assert status == "diverged" and "is not finite" in reason
    healthy = EarlyStopping(monitor="train/loss_epoch", check_finite=True, patience=10**9)
    assert _status(None, healthy, 10) == ("ok", None)
