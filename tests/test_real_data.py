"""Slow tier (make test-slow): real CIFAR images from ../shared/data, learned on a CPU in minutes."""

from __future__ import annotations

import pytest

from allconv_sweep.training.train import train
from conftest import shared_cifar

pytestmark = pytest.mark.slow


def test_all_cnn_c_learns_the_real_cifar10_head(cfg_factory):
    """GCN+ZCA, no final ReLU (the remedy), 4 epochs on ~3.6k real images: above chance (10%).

    Constant lr: rescaled to 4 epochs the paper's milestones would cut it at epoch 2 (measured: 11.3%).
    13% is over 3 standard deviations above chance on the 1,017 test images; the 10-epoch run in the
    README reaches 20%."""
    root = shared_cifar("cifar10")
    cfg = cfg_factory([f"data.root={root}", "data.verify=false", "data.download=false", "data.val_size=500",
                       "model.final_relu=false", "trainer.max_epochs=4", "scheduler.gamma=1.0",
                       "callbacks.divergence.chance_images=null"],
                      tiny=False)
    cfg.trainer.enable_progress_bar = False
    cfg.print_config = False
    m = train(cfg)
    assert m["status"] == "ok" and m["preprocess"] == "gcn_zca"
    assert m["test_acc"] > 0.13, m


def test_the_default_recipe_stays_alive_and_learns_the_real_cifar10_head(cfg_factory):
    """The paper's recipe as shipped (GCN+ZCA, final ReLU, Caffe's init, batch 256, lr 0.05, the schedule
    rescaled to 12 epochs) on ~3.6k real images, as `python -m allconv_sweep data.root=<head> ...
    trainer.max_epochs=12` runs it: ok (its final ReLU alive), and above 13% on the 1,017 test images.
    Measured for seed 0: 16.2% in fp32, 16.0% in bf16 (precision=auto on an AMX CPU); seeds 1 and 2: 17.4% to
    19.9%. Chance is 10%; 13% is 3 standard deviations above it and leaves room for another CPU's summation
    order, which changes a 12-epoch trajectory by more than the bf16/fp32 difference here."""
    root = shared_cifar("cifar10")
    cfg = cfg_factory([f"data.root={root}", "data.verify=false", "data.download=false", "data.val_size=500",
                       "trainer.max_epochs=12"], tiny=False)
    cfg.trainer.enable_progress_bar = False
    cfg.print_config = False
    m = train(cfg)
    assert m["status"] == "ok" and m["val_live_fraction"] > 0.5, m
    assert m["test_acc"] > 0.13, m
