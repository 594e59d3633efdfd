"""The twelve CIFAR networks against the paper's Tables 1 and 2."""

from __future__ import annotations

import functools
import math

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import nn

from allconv_sweep.config import compose
from allconv_sweep.errors import UserError
from allconv_sweep.model.nets import build_network, count_parameters, feature_size_before_pool

FAMILIES = "abc"
VARIANTS = ("model", "strided_cnn", "convpool_cnn", "all_cnn")
NAMES = [f"{v}_{f}" for f in FAMILIES for v in VARIANTS]


@functools.lru_cache(maxsize=None)
def _resolved(name: str, overrides: tuple[str, ...]) -> dict:
    cfg = compose([f"model={name}", *overrides])
    cfg.paths.output_dir = "unused"
    return OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)


def net_for(name: str, *overrides: str) -> nn.Sequential:
    return instantiate(_resolved(name, overrides)["model"])


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


# The law each filler should draw from, per layer: (kind, scale) with fan_in = in_channels x k x k and
# fan_out = out_channels x k x k. Caffe's formulas from include/caffe/filler.hpp (XavierFiller, MSRAFiller,
# variance_norm FAN_IN by default).
LAWS = {
    "caffe_xavier": lambda fan_in, fan_out: ("uniform", math.sqrt(3 / fan_in)),
    "caffe_msra": lambda fan_in, fan_out: ("normal", math.sqrt(2 / fan_in)),
    "xavier_uniform": lambda fan_in, fan_out: ("uniform", math.sqrt(6 / (fan_in + fan_out))),
    "normal_0.05": lambda fan_in, fan_out: ("normal", 0.05),
}


@pytest.mark.parametrize("init", sorted(LAWS))
def test_init_schemes_follow_their_formula_in_every_layer(init):
    torch.manual_seed(0)
    net = net_for("all_cnn_c", f"model.init={init}")
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 9
    for conv in convs:
        w = conv.weight.detach().double()
        fan_in, fan_out = w[0].numel(), w.shape[0] * w[0, 0].numel()
        kind, scale = LAWS[init](fan_in, fan_out)
        assert torch.count_nonzero(conv.bias) == 0
        # The smallest layer (the class conv) has 1,920 weights: the sample std is within ~1.6% (1 sigma)
        # of the law's; 8% is 5 sigma, and far below the factor between any two schemes (>= 1.38x).
        std = scale / math.sqrt(3) if kind == "uniform" else scale
        assert w.std().item() == pytest.approx(std, rel=0.08), (init, fan_in)
        if kind == "uniform":  # the bound itself: never exceeded, and reached (1,920 draws leave < 0.2% gap)
            assert w.abs().max().item() <= scale and w.abs().max().item() >= 0.99 * scale
        else:
            assert abs(w.mean().item()) < 4 * scale / math.sqrt(w.numel())  # centred at 0


def test_caffe_xavier_differs_from_pytorch_xavier_where_the_issue_says():
    """conv1 (fan_in 27, fan_out 864): Caffe's bound sqrt(3/27) = 0.333 is 4x PyTorch's sqrt(6/891) = 0.082."""
    torch.manual_seed(0)
    caffe = net_for("all_cnn_c", "model.init=caffe_xavier").conv1.weight.abs().max().item()
    torch.manual_seed(0)
    glorot = net_for("all_cnn_c", "model.init=xavier_uniform").conv1.weight.abs().max().item()
    assert caffe == pytest.approx(0.333, abs=0.004) and glorot == pytest.approx(0.082, abs=0.001)


def test_bad_specs_are_one_line_user_errors():
    with pytest.raises(UserError, match="unknown layer kind 'convv'"):
        build_network([{"convv": {"out": 3, "k": 3}}])
    with pytest.raises(UserError, match="model.init='he'; valid"):
        build_network([{"conv": {"out": 3, "k": 3}}], init="he")
