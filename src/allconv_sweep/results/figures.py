"""The report's figures (FIGURES), each a file of the sweep folder and a section of results.md. Each returns the
data behind its plot (what the tests check), or None, drawing nothing, when it has nothing to show."""

from __future__ import annotations

import csv
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from allconv_sweep.results.paper import FAMILIES, display_name, paper_value
from allconv_sweep.runs import FINISHED
from allconv_sweep.runs.choose import LrChoice

# one colour per variant, the same in every panel and figure (4 variants: no repeat within a panel)
VARIANT_COLOR = {"base": "#1f77b4", "strided": "#ff7f0e", "convpool": "#2ca02c", "all": "#d62728"}
OTHER_COLORS = ("#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")
DATA_TITLE = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "fake": "synthetic data (data=fake)",
              "imagenet": "ImageNet"}


def pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def data_title(choices: list[LrChoice]) -> str:
    """What the sweep ran on: "CIFAR-10", "CIFAR-10+ (flips, translations)", ..."""
    return ", ".join(DATA_TITLE.get(d, str(d)) + ("+ (flips, translations)" if a == "flip_translate" else
                                                  "" if a in ("none", None) else f" + {a}")
                     for d, a in sorted({(c.data, c.augment) for c in choices}, key=str)) or "no data"


def _colors(choices: list[LrChoice]) -> dict[int, str]:
    spare = iter(OTHER_COLORS * 4)
    return {id(c): VARIANT_COLOR.get(c.variant or "") or next(spare) for c in choices}


def _panel_figure(path: Path, items: list[tuple[LrChoice, dict]], title: str, draw: Callable) -> Optional[dict]:
    """A panel per family (within a data set), each item given its choice's colour, then draw(ax, panel,
    [(choice, item)]); title's {} is data_title. {panel: {network: item}}, or None (no figure) without items."""
    if not items:
        return None
    panels: dict[str, list] = {}
    colors = _colors([c for c, _ in items])
    for c, item in items:
        item["color"] = colors[id(c)]
        prefix = "" if c.data == "cifar10" and c.augment == "none" else f"{DATA_TITLE.get(c.data, c.data)}: "
        panel = prefix + (f"family {c.family}" if c.family else "other") + (f" ({c.setting})" if c.setting else "")
        panels.setdefault(panel, []).append((c, item))
    fig, axes = pyplot().subplots(1, len(panels), figsize=(max(7.0, 4.6 * len(panels) + 1), 4.4), squeeze=False,
                                  sharey=True)
    axes[0][0].set_ylabel("validation error (%)")
    for ax, (panel, members) in zip(axes[0], panels.items()):
        draw(ax, panel, members)
    save_figure(fig, path, title.format(data_title([c for c, _ in items])))
    return {panel: {c.model: item for c, item in members} for panel, members in panels.items()}


def wrapped(fig, text: str, width_px: float, fontsize: float) -> str:
    """text wrapped to width_px at fontsize, the width of a character measured with the figure's renderer."""
    probe = fig.text(0, 0, "the quick brown fox, 0123456789 (BCDE)", fontsize=fontsize)
    per_char = probe.get_window_extent(fig.canvas.get_renderer()).width / len(probe.get_text())
    probe.remove()
    return "\n".join(textwrap.fill(line, max(10, int(width_px / per_char))) for line in text.split("\n"))


def save_figure(fig, path: Path, suptitle: Optional[str] = None) -> None:
    """Titles wrapped to the figure's width, the layout fitted to its texts, then saved."""
    if suptitle:
        fig.suptitle(wrapped(fig, suptitle, 0.9 * fig.bbox.width, 11), fontsize=11)
    for ax in fig.axes:
        ax.set_title(wrapped(fig, ax.get_title(), 0.9 * ax.get_window_extent().width, 12))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    pyplot().close(fig)


def _setting_label(setting: str) -> str:
    """A setting under its network's name (an ablation's bars differ only in it): its keys' last parts, short."""
    if not setting:
        return ""
    parts = sorted({k.split(".")[-1] + "=" + v for k, _, v in (o.partition("=") for o in setting.split())})
    text = ", ".join(parts)
    return "\n" + (text if len(text) <= 30 else text[:29] + "…")


