#!/usr/bin/env python
"""How far does a switch move a training trajectory, against how far rounding alone moves it?

    python benchmarks/drift.py                 # All-CNN-C + batch norm, 30 SGD steps (2.5 min on 2 busy cores)
    python benchmarks/drift.py --steps 50 --switch compile contiguous

Trains copies of one network from the same weights on the same batches (dropout off, so nothing random
differs) and prints, after selected steps, the largest relative weight difference of each copy from the
reference (fp32, channels_last, eager):

  perturbed    eager, every weight moved by --eps of its tensor's mean magnitude before step 1 (rounding's
               scale: what any change of summation order does)
  compile      torch.compile of the same network
  contiguous   eager, contiguous memory layout

A switch whose drift tracks `perturbed` changes results only as rounding does: the agreement check's
seed-to-seed noise (benchmarks/agreement.py) is the right yardstick for it, not a same-seed comparison.
A switch that computed something else would drift from step 1 by far more than `perturbed` does.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import torch
from hydra.utils import instantiate

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from rich.table import Table  # noqa: E402

from allconv_sweep.config import compose  # noqa: E402
from allconv_sweep.console import console  # noqa: E402


def build(model: str, overrides: list[str]) -> torch.nn.Module:
    cfg = compose([f"model={model}", "data=fake", *overrides])
    return instantiate(cfg.model)


def max_rel_diff(a: torch.nn.Module, b: torch.nn.Module) -> float:
    return max(((p - q).norm() / p.norm().clamp_min(1e-30)).item() for p, q in zip(a.parameters(), b.parameters()))


def drift(model: str, overrides: list[str], switches: list[str], steps: int = 30, batch: int = 32,
          lr: float = 0.05, eps: float = 1e-6) -> list[tuple[int, list[float]]]:
    """(step, the largest relative weight difference of each switch's copy from the reference) after steps
    1, 5, 10, 20 and the last."""
    torch.manual_seed(0)
    ref = build(model, overrides).train()
    for m in ref.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0  # compiled graphs draw other dropout masks: switch the randomness off
    nets, fns, layouts = {"reference": ref}, {}, {"reference": torch.channels_last}
    for name in switches:
        net = copy.deepcopy(ref)
        if name == "perturbed":
            with torch.no_grad():
                for p in net.parameters():
                    p.add_(torch.randn_like(p) * eps * p.abs().mean())
        nets[name] = net
        layouts[name] = torch.contiguous_format if name == "contiguous" else torch.channels_last
    for name, net in nets.items():
        nets[name] = net.to(memory_format=layouts[name])
        fns[name] = torch.compile(nets[name]) if name == "compile" else nets[name]
    opts = {n: torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9, weight_decay=1e-3) for n, net in nets.items()}

    g = torch.Generator().manual_seed(1)
    report = sorted({1, 5, 10, 20, steps} & set(range(1, steps + 1)))
    rows = []
    for step in range(1, steps + 1):
        x = torch.randn(batch, 3, 32, 32, generator=g)
        y = torch.randint(0, 10, (batch,), generator=g)
        for name, fn in fns.items():
            opts[name].zero_grad()
            loss = torch.nn.functional.cross_entropy(fn(x.contiguous(memory_format=layouts[name])), y)
            loss.backward()
            opts[name].step()
        if step in report:
            rows.append((step, [max_rel_diff(ref, nets[n]) for n in switches]))

    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="all_cnn_c")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--eps", type=float, default=1e-6, help="relative size of the perturbed copy's weight noise")
    ap.add_argument("--switch", nargs="+", default=["perturbed", "compile"], choices=["perturbed", "compile", "contiguous"])
    ap.add_argument("overrides", nargs="*", default=["model.batch_norm=true", "model.final_relu=false"],
                    help="model overrides (default: batch norm on, final ReLU off, as agreement.py's one-epoch check)")
    args = ap.parse_args(argv)

    rows = drift(args.model, args.overrides, args.switch, args.steps, args.batch, args.lr, args.eps)
    table = Table(title=f"{args.model}: largest relative weight difference from the eager fp32 reference "
                        f"(batch {args.batch}, lr {args.lr}, dropout off)")
    table.add_column("after step", justify="right")
    for name in args.switch:
        table.add_column(f"{name} (eps {args.eps:g})" if name == "perturbed" else name, justify="right")
    for step, diffs in rows:
        table.add_row(str(step), *(f"{d:.2e}" for d in diffs))
    console.print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
