"""The report's figures, each a file of the sweep folder and a section of results.md:

- lr_grid.png  validation error against the learning rate (log axis), one panel per family (A, B, C; or per
               data set), one line per network, the chosen lr ringed, diverged and failed runs marked;
- table3.png   test error per network in the paper's layout (A/B/C x base/Strided/ConvPool/All-CNN): ours
               (mean over seeds, the spread as an error bar) beside the paper's, the axis zoomed to the data,
               every value printed;
- curves.png   validation error per epoch of the chosen runs, one panel per family, the lr drops marked.

A figure is drawn only when it has something to show (one lr per network: no grid). Each function returns
the data behind its plot (what the tests check: lines, markers, colours), and None when it drew nothing.
"""

from __future__ import annotations

import csv
import textwrap
from pathlib import Path
from typing import Any, Optional

from allconv_sweep.runs import FINISHED
from allconv_sweep.runs.choose import Choice

FAMILY_VARIANTS = (("base", "model"), ("strided", "strided_cnn"), ("convpool", "convpool_cnn"), ("all", "all_cnn"))
VARIANT_LABEL = {"base": "base", "strided": "Strided", "convpool": "ConvPool", "all": "All-CNN"}
# one colour per variant, the same in every panel and figure (4 variants: no repeat within a panel)
VARIANT_COLOR = {"base": "#1f77b4", "strided": "#ff7f0e", "convpool": "#2ca02c", "all": "#d62728"}
OTHER_COLORS = ("#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")
DATA_TITLE = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "fake": "synthetic data (data=fake)",
              "imagenet": "ImageNet"}


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def data_title(choices: list[Choice]) -> str:
    """What the sweep ran on, for figure titles: "CIFAR-10", "CIFAR-10+ (flips, translations)", ..."""
    names = []
    for data, augment in sorted({(c.data, c.augment) for c in choices}, key=str):
        name = DATA_TITLE.get(data, str(data))
        names.append(name + ("+ (flips, translations)" if augment == "flip_translate" else
                             "" if augment in ("none", None) else f" + {augment}"))
    return ", ".join(names) or "no data"


def _panel_key(c: Choice) -> str:
    """Networks are grouped into panels by family (the paper's A, B, C) within a data set."""
    prefix = "" if c.data == "cifar10" and c.augment == "none" else f"{DATA_TITLE.get(c.data, c.data)}: "
    return prefix + (f"family {c.family}" if c.family else "other") + (f" ({c.setting})" if c.setting else "")


def _colors(choices: list[Choice]) -> dict[int, str]:
    """A colour per choice: the variant's, or distinct ones for networks outside the twelve."""
    out, spare = {}, iter(OTHER_COLORS * 4)
    for c in choices:
        out[id(c)] = VARIANT_COLOR.get(c.variant or "") or next(spare)
    return out


def _suptitle(fig, text: str) -> None:
    import textwrap
    fig.suptitle("\n".join(textwrap.wrap(text, 95)), fontsize=11)


def _label(c: Choice) -> str:
    from allconv_sweep.results.paper import display_name
    return display_name(c.model)


# ------------------------------------------------------------------------------------------------ lr grid

