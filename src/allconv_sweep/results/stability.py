"""python -m allconv_sweep.stability <sweep dir>, and Hydra's callback of `+sweep=stability`: the stability map
(stability.md, stability.png) per cell (init, batch size, lr): seeds alive, when dead ones died, the last loss."""

from __future__ import annotations

import math
import statistics
import sys
from pathlib import Path
from typing import Any, Optional

from allconv_sweep.errors import UserError
from allconv_sweep.results.figures import epoch_values
from allconv_sweep.results.report import ReportCallback, sweep_command
from allconv_sweep.results.tables import md_table
from allconv_sweep.runs.collect import JobResult, collect

STABILITY_MD, STABILITY_PNG = "stability.md", "stability.png"
DEAD_KEY = "callbacks.divergence.dead_output_fraction"  # the DivergenceMonitor's threshold, in run.json's identity
# "learning" at the end: the last epoch's training loss clearly below the ln 10 = 2.3026 plateau (a run can
# be alive, its class scores firing, and still have fallen back onto the plateau: ~2.30)
PLATEAU_EXIT = 2.29


class JobStability:
    """A finished job (its JobResult's fields read through) and what the map reads off its epoch log."""

    def __init__(self, result: JobResult) -> None:
        self.result = result
        log = epoch_values(result.path, ("val/live_fraction", "train/loss_epoch"), int(result.epochs_run or 0))
        self.epochs = [e + 1 for e in sorted(log["val/live_fraction"])]  # 1-based
        self.live = [log["val/live_fraction"][e - 1] for e in self.epochs]
        self.train_loss = [log["train/loss_epoch"].get(e - 1, math.nan) for e in self.epochs]
        self.init = str(result.identity["model.init"])
        # the sweep's batch size (the record's is what the run used: fewer when the data is)
        self.batch_size = int(result.identity.get("data.batch_size", result.batch_size))
        self.dead_fraction = float(result.identity[DEAD_KEY])
        self.died_epoch = None  # the first epoch from which the live fraction stayed under the threshold
        for e, f in zip(self.epochs, self.live):
            self.died_epoch = (self.died_epoch or e) if f < self.dead_fraction else None
        self.alive = result.status == "ok" and self.died_epoch is None
        self.learning = self.alive and bool(self.train_loss) and self.train_loss[-1] < PLATEAU_EXIT

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__dict__["result"], name)


def _cells(runs: list[JobStability]) -> dict[tuple[str, int, float], list[JobStability]]:
    cells: dict[tuple[str, int, float], list[JobStability]] = {}
    for r in sorted(runs, key=lambda r: (r.init, r.batch_size, -r.lr, r.seed)):
        cells.setdefault((r.init, r.batch_size, r.lr), []).append(r)
    return cells


def _pct(v: Optional[float]) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.1f}%"


def _accs(rs: list[JobStability]) -> tuple[list[float], float]:
    """A cell's test accuracies, and their mean (nan without any)."""
    accs = [r.test_acc for r in rs if r.test_acc is not None]
    return accs, statistics.fmean(accs) if accs else math.nan


def render_md(sweep_dir: Path, runs: list[JobStability]) -> str:
    cells = _cells(runs)
    epochs = sorted({r.epochs_run for r in runs})
    dead = "/".join(f"{d:.0%}" for d in sorted({r.dead_fraction for r in runs}))
    lines = [f"# Stability map: {sweep_dir.name}", "",
             "All-CNN-C as in the paper (GCN+ZCA, final ReLU, dropout, no batch norm). A run is *alive* when "
             f"it ended ok with at least {dead} of the validation images firing a class score at "
             "its last epoch; *died* is the first epoch from which that share stayed under "
             f"{dead}; *learning* when, alive, its last epoch's training loss is below {PLATEAU_EXIT} "
             f"(off the ln 10 = 2.303 plateau; a run can be alive and back on it).", "",
             f"Epochs run: {', '.join(map(str, epochs))}.", ""]
    lines += md_table(["init", "batch", "lr", "alive", "learning", "died at epoch", "last-epoch train loss",
                       "live at the end", "test acc (mean; per seed)"], [
        [init, bs, f"{lr:g}", f"{sum(r.alive for r in rs)}/{len(rs)}", f"{sum(r.learning for r in rs)}/{len(rs)}",
         ", ".join(str(r.died_epoch) for r in rs if r.died_epoch is not None) or "-",
         ", ".join(f"{r.train_loss[-1]:.3f}" if r.train_loss else "-" for r in rs),
         ", ".join(_pct(r.live[-1]) if r.live else "-" for r in rs),
         f"{_pct(_accs(rs)[1])}; " + ", ".join(_pct(a) for a in _accs(rs)[0])] for (init, bs, lr), rs in cells.items()],
        "lrrrr")
    lines += ["", "## Every run", ""] + md_table(
        ["init", "batch", "lr", "seed", "status", "epochs", "steps/epoch", "val live fraction per epoch (%)",
         "train loss per epoch", "test acc", "note"],
        [[r.init, r.batch_size, f"{r.lr:g}", r.seed, r.status, r.epochs_run, r.steps_per_epoch or "-",
          " ".join(f"{100 * f:.0f}" for f in r.live), " ".join(f"{x:.3f}" for x in r.train_loss), _pct(r.test_acc),
          (r.reason or "").replace("|", "/")] for rs in cells.values() for r in rs], "lrrrlrrllrl")
    lines += ["", f"![stability map]({STABILITY_PNG})", ""]
    return "\n".join(lines)


