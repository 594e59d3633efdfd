"""Backprop, deconvnet and guided backpropagation (paper, Section 5 and Figure 1): one backward pass that
differs only at each ReLU. With ``f`` the ReLU's forward input and ``R`` the signal from the layer above:

    backprop (saliency):  R * (f > 0)
    deconvnet:            max(R, 0)             (ignores the forward pass)
    guided backprop:      max(R, 0) * (f > 0)

Everything else is the ordinary gradient, including max-pooling's argmax "switches" of this very forward pass
(what the deconvnet of pooling networks does).
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from typing import Iterator, Sequence

import torch
from torch import nn

RULES = ("backprop", "deconvnet", "guided_backprop")


class _RuleReLU(torch.autograd.Function):
    """relu(f) forward; backward by one of the three rules (the only place they differ)."""

    @staticmethod
    def forward(ctx, f: torch.Tensor, rule: str) -> torch.Tensor:
        ctx.rule = rule
        ctx.save_for_backward(f)
        return f.clamp(min=0)

    @staticmethod
    def backward(ctx, R: torch.Tensor):
        (f,) = ctx.saved_tensors
        R_in = R if ctx.rule == "backprop" else R.clamp(min=0)
        return (R_in if ctx.rule == "deconvnet" else R_in * (f > 0)), None


@contextmanager
def relu_rule(net: nn.Module, rule: str) -> Iterator[nn.Module]:
    """Within the block, ``net`` runs as in :func:`evaluating` and its ReLUs backpropagate by ``rule`` (a
    forward hook replaces each output by the same values from :class:`_RuleReLU`); on exit, normal or not,
    the hooks are removed."""
    if rule not in RULES:
        raise ValueError(f"rule={rule!r}; valid: {', '.join(RULES)}")
    relus = [(name, m) for name, m in net.named_modules() if isinstance(m, nn.ReLU)]
    inplace = [name for name, m in relus if m.inplace]
    if inplace:
        # an in-place ReLU overwrites f before the hook sees it and records its own backward
        raise ValueError(f"in-place ReLU modules {inplace} cannot be visualized; build them with inplace=False")
    handles = []
    with evaluating(net):
        try:
            for _, m in relus:
                handles.append(m.register_forward_hook(lambda _m, inputs, _out: _RuleReLU.apply(inputs[0], rule)))
            with torch.enable_grad():  # a caller's no_grad() must not silently give no reconstruction
                yield net
        finally:
            for h in handles:
                h.remove()


@contextmanager
def evaluating(net: nn.Module) -> Iterator[nn.Module]:
    """Eval mode and frozen parameters within the block; every flag put back on exit, normal or not."""
    modes = [(m, m.training) for m in net.modules()]
    grads = [(p, p.requires_grad) for p in net.parameters()]
    try:
        net.eval()  # dropout off, BatchNorm on running stats: each image's reconstruction is its own
        for p, _ in grads:
            p.requires_grad_(False)  # no weight gradients computed, none accumulated into .grad
        yield net
    finally:
        for m, training in modes:
            m.training = training
        for p, flag in grads:
            p.requires_grad_(flag)


def layer_names(net: nn.Sequential) -> list[str]:
    """Children a unit can be read from: everything but dropout and flatten (same values as gap)."""
    return [name for name, m in net.named_children() if not isinstance(m, (nn.Dropout, nn.Flatten))]


def activation_layer(net: nn.Sequential, layer: str) -> str:
    """The child whose output holds ``layer``'s activations: ``convN``/``bnN`` -> ``reluN`` when there is
    one (the feature map the next layer sees, as in the paper), else ``layer`` itself."""
    m = re.fullmatch(r"(conv|bn)(\d+)", layer)
    return f"relu{m[2]}" if m and f"relu{m[2]}" in dict(net.named_children()) else layer


def forward_to(net: nn.Sequential, x: torch.Tensor, layer: str) -> torch.Tensor:
    """Output of child ``layer`` (the children after it are not run)."""
    for name, module in net.named_children():
        x = module(x)
        if name == layer:
            return x
    raise KeyError(layer)


def reconstruct(net: nn.Sequential, x: torch.Tensor, layer: str, units: Sequence[int] | torch.Tensor,
                rule: str, positions: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Project one unit per image back to the input by ``rule``: the signal starts as 1 at that one
    activation and 0 everywhere else.

    x: (B, C, H, W) on the net's device; layer: a child name of ``net`` (its output is used as is); units: (B,)
    channel per image; positions: (B, 2) row/col per image, or None for each unit's spatial argmax.
    Returns (reconstruction like x, activation values (B,), positions (B, 2); (0, 0) for a vector layer).
    """
    units = torch.as_tensor(units, dtype=torch.long)
    with relu_rule(net, rule):
        x = x.detach().clone().requires_grad_(True)
        out = forward_to(net, x, layer)
        maps = out[torch.arange(len(out), device=out.device), units.to(out.device)]
        if maps.dim() == 1:  # a vector layer (fc, gap): the unit has one value
            values, pos = maps, torch.zeros(len(maps), 2, dtype=torch.long, device=out.device)
        else:
            w, flat = maps.shape[-1], maps.flatten(1)
            idx = flat.argmax(dim=1) if positions is None else (positions[:, 0] * w + positions[:, 1]).to(out.device)
            values, pos = flat.gather(1, idx[:, None]).squeeze(1), torch.stack([idx // w, idx % w], dim=1)
        # eval mode keeps images independent, so one backward of the sum seeds each image's own unit
        (grad,) = torch.autograd.grad(values.sum(), x)
    return grad.detach(), values.detach(), pos
