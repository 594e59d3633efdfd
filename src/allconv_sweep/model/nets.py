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
FILLERS = {"caffe_xavier": lambda w, fan_in: w.uniform_(-math.sqrt(3.0 / fan_in), math.sqrt(3.0 / fan_in)),
           "caffe_msra": lambda w, fan_in: w.normal_(0.0, math.sqrt(2.0 / fan_in)),
           "xavier_uniform": lambda w, fan_in: nn.init.xavier_uniform_(w),
           "normal_0.05": lambda w, fan_in: w.normal_(0.0, 0.05)}
HEADS = tuple(h.value for h in Head)


def _kind_and_args(spec: Any, index: int) -> tuple[str, dict]:
    """A layer spec is a one-key mapping ``{kind: args}``; args may be empty or a scalar (dropout)."""
    if not isinstance(spec, Mapping) or len(spec) != 1:
        raise UserError(f"model.layers[{index}] = {spec!r}: each layer must be one of "
                        f"{', '.join(LAYER_KINDS)} written as '- kind: {{...}}'")
    (kind, args), = spec.items()
    if kind not in LAYER_KINDS:
        raise UserError(f"model.layers[{index}]: unknown layer kind {kind!r}; valid: {', '.join(LAYER_KINDS)}")
    return kind, {"p": float(args)} if kind == "dropout" and not isinstance(args, Mapping) else dict(args or {})


def build_network(layers: Sequence[Mapping[str, Any]], in_channels: int = 3, final_relu: bool = True,
                  batch_norm: bool = False, head: str = "conv", init: str = "caffe_xavier", channels_last: bool = False,
                  compile: bool = False, name: str | None = None, family: str | None = None,
                  variant: str | None = None) -> nn.Sequential:
    """The layer specs as an ``nn.Sequential`` with paper-numbered module names (conf/model/<name>.yaml's
    ``_target_``). final_relu=false drops the paper's ReLU after the class conv (a remedy for the dead-output
    collapse); head=fc swaps the 1x1 class conv for global average + a linear layer of the same size."""
    head, init = str(getattr(head, "value", head)), str(getattr(init, "value", init))
    if head not in HEADS:  # the schema's Enum checks a config; this, a direct call (a script, a test)
        raise UserError(f"model.head={head!r}; valid: {', '.join(HEADS)}")
    parsed = [_kind_and_args(spec, i) for i, spec in enumerate(layers)]
    conv_idx = [i for i, (kind, _) in enumerate(parsed) if kind == "conv"]
    if not conv_idx:
        raise UserError("model.layers has no conv layer")
    modules: "OrderedDict[str, nn.Module]" = OrderedDict()
    channels, seen = in_channels, dict.fromkeys(LAYER_KINDS, 0)  # layers of each kind so far, this one included
    for i, (kind, a) in enumerate(parsed):
        seen[kind] += 1
        if kind == "conv":
            n_conv = seen[kind]
            k, out, stride = int(a["k"]), int(a["out"]), int(a.get("stride", 1))
            pad = int(a["pad"]) if "pad" in a else (k - 1) // 2  # "same" for odd kernels
            is_class_conv = i == conv_idx[-1]
            if is_class_conv and head == "fc":
                if k != 1 or stride != 1:
                    raise UserError("model.head=fc needs the last conv to be the 1x1 class conv")
                modules.update(gap=nn.AdaptiveAvgPool2d(1), flatten=nn.Flatten(), fc=nn.Linear(channels, out))
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
            modules[f"pool{seen[kind]}"] = nn.MaxPool2d(int(a.get("k", 3)), int(a.get("stride", 2)),
                                                        int(a.get("pad", 0)), ceil_mode=bool(a.get("ceil", True)))
        elif kind == "dropout":
            modules[f"drop{seen[kind] - 1}"] = nn.Dropout(a["p"])  # drop0 comes first, before conv1
        elif kind == "global_avg" and "gap" not in modules:  # head=fc averaged already
            modules.update(gap=nn.AdaptiveAvgPool2d(1), flatten=nn.Flatten())
    net = nn.Sequential(modules)
    init_weights(net, init)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    net.channels_last, net.compile_forward = bool(channels_last), bool(compile)
    net.name, net.family, net.variant = name, family, variant
    return net


def init_weights(net: nn.Module, scheme: str) -> None:
    """Fill every conv/linear weight by ``scheme`` (FILLERS) and zero every bias."""
    if scheme not in FILLERS:
        raise UserError(f"model.init={scheme!r}; valid: {', '.join(INITS)}")
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            with torch.no_grad():  # fan_in as Caffe counts it: blob count / num = in_channels x kh x kw
                FILLERS[scheme](m.weight, m.weight[0].numel())
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
            k, s, p = (v if isinstance(v, int) else v[0] for v in (m.kernel_size, m.stride, m.padding))
            start, rf, jump = start + ((k - 1) / 2 - p) * jump, rf + (k - 1) * jump, jump * s
        out[name] = (rf, jump, int(math.floor(start)))
    return out