def lr_grid(path: Path, choices: list[Choice], rows: list[Any]) -> Optional[dict]:
    """Validation error against lr per network. Returns {panel: {network: {lrs, errors, status, chosen,
    color}}}; None (and no file) when no network was run at two learning rates or more."""
    per_choice = {}
    for c in choices:
        runs = [r for r in rows if r.group == (c.data, c.augment, c.model, c.setting) and r.lr is not None
                and r.val_size != 0]
        lrs = sorted({r.lr for r in runs})
        if len(lrs) < 2:
            continue
        points = []
        for lr in lrs:
            at = [r for r in runs if r.lr == lr]
            errs = [100 * r.val_error for r in at if r.val_error is not None and r.status in FINISHED]
            status = ("ok" if all(r.status == "ok" for r in at) else
                      "diverged" if any(r.status == "diverged" for r in at) else
                      "failed" if any(r.status in ("failed", "interrupted") for r in at) else "missing")
            points.append((lr, sum(errs) / len(errs) if errs else None, status))
        per_choice[id(c)] = (c, points)
    if not per_choice:
        return None
    plt = _plt()
    panels: dict[str, list] = {}
    for c, points in per_choice.values():
        panels.setdefault(_panel_key(c), []).append((c, points))
    colors = _colors([c for c, _ in per_choice.values()])
    fig, axes = plt.subplots(1, len(panels), figsize=(max(7.0, 4.6 * len(panels) + 1), 4.4), squeeze=False,
                             sharey=True)
    data: dict[str, dict] = {}
    for ax, (panel, members) in zip(axes[0], panels.items()):
        data[panel] = {}
        top = max((e for _, pts in members for _, e, _ in pts if e is not None), default=100.0)
        for c, points in members:
            color = colors[id(c)]
            ok = [(lr, e) for lr, e, s in points if e is not None]
            ax.plot([p[0] for p in ok], [p[1] for p in ok], "-o", color=color, label=_label(c), markersize=4)
            for lr, e, status in points:
                if status in ("diverged", "failed", "missing"):  # marked, never dropped
                    y = e if e is not None else top
                    ax.plot([lr], [y], marker="X", markersize=10, color=color, linestyle="")
                    ax.annotate(status, (lr, y), textcoords="offset points", xytext=(4, 4), fontsize=7, color=color)
            chosen = [(lr, e) for lr, e, _ in points if lr == c.lr and e is not None]
            for lr, e in chosen:
                ax.plot([lr], [e], marker="o", markersize=13, markerfacecolor="none", markeredgecolor=color,
                        markeredgewidth=2)
            data[panel][c.model] = {"lrs": [p[0] for p in points], "errors": [p[1] for p in points],
                                    "status": [p[2] for p in points], "chosen": c.lr, "color": color}
        ax.set_xscale("log")
        grid = sorted({lr for _, pts in members for lr, _, _ in pts})
        ax.set_xticks(grid, [f"{lr:g}" for lr in grid])
        ax.minorticks_off()
        ax.set_title(panel)
        ax.set_xlabel("learning rate")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8, title="ringed: chosen lr; X: diverged/failed", title_fontsize=7)
    axes[0][0].set_ylabel("validation error (%)")
    _suptitle(fig, f"Learning-rate grid on {data_title([c for c, _ in per_choice.values()])}: validation error per lr")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return data


# ------------------------------------------------------------------------------------------------ table 3