def write_png(path: Path, runs: list[JobStability]) -> None:
    from matplotlib.lines import Line2D

    from allconv_sweep.results.figures import pyplot, save_figure

    plt, cells = pyplot(), _cells(runs)
    rows, cols = sorted({(i, b) for i, b, _ in cells}), sorted({lr for _, _, lr in cells}, reverse=True)
    fig, axes = plt.subplots(1, 3, figsize=(18, 5.5), gridspec_kw={"width_ratios": [1.1, 1, 1]})
    ax, grid = axes[0], [[math.nan] * len(cols) for _ in rows]
    for (i, b, lr), rs in cells.items():
        y, x = rows.index((i, b)), cols.index(lr)
        grid[y][x] = v = 100 * _accs(rs)[1]
        ax.text(x, y, f"{v:.1f}%\n{sum(r.alive for r in rs)}/{len(rs)} alive, {sum(r.learning for r in rs)} learning",
                ha="center", va="center", color="white" if v < 14 else "black", fontsize=9)
    im = ax.imshow(grid, cmap="viridis", aspect="auto", vmin=10)
    ax.set_xticks(range(len(cols)), [f"lr {c:g}" for c in cols])
    ax.set_yticks(range(len(rows)), [f"{i}, batch {b}" for i, b in rows])
    ax.set_title("test accuracy (mean over seeds); seeds alive / learning at the end")
    fig.colorbar(im, ax=ax, label="test accuracy (%)")
    colours = {init: plt.get_cmap("tab10")(k) for k, init in enumerate(sorted({r.init for r in runs}))}
    styles = {bs: s for bs, s in zip(sorted({r.batch_size for r in runs}), ("-", "--", ":", "-."))}
    for r in (r for r in runs if r.train_size):
        seen = [e * r.train_size / 1000 for e in r.epochs]
        kw = dict(color=colours[r.init], linestyle=styles[r.batch_size], alpha=0.8,
                  marker="o" if r.lr == max(cols) else "x", markersize=3)
        axes[1].plot(seen, [100 * f for f in r.live], **kw)
        axes[2].plot(seen, r.train_loss, **kw)
    seen = "training images seen (thousands)"
    axes[1].set(ylabel="validation images with a class score > 0 (%)", title="live class scores", xlabel=seen)
    axes[2].axhline(math.log(10), color="gray", linewidth=0.8)
    axes[2].set(ylabel="training loss (epoch mean); gray: ln 10", title="training loss", xlabel=seen)
    handles = [Line2D([], [], color=c, label=i) for i, c in colours.items()]
    handles += [Line2D([], [], color="black", linestyle=s, label=f"batch {b}") for b, s in styles.items()]
    handles += [Line2D([], [], color="black", marker=m, linestyle="", label=f"lr {lr:g}")
                for lr, m in zip(cols[:2], ("o", "x"))]
    axes[1].legend(handles=handles, fontsize=8)
    save_figure(fig, path)


def write(sweep_dir: str | Path, plot: bool = True, echo: bool = True) -> list[JobStability]:
    sweep_dir = Path(sweep_dir).resolve()
    # a job still running, or killed (or without run.json: its cell unknown): nothing to map yet
    runs = [JobStability(r) for r in collect(sweep_dir) if r.status != "missing" and r.identity]
    if not runs:
        raise UserError(f"{sweep_dir}: no finished run (metrics.json and run.json) in it")
    md = render_md(sweep_dir, runs)
    (sweep_dir / STABILITY_MD).write_text(md)
    if plot:
        write_png(sweep_dir / STABILITY_PNG, runs)
    if echo:
        print(md)
        print(f"stability map: {sweep_dir / STABILITY_MD}" + (f", {sweep_dir / STABILITY_PNG}" if plot else ""))
    return runs


class StabilityReport(ReportCallback):
    """on_multirun_end of +sweep=stability: the map, then the usual per-job report (failures exit 1)."""

    def before_report(self, sweep_dir: Path) -> None:
        try:
            write(sweep_dir)
        except UserError as e:
            print(f"error: {e}", file=sys.stderr)


def main(argv: Optional[list[str]] = None) -> int:
    return sweep_command(argv, "stability", "the stability map of a +sweep=stability folder (writes stability.md "
                         "and stability.png into it)", write)