def lr_grid(path: Path, choices: list[LrChoice], rows: list[Any]) -> Optional[dict]:
    """Validation error against lr per network (run at two lrs or more): {panel: {network: {lrs, errors, ...}}}."""
    items = []
    for c in choices:
        runs = [r for r in rows if r.group == (c.data, c.augment, c.model, c.setting) and r.lr is not None
                and r.val_size != 0]
        line: dict[str, Any] = {"lrs": sorted({r.lr for r in runs}), "errors": [], "status": [], "chosen": c.lr}
        for lr in line["lrs"]:
            at = [r for r in runs if r.lr == lr]
            errs = [100 * r.val_error for r in at if r.val_error is not None and r.status in FINISHED]
            statuses = {r.status for r in at}
            line["errors"].append(sum(errs) / len(errs) if errs else None)
            line["status"].append("ok" if statuses == {"ok"} else "diverged" if "diverged" in statuses else
                                  "failed" if statuses & {"failed", "interrupted"} else "missing")
        if len(line["lrs"]) > 1:
            items.append((c, line))

    def draw(ax: Any, panel: str, members: list) -> None:
        top = max((e for _, line in members for e in line["errors"] if e is not None), default=100.0)
        for c, line in members:
            color = line["color"]
            points = list(zip(line["lrs"], line["errors"], line["status"]))
            ok = [(lr, e) for lr, e, _ in points if e is not None]
            ax.plot([p[0] for p in ok], [p[1] for p in ok], "-o", color=color, label=display_name(c.model),
                    markersize=4)
            for lr, e, status in points:
                if status != "ok":  # marked, never dropped
                    y = e if e is not None else top
                    ax.plot([lr], [y], marker="X", markersize=10, color=color, linestyle="")
                    ax.annotate(status, (lr, y), textcoords="offset points", xytext=(4, 4), fontsize=7, color=color)
                if lr == c.lr and e is not None:  # the chosen lr, ringed
                    ax.plot([lr], [e], marker="o", markersize=13, markerfacecolor="none", markeredgecolor=color,
                            markeredgewidth=2)
        grid = sorted({lr for _, line in members for lr in line["lrs"]})
        ax.set_xscale("log")
        ax.set_xticks(grid, [f"{lr:g}" for lr in grid])
        ax.minorticks_off()
        ax.set(title=panel, xlabel="learning rate")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8, title="ringed: chosen lr; X: diverged/failed", title_fontsize=7)
    return _panel_figure(path, items, "Learning-rate grid on {}: validation error per lr", draw)


