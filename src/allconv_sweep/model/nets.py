"""One builder for every network of the paper.

A network is a list of layer specs, written in ``conf/model/<name>.yaml`` so that it reads like a
column of the paper's Tables 1 and 2::

    - dropout: 0.2
    - conv: {out: 96, k: 3}
    - conv: {out: 96, k: 3, stride: 2}
    - maxpool: {}                       # 3x3, stride 2, ceil rounding (Caffe's)
    - conv: {out: 192, k: 3, pad: 0}
    - global_avg: {}

``conv`` means convolution + ReLU with "same" padding unless ``pad`` says otherwise. Modules are named
after the paper's layer numbering (``conv1`` .. ``conv9``, ``relu1`` .. , ``pool1``, ``drop0`` ..), so
``layer=conv6`` in the visualizer means what it means in the paper.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from allconv_sweep.config.schema import INITS, Head  # model.init's and model.head's choices: the schema has them
from allconv_sweep.errors import UserError

LAYER_KINDS = ("conv", "maxpool", "dropout", "global_avg")
# Weight fillers (biases are always 0, Caffe's default bias_filler: constant 0). fan_in = in_channels x k x k.
#   caffe_xavier    U(-a, a), a = sqrt(3 / fan_in)       Caffe's XavierFiller (default variance_norm: FAN_IN)
#   caffe_msra      N(0, 2 / fan_in)                     Caffe's MSRAFiller (default variance_norm: FAN_IN); the same
#                                                        law as PyTorch's kaiming_normal_(nonlinearity="relu")
#   xavier_uniform  U(-a, a), a = sqrt(6 / (fan_in + fan_out))   PyTorch's xavier_uniform_ (Glorot's own rule)
#   normal_0.05     N(0, 0.05^2)                         the neon and TensorFlow reproductions' choice
HEADS = tuple(h.value for h in Head)


def _kind_and_args(spec: Any, index: int) -> tuple[str, dict]:
    """A layer spec is a one-key mapping ``{kind: args}``; args may be empty or a scalar (dropout)."""
    if not isinstance(spec, Mapping) or len(spec) != 1:
        raise UserError(f"model.layers[{index}] = {spec!r}: each layer must be one of "
                        f"{', '.join(LAYER_KINDS)} written as '- kind: {{...}}'")
    (kind, args), = spec.items()
    if kind not in LAYER_KINDS:
        raise UserError(f"model.layers[{index}]: unknown layer kind {kind!r}; valid: {', '.join(LAYER_KINDS)}")
    if kind == "dropout":
        args = {"p": float(args)} if not isinstance(args, Mapping) else dict(args)
    else:
        args = dict(args or {})
    return kind, args


def build_network(
    layers: Sequence[Mapping[str, Any]],
    in_channels: int = 3,
    final_relu: bool = True,
    batch_norm: bool = False,
    head: str = "conv",
    init: str = "caffe_xavier",
    channels_last: bool = False,
    compile: bool = False,
    name: str | None = None,
    family: str | None = None,
    variant: str | None = None,
) -> nn.Sequential:
    """Turn a list of layer specs into an ``nn.Sequential`` with paper-numbered module names.

    conf/model/<name>.yaml is this function's config (``_target_``): ``instantiate(cfg.model)`` builds it.
    final_relu: the paper's tables put a ReLU after the last 1x1 class conv too (default, faithful);
        false drops that one ReLU (a known remedy for the dead-output collapse).
    head: ``conv`` keeps the class conv + global average (the paper); ``fc`` swaps the last 1x1 class
        conv for global average + a linear layer with the same parameter count and no ReLU.
    channels_last: store the weights channels-last (a memory layout: faster convs, the same function).
    compile / name / family / variant: kept on the network as ``compile_forward``, ``name``, ``family``,
        ``variant``; ImageClassifier compiles the forward pass when asked (the weights stay in ``net``).
    """
    head, init = str(getattr(head, "value", head)), str(getattr(init, "value", init))
    if head not in HEADS:
        raise UserError(f"model.head={head!r}; valid: {', '.join(HEADS)}")
    parsed = [_kind_and_args(spec, i) for i, spec in enumerate(layers)]
    conv_idx = [i for i, (kind, _) in enumerate(parsed) if kind == "conv"]
    if not conv_idx:
        raise UserError("model.layers has no conv layer")
    last_conv = conv_idx[-1]

    modules: "OrderedDict[str, nn.Module]" = OrderedDict()
    channels, n_conv, n_pool, n_drop = in_channels, 0, 0, 0
    for i, (kind, a) in enumerate(parsed):
        if kind == "conv":
            n_conv += 1
            k, out, stride = int(a["k"]), int(a["out"]), int(a.get("stride", 1))
            pad = int(a["pad"]) if "pad" in a else (k - 1) // 2  # "same" for odd kernels
            is_class_conv = i == last_conv
            if is_class_conv and head == "fc":
                if k != 1 or stride != 1:
                    raise UserError("model.head=fc needs the last conv to be the 1x1 class conv")
                modules["gap"] = nn.AdaptiveAvgPool2d(1)
                modules["flatten"] = nn.Flatten()
                modules["fc"] = nn.Linear(channels, out)
                channels = out
                continue
            use_bn = batch_norm and not is_class_conv
            modules[f"conv{n_conv}"] = nn.Conv2d(channels, out, k, stride=stride, padding=pad, bias=not use_bn)
            if use_bn:
                modules[f"bn{n_conv}"] = nn.BatchNorm2d(out)
            if not is_class_conv or final_relu:
                modules[f"relu{n_conv}"] = nn.ReLU(inplace=False)  # not inplace: visualizers read its input
            channels = out
        elif kind == "maxpool":
            n_pool += 1
            modules[f"pool{n_pool}"] = nn.MaxPool2d(int(a.get("k", 3)), int(a.get("stride", 2)),
                                                    padding=int(a.get("pad", 0)), ceil_mode=bool(a.get("ceil", True)))
        elif kind == "dropout":
            modules[f"drop{n_drop}"] = nn.Dropout(a["p"])
            n_drop += 1
        elif kind == "global_avg":
            if "gap" in modules:  # head=fc already averaged
                continue
            modules["gap"] = nn.AdaptiveAvgPool2d(1)
            modules["flatten"] = nn.Flatten()
    net = nn.Sequential(modules)
    init_weights(net, init)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    net.channels_last, net.compile_forward = bool(channels_last), bool(compile)
    net.name, net.family, net.variant = name, family, variant
    return net


def init_weights(net: nn.Module, scheme: str) -> None:
    """Fill every conv/linear weight by ``scheme`` (see INITS) and zero every bias."""
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            fan_in = m.weight[0].numel()  # Caffe: blob count / num = in_channels x kh x kw
            with torch.no_grad():
                if scheme == "caffe_xavier":
                    bound = math.sqrt(3.0 / fan_in)
                    m.weight.uniform_(-bound, bound)
                elif scheme == "caffe_msra":
                    m.weight.normal_(0.0, math.sqrt(2.0 / fan_in))
                elif scheme == "xavier_uniform":
                    nn.init.xavier_uniform_(m.weight)
                elif scheme == "normal_0.05":
                    m.weight.normal_(0.0, 0.05)
                else:
                    raise UserError(f"model.init={scheme!r}; valid: {', '.join(INITS)}")
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def count_parameters(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def feature_size_before_pool(net: nn.Sequential, image_size: int = 32, in_channels: int = 3) -> tuple[int, int]:
    """Spatial size of the map entering the global average (the paper's 6x6)."""
    x = torch.zeros(1, in_channels, image_size, image_size)
    with torch.no_grad():
        for name, m in net.named_children():
            if name == "gap":
                return tuple(x.shape[-2:])
            x = m(x)
    raise ValueError("network has no global average pooling")


def conv_layer_names(net: nn.Module) -> list[str]:
    return [name for name, m in net.named_children() if isinstance(m, (nn.Conv2d, nn.Linear))]


def receptive_fields(net: nn.Sequential) -> dict[str, tuple[int, int, int]]:
    """(receptive field, jump, start offset) of each named layer's output, for cropping patches."""
    rf, jump, start = 1, 1, 0.0
    out: dict[str, tuple[int, int, int]] = {}
    for name, m in net.named_children():
        if isinstance(m, (nn.Conv2d, nn.MaxPool2d)):
            k = m.kernel_size if isinstance(m.kernel_size, int) else m.kernel_size[0]
            s = m.stride if isinstance(m.stride, int) else m.stride[0]
            p = m.padding if isinstance(m.padding, int) else m.padding[0]
            start = start + ((k - 1) / 2 - p) * jump
            rf = rf + (k - 1) * jump
            jump = jump * s
        out[name] = (rf, jump, int(math.floor(start)))
    return out
