"""Backprop, deconvnet and guided backpropagation: one backward pass that differs only at each ReLU.

Springenberg et al. 2015, Section 5 (and Figure 1 of the paper). With ``f`` the ReLU's forward input and
``R`` the signal arriving from the layer above, the signal passed further down is

    backprop (saliency):  R * (f > 0)
    deconvnet:            max(R, 0)             (ignores the forward pass)
    guided backprop:      max(R, 0) * (f > 0)

Everything else is the ordinary gradient: transposed convolutions, the eval-mode BatchNorm scale, the
global average, and for max-pooling the argmax "switches" of this very forward pass (autograd of
``MaxPool2d`` routes the signal to the argmax, which is what the deconvnet of pooling networks does).

The rule is applied by forward hooks on every ``nn.ReLU`` that replace its output with the same values
computed by :class:`_RuleReLU`, whose backward is the rule. :func:`relu_rule` installs them and, on the
way out (also after an exception), removes them and restores every module's train/eval mode and every
parameter's ``requires_grad``: the model is left as it was found.
"""

from __future__ import annotations

from contextlib import contextmanager
from functools import partial
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
        if ctx.rule == "backprop":
            R_in = R * (f > 0)
        elif ctx.rule == "deconvnet":
            R_in = R.clamp(min=0)
        else:  # guided_backprop
            R_in = R.clamp(min=0) * (f > 0)
        return R_in, None


def _replace_output(module: nn.Module, inputs: tuple, output: torch.Tensor, rule: str) -> torch.Tensor:
    return _RuleReLU.apply(inputs[0], rule)


@contextmanager
def relu_rule(net: nn.Module, rule: str) -> Iterator[nn.Module]:
    """Within the block, ``net`` runs in eval mode and its ReLUs backpropagate by ``rule``.

    Parameters are frozen (see :func:`evaluating`). On exit, normal or not, the hooks are removed and
    every mode / ``requires_grad`` flag is put back.
    """
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
                handles.append(m.register_forward_hook(partial(_replace_output, rule=rule)))
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
    children = dict(net.named_children())
    for prefix in ("conv", "bn"):
        if layer.startswith(prefix) and layer[len(prefix):].isdigit():
            relu = "relu" + layer[len(prefix):]
            if relu in children:
                return relu
    return layer


def forward_to(net: nn.Sequential, x: torch.Tensor, layer: str) -> torch.Tensor:
    """Output of child ``layer`` (the children after it are not run)."""
    for name, module in net.named_children():
        x = module(x)
        if name == layer:
            return x
    raise KeyError(layer)


def unit_values(out: torch.Tensor, units: torch.Tensor,
                positions: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image b: the activation of unit ``units[b]`` at ``positions[b]`` (row, col), or at its spatial
    argmax when positions is None. Returns (values (B,), positions (B, 2); (0, 0) for a vector output)."""
    b = torch.arange(out.shape[0], device=out.device)
    maps = out[b, units.to(out.device)]
    if maps.dim() == 1:  # a vector layer (fc, gap): the unit has one value
        return maps, torch.zeros(len(b), 2, dtype=torch.long, device=out.device)
    flat = maps.flatten(1)
    w = maps.shape[-1]
    if positions is None:
        idx = flat.argmax(dim=1)
    else:
        positions = positions.to(out.device)
        idx = positions[:, 0] * w + positions[:, 1]
    return flat.gather(1, idx[:, None]).squeeze(1), torch.stack([idx // w, idx % w], dim=1)


def reconstruct(net: nn.Sequential, x: torch.Tensor, layer: str, units: Sequence[int] | torch.Tensor,
                rule: str, positions: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Project one unit per image back to the input by ``rule``.

    x: (B, C, H, W) on the net's device; layer: a child name of ``net`` (its output is used as is);
    units: (B,) channel per image; positions: (B, 2) spatial position per image, or None for each
    unit's spatial argmax. The signal starts as 1 at that one activation and 0 everywhere else.
    Returns (reconstruction like x, activation values (B,), positions (B, 2)).
    """
    units = torch.as_tensor(units, dtype=torch.long)
    with relu_rule(net, rule):
        x = x.detach().clone().requires_grad_(True)
        out = forward_to(net, x, layer)
        values, pos = unit_values(out, units, positions)
        # eval mode keeps images independent, so one backward of the sum seeds each image's own unit
        (grad,) = torch.autograd.grad(values.sum(), x)
    return grad.detach(), values.detach(), pos