def table3(path: Path, choices: list[LrChoice], rows: Any = None) -> Optional[dict]:
    """Test error per network, ours beside the paper's: {network: {ours, std, paper, seeds, color, protocol}}."""
    shown = [c for c in choices if c.test_mean is not None]  # in Table 3's order (tables.read_sweep)
    if not shown:
        return None
    colors = _colors(shown)
    fig, ax = pyplot().subplots(figsize=(max(6.0, 0.9 * len(shown) + 2), 4.8))
    data, xs, values = {}, [], []
    gaps = all(c.family in FAMILIES for c in shown)  # A | B | C
    for i, c in enumerate(shown):
        x = i + (i // 4) * 0.5 if gaps else i
        ours, std, paper = 100 * c.test_mean, 100 * (c.test_std or 0.0), paper_value(c)
        ax.bar(x - 0.2, ours, width=0.4, color=colors[id(c)], yerr=std if c.test_std is not None else None, capsize=3,
               hatch="//" if c.statuses - {"ok"} else None, edgecolor="black", linewidth=0.5)
        ax.text(x - 0.2, ours + std, f"{ours:.2f}", ha="center", va="bottom", fontsize=7)
        if paper is not None:
            ax.bar(x + 0.2, paper, width=0.4, color="lightgray", edgecolor="black", linewidth=0.5)
            ax.text(x + 0.2, paper, f"{paper:.2f}", ha="center", va="bottom", fontsize=7, color="dimgray")
            values.append(paper)
        values.append(ours + std)
        xs.append(x)
        data[c.model if not c.setting else f"{c.model} {c.setting}"] = {
            "ours": ours, "std": c.test_std and 100 * c.test_std, "paper": paper, "seeds": len(c.test_errors),
            "color": colors[id(c)], "protocol": c.protocol}
    ax.set_ylim(0, 1.15 * max(values))  # bars from zero: their heights compare as the numbers do; values printed
    ax.set_xlim(min(xs) - 1, max(xs) + 1)
    ax.set_xticks(xs, [display_name(c.model) + ("" if c.data == "cifar10" and c.augment == "none" else
                                                f"\n{c.data}" + ("+" if c.augment == "flip_translate" else ""))
                       + _setting_label(c.setting) for c in shown], rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("test error (%)")
    title = f"Test error on {data_title(shown)}: the chosen lr of each network"
    if any(v["paper"] is not None for v in data.values()):
        title += "\nours (colour; mean ± std over seeds; hatched: includes diverged) beside the paper's (gray)"
    ax.grid(axis="y", alpha=0.3)
    save_figure(fig, path, title)
    return data


def epoch_values(run_dir: Path, keys: tuple[str, ...], epochs_run: Optional[int] = None) -> dict[str, dict[int, float]]:
    """csv/metrics.csv: per key, {0-based epoch: its first value in the epoch} over the fit's epochs (not the
    validate and test after it); "lr": {step: lr} (the LearningRateMonitor's rows)."""
    path = run_dir / "csv" / "metrics.csv"
    out: dict[str, dict[int, float]] = {key: {} for key in keys}
    if not path.is_file():
        return out
    with open(path, newline="") as f:
        for rec in csv.DictReader(f):
            if "lr" in out and rec.get("lr"):
                out["lr"][int(float(rec["step"]))] = float(rec["lr"])
            epoch = None if rec.get("test/acc") or not rec.get("epoch") else int(float(rec["epoch"]))
            for key, values in out.items():
                if key != "lr" and rec.get(key) and epoch is not None and (epochs_run is None or epoch < epochs_run):
                    values.setdefault(epoch, float(rec[key]))
    return out


def epoch_log(run_dir: Path, epochs_run: Optional[int] = None, lr_drops: Optional[list[int]] = None) -> dict[str, list]:
    """Per epoch of the fit: epochs (1-based), validation error (%), and the epochs at whose start the lr
    dropped: the record's, else (records of earlier versions) read off the logged lr."""
    log = epoch_values(run_dir, ("val/acc", "lr"), epochs_run)
    val = log["val/acc"]
    if lr_drops is None:
        lrs = [lr for _, lr in sorted(log["lr"].items())]
        lr_drops = [i + 1 for i in range(1, len(lrs)) if lrs[i] < lrs[i - 1] * 0.999]
    return {"epochs": [e + 1 for e in sorted(val)], "val_error": [100 * (1 - val[e]) for e in sorted(val)],
            "lr_drops": list(lr_drops)}


def curves(path: Path, choices: list[LrChoice], rows: Any = None) -> Optional[dict]:
    """Validation error per epoch of each chosen run (its first seed): {panel: {network: {epochs, ...}}}."""
    items = []
    for c in choices:
        if c.rows and c.rows[0].path is not None:
            log = epoch_log(Path(c.rows[0].path), c.rows[0].epochs_run, c.rows[0].lr_drop_epochs)
            if log["epochs"]:
                items.append((c, log))

    def draw(ax: Any, panel: str, members: list) -> None:
        from matplotlib.ticker import MaxNLocator

        last = max(e for _, log in items for e in log["epochs"])
        errors = [v for _, log in items for v in log["val_error"]]
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))  # whole epochs, a single one too
        ax.set_xlim(0.5, last + 0.5)  # (a single epoch: not 0.96-1.04)
        drops = sorted({d for _, log in members for d in log["lr_drops"]})
        for d in drops:
            ax.axvline(d - 0.5, color="gray", linestyle=":", linewidth=1)
        for c, log in members:
            ax.plot(log["epochs"], log["val_error"], marker="o" if len(log["epochs"]) < 30 else None,
                    markersize=3 if len(log["epochs"]) > 5 else 7, color=log["color"],
                    label=f"{display_name(c.model)} (lr {c.lr:g})")
        ax.set(title=panel + ("; dotted: lr x0.1" if drops else ""), xlabel="epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        if max(errors) - min(errors) < 2:  # a point or a flat line: a few points of error around it, not 0.01
            ax.set_ylim(max(0.0, min(errors) - 2), min(100.0, max(errors) + 2))  # (the panels share y)
    return _panel_figure(path, items, "Validation error per epoch of the chosen runs on {}", draw)


@dataclass(frozen=True)
class Figure:
    """A figure of the report: its file, what draws it, its section of results.md and its tracker key."""
    file: str
    draw: Callable[[Path, list[LrChoice], list[Any]], Optional[dict]]
    caption: str
    key: str


# THE figures, in the order results.md and the dashboards show them
FIGURES = (Figure("table3.png", table3, "Test error per network, ours beside the paper's", "table3"),
           Figure("lr_grid.png", lr_grid, "Validation error against the learning rate", "lr_grid"),
           Figure("curves.png", curves, "Validation error per epoch of the chosen runs", "curves"))


def write_all(sweep_dir: Path, choices: list[LrChoice], rows: list[Any]) -> dict[str, dict]:
    """Every figure with something to show ({file: data behind it}); others, of an earlier report, removed."""
    made = {}
    for figure in FIGURES:
        result = figure.draw(sweep_dir / figure.file, choices, rows)
        if result is None:
            (sweep_dir / figure.file).unlink(missing_ok=True)
        else:
            made[figure.file] = result
    return made
