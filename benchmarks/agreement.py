#!/usr/bin/env python
"""Do the speed switches change results? Each switch against the fp32 reference, on real data.

    python benchmarks/agreement.py                       # CIFAR-10 head in ../shared/data; 48 min on a 2-core CPU
    python benchmarks/agreement.py --quick               # about a minute, synthetic data: checks this script
    python benchmarks/agreement.py --variants fp32 bf16 fp16   # on a GPU every variant runs every --seeds

Variants (``--variants``), each a config switch of ``python -m allconv_sweep``:

  fp32         the reference: trainer.precision=32-true, model.channels_last=true (the default layout;
               precision named, as in every fp32 variant: the default auto is bf16 where that is native)
  contiguous   model.channels_last=false (so channels_last's own effect is fp32 vs this)
  compile      model.compile=true (torch.compile)
  bf16         trainer.precision=bf16-mixed
  fp16         trainer.precision=16-mixed

Two checks:

  train  short runs of the network through ``train(cfg)``, exactly as the CLI runs them, for every variant
         and seed; the reference's seed-to-seed spread is the noise. A variant agrees "within noise" when
         |its mean - the reference mean| <= 2 sd_ref sqrt(1/n + 1/n_ref) (sd_ref: the reference seeds'
         standard deviation), for test accuracy. Same-seed runs start from the same weights and see the
         same batches, so the paired differences are shown too.
  eval   the reference run's trained network (seed of ``--eval-seed``) evaluated under every variant, forward
         only: accuracy, the share of images whose predicted class is the fp32 one, the largest logit
         difference. Or any checkpoint with ``--ckpt``.

On a CPU without native bf16 (no amx_bf16 or avx512_bf16 flag: an AMD EPYC, say) bf16 is emulated and
about 10x slower, so by default bf16 gets only ``--slow-seeds`` (one seed) there; on a CPU with native bf16
(an Intel Xeon with AMX) and on a GPU it runs every seed. fp16 is checked by evaluation only on a CPU
(Lightning runs 16-mixed training as bf16-mixed there). The JSON and the tables name the CPU and its
bf16/AVX-512/AMX flags: the verdict is per hardware class. Runs are kept under ``--out-dir``: a re-run reuses finished runs and only adds the missing
ones. Prints one table per check and writes everything as JSON (``--json``).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "src") not in sys.path:  # runnable from a checkout without the editable install
    sys.path.insert(0, str(ROOT / "src"))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from allconv_sweep.config import compose  # noqa: E402
from allconv_sweep.console import console  # noqa: E402
from allconv_sweep.runs import versions  # noqa: E402
from allconv_sweep.training.precision import read_cpu  # noqa: E402

VARIANTS: dict[str, list[str]] = {
    "fp32": ["trainer.precision=32-true"],
    "contiguous": ["trainer.precision=32-true", "model.channels_last=false"],
    "compile": ["trainer.precision=32-true", "model.compile=true"],
    "bf16": ["trainer.precision=bf16-mixed"],
    "fp16": ["trainer.precision=16-mixed"],
}
EMULATED_ON_CPU = {"bf16", "fp16"}  # no native bf16/fp16 arithmetic on most CPUs: ~10x slower than fp32
# Lightning runs trainer.precision=16-mixed as bf16-mixed on a CPU (it has no fp16 autocast there), so
# a CPU fp16 training run would repeat the bf16 one: fp16 trains only on a GPU; the eval check does run
# fp16 on a CPU (torch.autocast with float16 directly).
GPU_ONLY_TRAINING = {"fp16"}
REFERENCE = "fp32"
SHARED = ROOT.parent / "shared" / "data" / "cifar10-head"

# The training check needs a run that leaves chance measurably within one epoch of 3.6k images (one
# epoch of emulated bf16 takes a quarter of an hour on a 2-core CPU): the paper-faithful net at lr 0.05
# needs more than 4 epochs on the head to leave 10% (its final ReLU even dies there: README, "collapse"),
# and with batch norm at batch 128 one epoch (29 steps) reached 12.2% test accuracy. So the check trains
# with batch norm, without the final ReLU, at batch 32 (114 steps an epoch for the same arithmetic). The
# switches under test touch the arithmetic, not the architecture; the eval check covers the checkpoint
# of whatever run is given with --ckpt.
REAL = [
    "data=cifar10", "data.verify=false", "data.download=false", "data.val_size=500", "data.batch_size=32",
    "model=all_cnn_c", "model.batch_norm=true", "model.final_relu=false",
    "trainer.max_epochs=1", "scheduler.gamma=1.0", "print_config=false",
]
# --recipe default: the project's default recipe exactly as `python -m allconv_sweep` runs it on the head
# (the paper's network, GCN+ZCA, final ReLU, Caffe's init, batch 256, lr 0.05) for 12 epochs, as issue
# "Faithful and alive" settled it. The question it answers: does bf16 change the result of the run users
# actually run? Its fp32 runs are the same config (the same result key) as
#   python -m allconv_sweep data.root=<head> data.verify=false data.download=false data.val_size=500 \
#       trainer.max_epochs=12 trainer.precision=32-true seed=S hydra.run.dir=<out-dir>/fp32/seedS
# so runs made that way are found and reused.
DEFAULT_12 = ["data.verify=false", "data.download=false", "data.val_size=500", "trainer.max_epochs=12"]
QUICK = [
    "data=fake", "preprocess=standardize", "data.train_size=64", "data.val_size=32", "data.test_size=32",
    "data.batch_size=16", "data.eval_batch_size=32", "model.final_relu=false",
    "trainer.max_epochs=1", "print_config=false", "trainer.enable_progress_bar=false",
]


# -- the training check ----------------------------------------------------------------------------
def run_dir(out_dir: Path, variant: str, seed: int) -> Path:
    return out_dir / variant / f"seed{seed}"


def final_val_loss(path: Path) -> float | None:
    """The last val/loss in the run's CSV log: the final model's, written by the closing validate."""
    log = path / "csv" / "metrics.csv"
    if not log.is_file():
        return None
    vals = [r["val/loss"] for r in csv.DictReader(open(log)) if r.get("val/loss")]
    return float(vals[-1]) if vals else None


def train_one(base: list[str], variant: str, seed: int, out_dir: Path, cache_dir: str | None) -> dict[str, Any]:
    from omegaconf import open_dict

    from allconv_sweep.training.train import train

    cfg = compose(base + VARIANTS[variant] + [f"seed={seed}"])
    path = run_dir(out_dir, variant, seed)
    with open_dict(cfg):
        cfg.paths.output_dir = str(path)
        if cache_dir:
            cfg.paths.cache_dir = cache_dir
    m = train(cfg)
    return {
        "variant": variant, "seed": seed, "status": m["status"], "reason": m.get("reason"),
        "val_acc": m.get("val_acc"), "test_acc": m.get("test_acc"), "val_loss": final_val_loss(path),
        "train_acc": m.get("train_acc"), "images_per_s": m.get("train_images_per_s"),
        "wall_time_s": m.get("wall_time_s"), "precision": m.get("precision"), "dir": str(path),
    }


def _mean_sd(xs: list[float]) -> tuple[float | None, float | None]:
    if not xs:
        return None, None
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else None)


def _verdict(ok: list[dict], ref: list[dict], key: str) -> dict[str, Any]:
    """Mean difference from the reference on ``key``, its noise bound, the verdict, the same-seed differences."""
    mine = [r[key] for r in ok if r.get(key) is not None]
    theirs = [r[key] for r in ref if r.get(key) is not None]
    ref_by_seed = {r["seed"]: r[key] for r in ref if r.get(key) is not None}
    v: dict[str, Any] = {"diff": None, "bound": None, "within_noise": None,
                         "paired": [r[key] - ref_by_seed[r["seed"]] for r in ok
                                    if r.get(key) is not None and r["seed"] in ref_by_seed]}
    if mine and theirs:
        v["diff"] = statistics.fmean(mine) - statistics.fmean(theirs)
        if len(theirs) > 1:
            v["bound"] = 2 * statistics.stdev(theirs) * math.sqrt(1 / len(mine) + 1 / len(theirs))
            v["within_noise"] = abs(v["diff"]) <= v["bound"]
    return v


def summarize(runs: list[dict[str, Any]], keys: tuple[str, ...] = ("train_acc", "test_acc")) -> list[dict[str, Any]]:
    """Per variant: mean and sd of each metric over its ok seeds, and for each of ``keys`` the difference
    from the reference, its noise bound and the verdict. Two keys because they fail differently: the
    training accuracy (the epoch's mean, in training mode) tracks learning; the final model's test
    accuracy is what a run reports, but right after a high-lr epoch a batch-norm net's running
    statistics lag its weights, and test accuracy then scatters widely between seeds."""
    by: dict[str, list[dict]] = {}
    for r in runs:
        if r["status"] == "ok":
            by.setdefault(r["variant"], []).append(r)
    ref = by.get(REFERENCE, [])
    out = []
    for variant in [v for v in VARIANTS if v in {r["variant"] for r in runs}]:
        ok = by.get(variant, [])
        row: dict[str, Any] = {"variant": variant, "runs": len([r for r in runs if r["variant"] == variant]),
                               "ok": len(ok), "seeds": sorted(r["seed"] for r in ok)}
        for metric in ("train_acc", "val_acc", "test_acc", "val_loss", "images_per_s"):
            row[f"{metric}_mean"], row[f"{metric}_sd"] = _mean_sd([r[metric] for r in ok if r.get(metric) is not None])
        for key in keys:
            row[key] = None if variant == REFERENCE else _verdict(ok, ref, key)
        out.append(row)
    return out


# -- the evaluation check --------------------------------------------------------------------------
@torch.no_grad()
def logits_under(model, x: torch.Tensor, variant: str, device: torch.device, batch: int) -> torch.Tensor:
    """The network's logits for x with the variant's switch applied to the trained fp32 weights."""
    net = model.net.to(device).eval()
    layout = torch.contiguous_format if variant == "contiguous" else torch.channels_last
    net = net.to(memory_format=layout)
    fn = torch.compile(net) if variant == "compile" else net
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(variant)
    out = []
    for i in range(0, len(x), batch):
        xb = x[i:i + batch].to(device).contiguous(memory_format=layout)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            out.append(fn(xb).float().cpu())
    net.to(memory_format=torch.channels_last)
    return torch.cat(out)


def eval_check(ckpt: Path, variants: list[str], data_root: str | None, device: torch.device,
               batch: int) -> dict[str, Any]:
    from allconv_sweep.model.module import load_checkpoint
    from allconv_sweep.training.components import datamodule_from

    model = load_checkpoint(str(ckpt))
    cfg = dict(model.config)
    if data_root:
        cfg["data"] = {**cfg["data"], "root": data_root}
    dm = datamodule_from(cfg)
    dm.prepare_data()
    dm.setup()
    rows = []
    for split in ("val", "test"):
        x, y = dm.splits[split]
        if not len(y):
            continue
        ref = None
        for variant in [REFERENCE] + [v for v in variants if v != REFERENCE]:
            t0 = time.perf_counter()
            logits = logits_under(model, x.cpu(), variant, device, batch)
            pred = logits.argmax(1)
            if ref is None:
                ref = logits
            diff = (logits - ref).abs()
            rows.append({
                "split": split, "variant": variant, "images": len(y),
                "acc": (pred == y.cpu()).float().mean().item(),
                "same_prediction": (pred == ref.argmax(1)).float().mean().item(),
                "max_abs_logit_diff": diff.max().item(), "mean_abs_logit_diff": diff.mean().item(),
                "logit_scale": ref.abs().mean().item(), "seconds": time.perf_counter() - t0,
            })
            console.print(f"  eval {split:4s} {variant:10s} acc {rows[-1]['acc']:.4f}  "
                          f"same prediction {rows[-1]['same_prediction']:.4f}  ({rows[-1]['seconds']:.0f} s)")
    return {"ckpt": str(ckpt), "model": cfg["model"]["name"], "rows": rows}


# -- output ----------------------------------------------------------------------------------------
def _pct(v: float | None, sd: float | None = None) -> str:
    if v is None:
        return "-"
    return f"{100 * v:.2f}" + (f" ± {100 * sd:.2f}" if sd is not None else "")


def print_train(summary: list[dict[str, Any]], header: str) -> None:
    t = Table(title=f"training check: {header}", title_justify="left")
    for col in ("variant", "ok/runs", "train acc %", "val acc %", "test acc %", "val loss",
                "Δ train acc (bound)", "Δ test acc (bound)", "Δ test acc, same seed", "within noise (train/test)",
                "img/s"):
        t.add_column(col, justify="left" if col == "variant" else "right")

    def delta(v: dict | None) -> str:
        if not v or v["diff"] is None:
            return "-"
        return f"{100 * v['diff']:+.2f}" + ("" if v["bound"] is None else f" (±{100 * v['bound']:.2f})")

    def verdict(v: dict | None) -> str:
        return "-" if not v else {None: "n/a", True: "yes", False: "NO"}[v["within_noise"]]

    for r in summary:
        ref = r["variant"] == REFERENCE
        loss = "-" if r["val_loss_mean"] is None else f"{r['val_loss_mean']:.3f}"
        t.add_row(r["variant"], f"{r['ok']}/{r['runs']}", _pct(r["train_acc_mean"], r["train_acc_sd"]),
                  _pct(r["val_acc_mean"], r["val_acc_sd"]), _pct(r["test_acc_mean"], r["test_acc_sd"]), loss,
                  "ref" if ref else delta(r["train_acc"]), "ref" if ref else delta(r["test_acc"]),
                  "-" if ref else " ".join(f"{100 * d:+.2f}" for d in r["test_acc"]["paired"]),
                  "ref" if ref else f"{verdict(r['train_acc'])}/{verdict(r['test_acc'])}",
                  "-" if r["images_per_s_mean"] is None else f"{r['images_per_s_mean']:.1f}")
    _wide().print(t)
    _wide().print("Δ: variant mean - fp32 mean, in points; bound: 2 sd_fp32 sqrt(1/n + 1/n_fp32) over seeds; "
                  "train acc: the epoch's mean in training mode; img/s: as the runs went (not a benchmark: "
                  "use throughput.py).", style="dim")


def _wide() -> Console:
    return Console(highlight=False, width=max(console.width, 150))  # never squeeze a table into 80 columns


def print_eval(ev: dict[str, Any]) -> None:
    t = Table(title=f"evaluation check: {ev['ckpt']}", title_justify="left")
    for col in ("split", "variant", "images", "acc %", "same prediction as fp32 %", "max |Δlogit|",
                "mean |Δlogit|", "mean |logit|", "s"):
        t.add_column(col, justify="left" if col in ("split", "variant") else "right")
    for r in ev["rows"]:
        t.add_row(r["split"], r["variant"], str(r["images"]), f"{100 * r['acc']:.2f}",
                  f"{100 * r['same_prediction']:.2f}", f"{r['max_abs_logit_diff']:.2e}",
                  f"{r['mean_abs_logit_diff']:.2e}", f"{r['logit_scale']:.3f}", f"{r['seconds']:.0f}")
    _wide().print(t)


# -- main --------------------------------------------------------------------------------------------
def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="synthetic data, tiny runs: checks the script (numbers meaningless)")
    p.add_argument("--data-root", default=None, help=f"CIFAR-10 folder (default {SHARED})")
    p.add_argument("--recipe", choices=["one-epoch-bn", "default"], default="one-epoch-bn",
                   help="one-epoch-bn: one epoch with batch norm at batch 32 (leaves chance fast: every switch); "
                        "default: the default recipe for 12 epochs (what users run; slow: use with --variants)")
    p.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=None,
                   help="default: fp32 contiguous compile bf16 fp16")
    p.add_argument("--seeds", nargs="+", type=int, default=None, help="default: 0 1 2 (--quick: 0 1)")
    p.add_argument("--slow-seeds", nargs="+", type=int, default=[0],
                   help="seeds of the emulated precisions (bf16, fp16) on a CPU")
    p.add_argument("--checks", nargs="+", choices=["train", "eval"], default=["train", "eval"])
    p.add_argument("--eval-seed", type=int, default=0, help="the reference run whose network the eval check uses")
    p.add_argument("--ckpt", type=Path, default=None, help="evaluate this checkpoint instead (any run of ours)")
    p.add_argument("--eval-batch", type=int, default=250)
    p.add_argument("--out-dir", type=Path, default=ROOT / "outputs" / "agreement")
    p.add_argument("--json", type=Path, default=None, help="default: <out-dir>/agreement.json")
    p.add_argument("overrides", nargs="*", help="extra config overrides for every training run, e.g. optimizer.lr=0.01")
    a = p.parse_args(argv)
    if a.variants is None:
        a.variants = ["fp32", "contiguous", "bf16"] if a.quick else list(VARIANTS)
    if a.seeds is None:
        a.seeds = [0, 1] if a.quick else [0, 1, 2]
    if REFERENCE not in a.variants:
        a.variants = [REFERENCE] + a.variants
    return a


def main(argv: list[str] | None = None) -> dict[str, Any]:
    a = parse(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if a.quick:
        base, cache_dir = QUICK + a.overrides, str(a.out_dir / "cache")
    else:
        root = Path(a.data_root) if a.data_root else SHARED
        if not root.is_dir():
            raise SystemExit(f"--data-root={root}: no such folder; valid: a CIFAR-10 folder with "
                             "cifar-10-batches-py/ (the head in ../shared/data/cifar10-head, or the full set)")
        recipe = DEFAULT_12 if a.recipe == "default" else REAL
        base, cache_dir = recipe + [f"data.root={root}"] + a.overrides, None
    hardware = read_cpu().describe() if device.type == "cpu" else torch.cuda.get_device_name(device)
    console.print(f"hardware: {hardware}", soft_wrap=True)
    result: dict[str, Any] = {"device": str(device), "hardware": hardware, "base_overrides": base,
                              "variants": a.variants, "versions": versions()}
    if "train" in a.checks:
        runs = []
        for variant in a.variants:
            if device.type == "cpu" and variant in GPU_ONLY_TRAINING:
                console.print(f"[yellow]{variant}: no training runs on a CPU[/yellow] (Lightning runs "
                              f"{VARIANTS[variant][0]} as bf16-mixed there); evaluation only")
                continue
            emulated = device.type == "cpu" and variant in EMULATED_ON_CPU and not read_cpu().native_bf16
            seeds = a.slow_seeds if emulated else a.seeds
            for seed in seeds:
                console.rule(f"[bold]{variant}[/bold] seed {seed}")
                runs.append(train_one(base, variant, seed, a.out_dir, cache_dir))
        result["train_runs"] = runs
        result["train_summary"] = summarize(runs)
    if "eval" in a.checks:
        ckpt = a.ckpt or run_dir(a.out_dir, REFERENCE, a.eval_seed) / "checkpoints" / "last.ckpt"
        if not ckpt.is_file():
            raise SystemExit(f"--ckpt={ckpt}: no such file; valid: a run's checkpoints/last.ckpt "
                             "(run the train check first, or pass --ckpt)")
        console.rule("[bold]evaluation check[/bold]")
        result["eval"] = eval_check(ckpt, a.variants, None if a.quick else str(a.data_root or SHARED),
                                    device, a.eval_batch)
    if "train_summary" in result:
        print_train(result["train_summary"], " ".join(base) + f"; on {hardware}")
    if "eval" in result:
        print_eval(result["eval"])
    out = a.json or a.out_dir / "agreement.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    console.print(f"written: {out}")
    return result


if __name__ == "__main__":
    main()
