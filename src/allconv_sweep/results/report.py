"""python -m allconv_sweep.report <sweep dir>: every job's metrics.json -> the paper's Table 3 beside ours.

Writes results.md, results.csv and the figures (lr_grid.png, table3.png, curves.png: figures.py) into the
sweep folder and prints the tables. Also run by
Hydra at the end of every sweep (ReportCallback, set in sweeps/_common.yaml).

- All jobs: model, lr, seed, status, val and test error, wall time. A job folder (or a job the sweep
  planned, sweep.json) without metrics.json is `missing`; failed and diverged jobs are listed as such.
- Per network: the learning rate with the best validation accuracy, as the paper chose it, and its test
  error (mean +- std over seeds where there are several). Runs are grouped by everything but the lr and
  the seed, so re-runs with other settings in the same folder are never mixed.
- The paper's Table 3 layout (rows A, B, C; columns base, Strided, ConvPool, All-CNN) with the paper's
  numbers beside ours and the difference, plus the paper's CIFAR-100 and CIFAR-10+ All-CNN-C results.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path
from typing import Any, Optional

from allconv_sweep.errors import command
from allconv_sweep.runs import METRICS_FILE, REPORT_STATUSES as STATUSES, Choice, Row, choose, collect, common_settings, read_manifest

# Springenberg, Dosovitskiy, Brox, Riedmiller: "Striving for Simplicity: The All Convolutional Net",
# ICLR 2015 workshop, arXiv:1412.6806. Test error (%) on CIFAR-10 without augmentation, Table 3; checked
# against the copy of Table 3 in github.com/hans321/CS4240 README.md ("Table 3 from paper"), which lists
# exactly these twelve numbers. All-CNN-C with flips and translations ("CIFAR-10+", 7.25) and on
# CIFAR-100 (33.71), from the paper's comparisons with the state of the art, are as issue 3 quotes them;
# no copy of those tables was found in the searched corpora to check these two against.
PAPER_TABLE3 = {
    "model_a": 12.47, "strided_cnn_a": 13.46, "convpool_cnn_a": 10.21, "all_cnn_a": 10.30,
    "model_b": 10.20, "strided_cnn_b": 10.98, "convpool_cnn_b": 9.33, "all_cnn_b": 9.10,
    "model_c": 9.74, "strided_cnn_c": 10.19, "convpool_cnn_c": 9.31, "all_cnn_c": 9.08,
}
PAPER = {("cifar10", "none", m): v for m, v in PAPER_TABLE3.items()}
PAPER[("cifar100", "none", "all_cnn_c")] = 33.71       # CIFAR-100 (no augmentation)
PAPER[("cifar10", "flip_translate", "all_cnn_c")] = 7.25  # CIFAR-10+ (flips, translations)
PAPER_EPOCHS = 350
# Table 3's "# parameters" column, in the paper's rounded figures, as this project's README has listed them
# since its first version (not re-checked against the PDF here: no copy was reachable).
PAPER_PARAMS = {"model_a": "0.9M", "strided_cnn_a": "0.9M", "convpool_cnn_a": "1.28M", "all_cnn_a": "1.28M",
                "model_b": "1M", "strided_cnn_b": "1M", "convpool_cnn_b": "1.35M", "all_cnn_b": "1.35M",
                "model_c": "1.3M", "strided_cnn_c": "1.3M", "convpool_cnn_c": "1.4M", "all_cnn_c": "1.4M"}

FAMILIES = ("A", "B", "C")
VARIANTS = (("base", "base"), ("strided", "Strided"), ("convpool", "ConvPool"), ("all", "All-CNN"))
DISPLAY = {"model": "Model", "strided_cnn": "Strided-CNN", "convpool_cnn": "ConvPool-CNN", "all_cnn": "All-CNN"}

RESULTS_MD, RESULTS_CSV, RESULTS_PNG = "results.md", "results.csv", "results.png"


def paper_value(c: Any) -> Optional[float]:
    """The paper's test error for a Choice or a Row (data, augment, model, setting): none for a setting
    the paper did not run."""
    return PAPER.get((c.data, c.augment, c.model)) if not c.setting else None


# ---------------------------------------------------------------------------------------------- choosing

def _choice_order(c: Choice) -> tuple:
    fam = FAMILIES.index(c.family) if c.family in FAMILIES else 9
    var = [v for v, _ in VARIANTS].index(c.variant) if c.variant in [v for v, _ in VARIANTS] else 9
    return (c.data or "", c.augment or "", c.setting, fam, var, c.model)


def display_name(model: Optional[str]) -> str:
    """model_a -> Model A, strided_cnn_b -> Strided-CNN-B, all_cnn_c -> All-CNN-C (the paper's names)."""
    if not model:
        return "?"
    stem, _, fam = model.rpartition("_")
    if stem == "model":
        return f"Model {fam.upper()}"
    return f"{DISPLAY[stem]}-{fam.upper()}" if stem in DISPLAY else model


# ---------------------------------------------------------------------------------------------- writing

def _pct(v: Optional[float], digits: int = 2) -> str:
    return "-" if v is None else f"{100 * v:.{digits}f}"


def _err_cell(c: Choice) -> str:
    if c.test_mean is None:
        return "-"
    s = f"{100 * c.test_mean:.2f}"
    if c.test_std is not None:
        s += f" ± {100 * c.test_std:.2f}"
    return s


def _flag(c: Choice) -> str:
    return ("" if c.statuses <= {"ok"} else " †") + (" ᶠ" if c.protocol == "final" else "")


def _protocol(c: Choice) -> str:
    sizes = sorted({r.train_size for r in c.rows if r.train_size})
    images = f" ({', '.join(f'{n:,}' for n in sizes)} images)" if sizes else ""
    return ("final: all training images" if c.protocol == "final" else "lr selection: validation held out") + images


def table3_md(choices: list[Choice]) -> list[str]:
    """The paper's Table 3 layout for every (data, augment, setting) the sweep has; paper numbers beside ours."""
    out: list[str] = []
    layouts: dict[tuple, dict[str, Choice]] = {}
    for c in choices:
        layouts.setdefault((c.data, c.augment, c.setting), {})[c.model] = c
    for (data, augment, extra), cells in sorted(layouts.items(), key=lambda kv: (kv[0][0] != "cifar10", kv[0])):
        paper_here = any(k[:2] == (data, augment) for k in PAPER) and not extra
        title = f"Test error (%) on {data}" + ("" if augment == "none" else f" + {augment}")
        title += f", {extra}" if extra else ""
        if (data, augment) == ("cifar10", "none") and not extra:
            title = "Table 3: test error (%) on CIFAR-10, no augmentation"
        out += [f"### {title}", ""]
        if paper_here:
            out += ["Each cell: ours (paper, ours − paper). Ours: the chosen lr's test error, mean ± std over seeds.", ""]
        out += ["| | base | Strided | ConvPool | All-CNN |", "|---|---|---|---|---|"]
        for fam in FAMILIES:
            line = [f"**{fam}**"]
            for variant, _ in VARIANTS:
                model = ("model" if variant == "base" else {"strided": "strided_cnn", "convpool": "convpool_cnn",
                                                            "all": "all_cnn"}[variant]) + f"_{fam.lower()}"
                c = cells.get(model)
                paper = PAPER.get((data, augment, model)) if not extra else None
                ours = _err_cell(c) + _flag(c) if c is not None else "-"
                if paper is not None:
                    diff = f"{100 * c.test_mean - paper:+.2f}" if c is not None and c.test_mean is not None else "-"
                    line.append(f"{ours} ({paper:.2f}, {diff})")
                else:
                    line.append(ours)
            out.append("| " + " | ".join(line) + " |")
        others = [m for m in cells if m not in PAPER_TABLE3]
        for m in others:
            out.append(f"| {m} | {_err_cell(cells[m])} | | | |")
        out.append("")
        if (data, augment) == ("cifar10", "none") and not extra:
            out += _table3_rows(cells)
    return out


def _table3_rows(cells: dict[str, Choice]) -> list[str]:
    """Table 3 in the paper's own form: a row per network, test error and parameter count, ours and the paper's."""
    out = ["The same, a row per network as the paper prints it, with the parameter counts:", "",
           "| network | test error % (ours) | paper | # parameters (ours) | paper |", "|---|---|---|---|---|"]
    for model, paper in PAPER_TABLE3.items():
        c = cells.get(model)
        params = f"{c.num_params:,}" if c is not None and c.num_params else "-"
        ours = _err_cell(c) + _flag(c) if c is not None else "-"
        out.append(f"| {display_name(model)} | {ours} | {paper:.2f} | {params} | {PAPER_PARAMS[model]} |")
    return out + [""]


def render_md(sweep_dir: Path, rows: list[Row], choices: list[Choice], figures: Optional[dict] = None) -> str:
    figures = figures or {}
    counts = {s: sum(r.status == s for r in rows) for s in STATUSES}
    epochs = sorted({r.max_epochs for r in rows if r.max_epochs is not None})
    name = read_manifest(sweep_dir).get("name") or sweep_dir.name
    from allconv_sweep.figures import data_title

    compared = any(paper_value(c) is not None for c in choices)
    lines = [f"# {name}: {data_title(choices)}" + (", beside the paper's numbers" if compared else ""), "",
             f"Sweep folder `{sweep_dir}`, report written {time.strftime('%Y-%m-%d %H:%M:%S')}.",
             f"Jobs: {len(rows)} (" + ", ".join(f"{k} {v}" for k, v in counts.items()) + "). "
             f"Epochs per run: {', '.join(map(str, epochs)) or '-'} (paper: {PAPER_EPOCHS}).",
             "Settings of every job: " + (" ".join(f"`{o}`" for o in common_settings(rows)) or "the defaults") + ".", ""]
    lines += table3_md(choices)
    if any(c.statuses - {"ok"} for c in choices):
        lines += ["† the chosen runs include diverged ones (see All jobs).", ""]
    if any(c.protocol == "final" for c in choices):
        lines += ["ᶠ retrained at the chosen lr on every training image (`+sweep=final`); unmarked cells are the "
                  "lr-selection runs, trained with the validation images held out.", ""]
    lines += ["## Per network: the learning rate with the best validation accuracy", "",
              "Chosen on mean validation error over the seeds every lr of the network has (ties: a non-diverged run, then the larger lr); "
              "test error: mean ± std over all seeds at that lr.", "",
              "| network | data | augment | setting | lr | chosen on (lr: val error %) | val error % | test error % | seeds | protocol | params | paper % | ours − paper |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for c in choices:
        paper = paper_value(c)
        diff = f"{100 * c.test_mean - paper:+.2f}" if paper is not None and c.test_mean is not None else "-"
        tried = ", ".join(f"{lr:g}: {100 * s:.2f}" for lr, s in sorted(c.candidates.items(), reverse=True))
        lines.append(f"| {display_name(c.model)} | {c.data} | {c.augment} | {c.setting or '-'} | "
                     f"{'-' if c.lr is None else f'{c.lr:g}'} | {c.chosen_on}" + (f" ({tried})" if tried else "")
                     + f" | {_pct(c.val_mean)} | {_err_cell(c)}{_flag(c)} | {len(c.test_errors)} | {_protocol(c)} | "
                     f"{'-' if c.num_params is None else f'{c.num_params:,}'} | "
                     f"{'-' if paper is None else f'{paper:.2f}'} | {diff} |")
    lines += ["", "## All jobs", "",
              "| job | model | lr | seed | status | val error % | test error % | epochs | wall time s | note |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        note = (r.reason or "").replace("|", "/").replace("\n", " ")
        lines.append(f"| {r.job} | {r.model or '?'} | {'-' if r.lr is None else f'{r.lr:g}'} | "
                     f"{'-' if r.seed is None else r.seed} | {r.status} | {_pct(r.val_error)} | {_pct(r.test_error)} | "
                     f"{'-' if r.epochs_run is None else r.epochs_run}/{'-' if r.max_epochs is None else r.max_epochs} | "
                     f"{'-' if r.wall_time_s is None else f'{r.wall_time_s:.0f}'} | {note} |")
    for file, caption in (("table3.png", "Test error per network, ours beside the paper's"),
                          ("lr_grid.png", "Validation error against the learning rate"),
                          ("curves.png", "Validation error per epoch of the chosen runs")):
        if file in figures:
            lines += ["", f"## {caption}", "", f"![{caption}]({file})"]
    return "\n".join(lines + [""])


CSV_FIELDS = ["job", "status", "model", "family", "variant", "data", "augment", "setting", "lr", "seed",
              "val_error_pct", "test_error_pct", "best_val_test_error_pct", "train_error_pct", "epochs_run",
              "max_epochs", "wall_time_s", "chosen", "paper_test_error_pct", "protocol", "train_size", "num_params",
              "reason"]


def write_csv(path: Path, rows: list[Row], choices: list[Choice]) -> None:
    chosen = {id(r) for c in choices for r in c.rows}
    pct = lambda v: "" if v is None else f"{100 * v:.4f}"  # noqa: E731
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        w.writeheader()
        for r in rows:
            paper = paper_value(r)
            w.writerow({"job": r.job, "status": r.status, "model": r.model, "family": r.family,
                        "variant": r.variant, "data": r.data, "augment": r.augment, "setting": r.setting,
                        "lr": r.lr, "seed": r.seed, "val_error_pct": pct(r.val_error),
                        "test_error_pct": pct(r.test_error), "best_val_test_error_pct": pct(r.best_val_test_error),
                        "train_error_pct": pct(r.train_error), "epochs_run": r.epochs_run,
                        "max_epochs": r.max_epochs,
                        "wall_time_s": "" if r.wall_time_s is None else f"{r.wall_time_s:.1f}",
                        "chosen": id(r) in chosen, "paper_test_error_pct": "" if paper is None else paper,
                        "protocol": "final" if r.val_size == 0 else "select", "train_size": r.train_size or "",
                        "num_params": r.num_params or "", "reason": r.reason or ""})


def write_report(sweep_dir: str | Path, plot: bool = True, echo: bool = True) -> dict[str, Any]:
    """Write results.md, results.csv and the figures (figures.py) into the sweep folder; returns the rows,
    choices, status counts, markdown and the data behind each figure."""
    from allconv_sweep import figures as figures_mod

    sweep_dir = Path(sweep_dir).resolve()
    rows = collect(sweep_dir)
    choices = sorted(choose(rows), key=_choice_order)
    figures = figures_mod.write_all(sweep_dir, choices, rows) if plot else {}
    (sweep_dir / RESULTS_PNG).unlink(missing_ok=True)  # the single figure of earlier versions
    md = render_md(sweep_dir, rows, choices, figures)
    (sweep_dir / RESULTS_MD).write_text(md)
    write_csv(sweep_dir / RESULTS_CSV, rows, choices)
    if echo:
        print(md)
        print(f"report: {sweep_dir / RESULTS_MD}, {sweep_dir / RESULTS_CSV}"
              + "".join(f", {sweep_dir / f}" for f in figures))
    counts = {s: sum(r.status == s for r in rows) for s in STATUSES}
    return {"rows": rows, "choices": choices, "counts": counts, "markdown": md, "figures": figures}


try:  # the Hydra callback; hydra is a dependency, but keep `report` importable without it
    from hydra.experimental.callback import Callback
except ImportError:  # pragma: no cover
    Callback = object  # type: ignore[misc,assignment]


class ReportCallback(Callback):  # type: ignore[misc]
    """on_multirun_end: write the report into the sweep folder; exit 1 if a job failed or is missing
    (after every other job ran: a failed job never stops a sweep)."""

    def __init__(self, plot: bool = True, fail_on_failed: bool = True) -> None:
        self.plot = plot
        self.fail_on_failed = fail_on_failed

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        from omegaconf import OmegaConf

        from allconv_sweep.errors import interrupted

        if OmegaConf.select(config, "sweep.dry_run", default=False):
            return
        sweep_dir = Path(str(config.hydra.sweep.dir))
        if not sweep_dir.is_dir():
            return
        result = write_report(sweep_dir, plot=self.plot)
        from allconv_sweep.dashboard import log_report

        log_report(sweep_dir, result)  # the W&B report run and chosen_lr flags; TensorBoard's figures and hparams
        counts = result["counts"]
        bad = counts["failed"] + counts["missing"] + counts["interrupted"]
        stop = interrupted()
        if stop is not None:
            print(f"error: the sweep was interrupted by {stop.signame} ({stop}); {bad} of {len(result['rows'])} "
                  f"jobs unfinished (see {sweep_dir / RESULTS_MD}); the same command resumes them", file=sys.stderr)
            sys.exit(stop.exit_code)
        if bad and self.fail_on_failed:
            print(f"error: {bad} of {len(result['rows'])} jobs failed, were interrupted or left no {METRICS_FILE} "
                  f"(see the All jobs table in {sweep_dir / RESULTS_MD}); re-run the same command to retry them",
                  file=sys.stderr)
            sys.exit(1)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m allconv_sweep.report",
                                     description="Table 3 of the paper beside a sweep's results "
                                                 "(writes results.md, results.csv and the figures into the folder)")
    parser.add_argument("sweep_dir", help="a sweep folder, e.g. outputs/sweeps/pooling_ablation")
    parser.add_argument("--no-plot", action="store_true", help="skip the figures")
    args = parser.parse_args(argv)
    return command(write_report, args.sweep_dir, plot=not args.no_plot)


if __name__ == "__main__":
    sys.exit(main())
