"""The report's tables: results.md (Table 3 beside the paper, the lr chosen per network, all jobs) and
results.csv, from a sweep's rows and choices."""

from __future__ import annotations

import csv
import time
from pathlib import Path
from typing import Any, Optional

from allconv_sweep.results.claims import verdicts_md
from allconv_sweep.results.figures import FIGURES, data_title
from allconv_sweep.results.paper import (
    FAMILIES,
    PAPER,
    PAPER_EPOCHS,
    PAPER_PARAMS,
    PAPER_TABLE3,
    VARIANTS,
    display_name,
    model_name,
    paper_value,
)
from allconv_sweep.runs import REPORT_STATUSES as STATUSES
from allconv_sweep.runs import read_manifest
from allconv_sweep.runs.choose import LrChoice, choose
from allconv_sweep.runs.collect import JobResult, collect, common_settings

RESULTS_MD, RESULTS_CSV, RESULTS_PNG = "results.md", "results.csv", "results.png"


def read_sweep(sweep_dir: Path) -> tuple[list[JobResult], list[LrChoice]]:
    """A sweep folder's jobs, and per network the lr chosen, in Table 3's order: what every view shows."""
    rows = collect(sweep_dir)
    return rows, sorted(choose(rows), key=_choice_order)


def _choice_order(c: LrChoice) -> tuple:
    fam = FAMILIES.index(c.family) if c.family in FAMILIES else 9
    var = [v for v, _ in VARIANTS].index(c.variant) if c.variant in [v for v, _ in VARIANTS] else 9
    return (c.data or "", c.augment or "", c.setting, fam, var, c.model)


def _pct(v: Optional[float], digits: int = 2) -> str:
    return "-" if v is None else f"{100 * v:.{digits}f}"


def _err_cell(c: LrChoice) -> str:
    if c.test_mean is None:
        return "-"
    s = f"{100 * c.test_mean:.2f}"
    if c.test_std is not None:
        s += f" ± {100 * c.test_std:.2f}"
    return s


def _flag(c: LrChoice) -> str:
    return ("" if c.statuses <= {"ok"} else " †") + (" ᶠ" if c.protocol == "final" else "")


def _protocol(c: LrChoice) -> str:
    sizes = sorted({r.train_size for r in c.rows if r.train_size})
    images = f" ({', '.join(f'{n:,}' for n in sizes)} images)" if sizes else ""
    return ("final: all training images" if c.protocol == "final" else "lr selection: validation held out") + images


def table3_md(choices: list[LrChoice]) -> list[str]:
    """The paper's Table 3 layout for every (data, augment, setting) the sweep has; paper numbers beside ours."""
    out: list[str] = []
    layouts: dict[tuple, dict[str, LrChoice]] = {}
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
        out += ["| | " + " | ".join(label for _, label in VARIANTS) + " |", "|---|---|---|---|---|"]
        for fam in FAMILIES:
            line = [f"**{fam}**"]
            for variant, _ in VARIANTS:
                model = model_name(variant, fam)
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
            out += _table3_paper_form(cells)
    return out


def table3_section(choices: list[LrChoice]) -> list[str]:
    """Table 3 beside the paper's, with its footnotes: results.md's section, and the dashboard's W&B Report."""
    lines = table3_md(choices)
    if any(c.statuses - {"ok"} for c in choices):
        lines += ["† the chosen runs include diverged ones (see All jobs).", ""]
    if any(c.protocol == "final" for c in choices):
        lines += ["ᶠ retrained at the chosen lr on every training image (`+sweep=final`); unmarked cells are the "
                  "lr-selection runs, trained with the validation images held out.", ""]
    return lines


def table3_rows(choices: list[LrChoice]) -> tuple[list[str], list[list[Any]]]:
    """The comparison as rows (the W&B table): network, data, lr, protocol, seeds, ours (mean, std), paper,
    difference, params."""
    columns = ["network", "data", "augment", "setting", "lr", "protocol", "seeds", "test_error_pct",
               "test_error_std_pct", "paper_test_error_pct", "ours_minus_paper", "num_params"]
    data = []
    for c in choices:
        ours = None if c.test_mean is None else round(100 * c.test_mean, 3)
        paper = paper_value(c)
        data.append([display_name(c.model), c.data, c.augment, c.setting, c.lr, c.protocol, len(c.test_errors), ours,
                     None if c.test_std is None else round(100 * c.test_std, 3), paper,
                     None if ours is None or paper is None else round(ours - paper, 3), c.num_params])
    return columns, data


def _table3_paper_form(cells: dict[str, LrChoice]) -> list[str]:
    """Table 3 in the paper's own form: a row per network, test error and parameter count, ours and the paper's."""
    out = ["The same, a row per network as the paper prints it, with the parameter counts:", "",
           "| network | test error % (ours) | paper | # parameters (ours) | paper |", "|---|---|---|---|---|"]
    for model, paper in PAPER_TABLE3.items():
        c = cells.get(model)
        params = f"{c.num_params:,}" if c is not None and c.num_params else "-"
        ours = _err_cell(c) + _flag(c) if c is not None else "-"
        out.append(f"| {display_name(model)} | {ours} | {paper:.2f} | {params} | {PAPER_PARAMS[model]} |")
    return out + [""]


def render_md(sweep_dir: Path, rows: list[JobResult], choices: list[LrChoice], figures: Optional[dict] = None) -> str:
    figures = figures or {}
    counts = {s: sum(r.status == s for r in rows) for s in STATUSES}
    epochs = sorted({r.max_epochs for r in rows if r.max_epochs is not None})
    name = read_manifest(sweep_dir).get("name") or sweep_dir.name
    compared = any(paper_value(c) is not None for c in choices)
    lines = [f"# {name}: {data_title(choices)}" + (", beside the paper's numbers" if compared else ""), "",
             f"Sweep folder `{sweep_dir}`, report written {time.strftime('%Y-%m-%d %H:%M:%S')}.",
             f"Jobs: {len(rows)} (" + ", ".join(f"{k} {v}" for k, v in counts.items()) + "). "
             f"Epochs per run: {', '.join(map(str, epochs)) or '-'} (paper: {PAPER_EPOCHS}).",
             "Settings of every job: " + (" ".join(f"`{o}`" for o in common_settings(rows)) or "the defaults") + ".", ""]
    lines += table3_section(choices) + verdicts_md(choices)
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
    for figure in FIGURES:
        if figure.file in figures:
            lines += ["", f"## {figure.caption}", "", f"![{figure.caption}]({figure.file})"]
    return "\n".join(lines + [""])


CSV_FIELDS = ["job", "status", "model", "family", "variant", "data", "augment", "setting", "lr", "seed",
              "val_error_pct", "test_error_pct", "best_val_test_error_pct", "train_error_pct", "epochs_run",
              "max_epochs", "wall_time_s", "chosen", "paper_test_error_pct", "protocol", "train_size", "num_params",
              "reason"]


def write_csv(path: Path, rows: list[JobResult], choices: list[LrChoice]) -> None:
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
