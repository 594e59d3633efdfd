"""The twelve CIFAR networks against the paper's Tables 1 and 2."""

from __future__ import annotations

import functools

import pytest
import torch
from torch import nn

from allconv_sweep.config import compose
from allconv_sweep.module import build_from_config
from allconv_sweep.nets import build_network, count_parameters, feature_size_before_pool
from allconv_sweep.errors import UserError
from omegaconf import OmegaConf

FAMILIES = "abc"
VARIANTS = ("model", "strided_cnn", "convpool_cnn", "all_cnn")
NAMES = [f"{v}_{f}" for f in FAMILIES for v in VARIANTS]


@functools.lru_cache(maxsize=None)
def _resolved(name: str, overrides: tuple[str, ...]) -> dict:
    cfg = compose([f"model={name}", *overrides])
    cfg.paths.output_dir = "unused"
    return OmegaConf.to_container(cfg, resolve=True)


def net_for(name: str, *overrides: str) -> nn.Sequential:
    return build_from_config(_resolved(name, overrides))


def test_twelve_configs_exist():
    from allconv_sweep.config import config_dir
    assert sorted(p.stem for p in (config_dir() / "model").glob("*.yaml") if p.stem != "all_cnn_imagenet") == sorted(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_every_network_reaches_6x6_and_outputs_class_scores(name):
    net = net_for(name)
    assert feature_size_before_pool(net, 32) == (6, 6)
    net.eval()
    out = net(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 10)
    assert (out >= 0).all()  # the paper's final ReLU on the class conv


@pytest.mark.parametrize("data,expected", [("cifar10", 1_369_738), ("cifar100", 1_387_108)])
def test_all_cnn_c_exact_parameter_count(data, expected):
    assert count_parameters(net_for("all_cnn_c", f"data={data}")) == expected


def test_variant_relations():
    """Strided-CNN has the base model's parameters; ConvPool and All-CNN add the same extra conv."""
    for f in FAMILIES:
        base, strided, convpool, allcnn = (count_parameters(net_for(f"{v}_{f}")) for v in VARIANTS)
        assert strided == base
        assert convpool == allcnn > base


@pytest.mark.parametrize("name", NAMES)
def test_dropout_placement(name):
    """20% on the input, 50% after each pooling layer (or the strided conv that replaces it)."""
    net = net_for(name)
    children = list(net.named_children())
    assert isinstance(children[0][1], nn.Dropout) and children[0][1].p == 0.2
    halves = [i for i, (_, m) in enumerate(children) if isinstance(m, nn.Dropout) and m.p == 0.5]
    assert len(halves) == 2
    for i in halves:
        before = [m for _, m in children[:i] if not isinstance(m, nn.ReLU)][-1]
        if name.startswith(("model", "convpool")):
            assert isinstance(before, nn.MaxPool2d) and before.ceil_mode and before.kernel_size == 3 and before.stride == 2
        else:
            assert isinstance(before, nn.Conv2d) and before.stride == (2, 2)
    # off at eval time: two eval passes agree; two train passes differ
    x = torch.randn(2, 3, 32, 32)
    net.eval()
    assert torch.equal(net(x), net(x))


def test_top_is_unpadded_3x3_then_two_1x1():
    net = net_for("all_cnn_c")
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    top = convs[-3:]
    assert (top[0].kernel_size, top[0].padding) == ((3, 3), (0, 0))
    assert top[1].kernel_size == (1, 1) and top[2].kernel_size == (1, 1) and top[2].out_channels == 10
    assert all(c.padding == ((c.kernel_size[0] - 1) // 2,) * 2 for c in convs[:-3])  # "same" elsewhere


def test_final_relu_switch():
    with_relu = net_for("all_cnn_c")
    without = net_for("all_cnn_c", "model.final_relu=false")
    assert isinstance(list(with_relu.children())[-3], nn.ReLU)
    assert isinstance(list(without.children())[-3], nn.Conv2d)
    assert sum(isinstance(m, nn.ReLU) for m in with_relu.modules()) == 9
    assert sum(isinstance(m, nn.ReLU) for m in without.modules()) == 8


def test_fc_head_and_batch_norm():
    fc = net_for("all_cnn_c", "model.head=fc")
    assert isinstance(fc.fc, nn.Linear) and count_parameters(fc) == 1_369_738
    assert fc.eval()(torch.randn(1, 3, 32, 32)).shape == (1, 10)
    bn = net_for("all_cnn_c", "model.batch_norm=true")
    assert sum(isinstance(m, nn.BatchNorm2d) for m in bn.modules()) == 8  # every conv but the class conv


@pytest.mark.parametrize("init", ["xavier_uniform", "kaiming_normal", "normal_0.05"])
def test_init_schemes(init):
    net = net_for("all_cnn_c", f"model.init={init}")
    conv1 = net.conv1
    assert torch.count_nonzero(conv1.bias) == 0
    if init == "xavier_uniform":
        bound = (6 / (3 * 9 + 96 * 9)) ** 0.5
        assert conv1.weight.abs().max() <= bound
    if init == "normal_0.05":
        assert abs(net.conv5.weight.std().item() - 0.05) < 0.005


def test_bad_specs_are_one_line_user_errors():
    with pytest.raises(UserError, match="unknown layer kind 'convv'"):
        build_network([{"convv": {"out": 3, "k": 3}}])
    with pytest.raises(UserError, match="model.init='he'; valid"):
        build_network([{"conv": {"out": 3, "k": 3}}], init="he")