def table3(path: Path, choices: list[Choice]) -> Optional[dict]:
    """Test error per network in the paper's layout, ours beside the paper's. Returns {network: {ours, std,
    paper, seeds, color}}; None when no network has a test error."""
    from allconv_sweep.results.paper import paper_value

    shown = [c for c in choices if c.test_mean is not None]
    if not shown:
        return None
    plt = _plt()
    order = {m: i for i, m in enumerate(f"{stem}_{fam}" for fam in "abc" for _, stem in FAMILY_VARIANTS)}
    shown.sort(key=lambda c: (c.data != "cifar10", str(c.data), str(c.augment), c.setting, order.get(c.model, 99), c.model))
    colors = _colors(shown)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(shown) + 2), 4.8))
    data, xs, values = {}, [], []
    for i, c in enumerate(shown):
        x = i + (i // 4) * 0.5 if all(c2.family in ("A", "B", "C") for c2 in shown) else i  # A | B | C gaps
        ours, std, paper = 100 * c.test_mean, 100 * (c.test_std or 0.0), paper_value(c)
        ax.bar(x - 0.2, ours, width=0.4, color=colors[id(c)], yerr=std if c.test_std is not None else None, capsize=3,
               hatch="//" if c.statuses - {"ok"} else None, edgecolor="black", linewidth=0.5)
        ax.text(x - 0.2, ours + std, f"{ours:.2f}", ha="center", va="bottom", fontsize=7)
        if paper is not None:
            ax.bar(x + 0.2, paper, width=0.4, color="lightgray", edgecolor="black", linewidth=0.5)
            ax.text(x + 0.2, paper, f"{paper:.2f}", ha="center", va="bottom", fontsize=7, color="dimgray")
            values.append(paper)
        values += [ours - std, ours + std]
        xs.append(x)
        data[c.model if not c.setting else f"{c.model} {c.setting}"] = {
            "ours": ours, "std": c.test_std and 100 * c.test_std, "paper": paper, "seeds": len(c.test_errors),
            "color": colors[id(c)], "protocol": c.protocol}
    low, high = min(values), max(values)
    pad = max(0.5, 0.15 * (high - low))
    ax.set_ylim(max(0.0, low - pad), high + 2 * pad)  # zoomed: Table 3's differences are tenths of a point
    ax.set_xlim(min(xs) - 1, max(xs) + 1)
    ax.set_xticks(xs, [_label(c) + ("" if c.data == "cifar10" and c.augment == "none" else f"\n{c.data}"
                                    + ("+" if c.augment == "flip_translate" else "")) for c in shown],
                  rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("test error (%)")
    with_paper = any(v["paper"] is not None for v in data.values())
    title = f"Test error on {data_title(shown)}: the chosen lr of each network"
    if with_paper:
        title += "\nours (colour; mean ± std over seeds; hatched: includes diverged) beside the paper's (gray)"
    ax.set_title("\n".join(textwrap.fill(line, 110) for line in title.split("\n")), fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return data


# -------------------------------------------------------------------------------------------- curves

def epoch_log(run_dir: Path, epochs_run: Optional[int] = None) -> dict[str, list]:
    """Per epoch of the fit, from csv/metrics.csv: epochs (1-based), validation error (%), and the epochs at
    whose start the learning rate dropped."""
    path = run_dir / "csv" / "metrics.csv"
    out: dict[str, list] = {"epochs": [], "val_error": [], "lr_drops": []}
    if not path.is_file():
        return out
    val: dict[int, float] = {}
    lr_at_step: dict[int, float] = {}
    steps_of_epoch: dict[int, int] = {}
    with open(path, newline="") as f:
        for rec in csv.DictReader(f):
            if rec.get("lr"):
                lr_at_step[int(float(rec["step"]))] = float(rec["lr"])
            if not rec.get("epoch") or rec.get("test/acc"):
                continue
            epoch = int(float(rec["epoch"]))
            if epochs_run is not None and epoch >= epochs_run:
                continue
            if rec.get("val/acc"):
                val.setdefault(epoch, 100 * (1 - float(rec["val/acc"])))
            steps_of_epoch.setdefault(epoch, int(float(rec["step"])))
    out["epochs"] = [e + 1 for e in sorted(val)]
    out["val_error"] = [val[e] for e in sorted(val)]
    lrs = [lr for _, lr in sorted(lr_at_step.items())]
    # LearningRateMonitor logs at each epoch's start: a drop between two logs starts that epoch
    out["lr_drops"] = [i + 1 for i in range(1, len(lrs)) if lrs[i] < lrs[i - 1] * 0.999]
    return out


def curves(path: Path, choices: list[Choice]) -> Optional[dict]:
    """Validation error per epoch of each chosen run (its first seed), one panel per family. Returns
    {panel: {network: {epochs, val_error, lr_drops, color}}}; None without any curve."""
    logs = {}
    for c in choices:
        if c.rows and c.rows[0].path is not None:
            log = epoch_log(Path(c.rows[0].path), c.rows[0].epochs_run)
            if log["epochs"]:
                logs[id(c)] = (c, log)
    if not logs:
        return None
    plt = _plt()
    panels: dict[str, list] = {}
    for c, log in logs.values():
        panels.setdefault(_panel_key(c), []).append((c, log))
    colors = _colors([c for c, _ in logs.values()])
    fig, axes = plt.subplots(1, len(panels), figsize=(max(7.0, 4.6 * len(panels) + 1), 4.4), squeeze=False,
                             sharey=True)
    data: dict[str, dict] = {}
    for ax, (panel, members) in zip(axes[0], panels.items()):
        data[panel] = {}
        ax.xaxis.get_major_locator().set_params(integer=True)
        drops = sorted({d for _, log in members for d in log["lr_drops"]})
        for d in drops:
            ax.axvline(d - 0.5, color="gray", linestyle=":", linewidth=1)
        for c, log in members:
            ax.plot(log["epochs"], log["val_error"], marker="o" if len(log["epochs"]) < 30 else None, markersize=3,
                    color=colors[id(c)], label=f"{_label(c)} (lr {c.lr:g})")
            data[panel][c.model] = {**log, "color": colors[id(c)]}
        ax.set_title(panel + ("; dotted: lr x0.1" if drops else ""))
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0][0].set_ylabel("validation error (%)")
    _suptitle(fig, f"Validation error per epoch of the chosen runs on {data_title([c for c, _ in logs.values()])}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return data


# file -> its key in W&B and TensorBoard (dashboard.py), in the order the dashboards show them
FIGURES = {"table3.png": "table3", "lr_grid.png": "lr_grid", "curves.png": "curves"}


def write_all(sweep_dir: Path, choices: list[Choice], rows: list[Any]) -> dict[str, dict]:
    """Every figure that has something to show, into the sweep folder; {file name: data behind it}. A
    figure from an earlier report that no longer has anything to show is removed."""
    made = {}
    for name, result in (("lr_grid.png", lr_grid(sweep_dir / "lr_grid.png", choices, rows)),
                         ("table3.png", table3(sweep_dir / "table3.png", choices)),
                         ("curves.png", curves(sweep_dir / "curves.png", choices))):
        if result is None:
            (sweep_dir / name).unlink(missing_ok=True)
        else:
            made[name] = result
    return made


