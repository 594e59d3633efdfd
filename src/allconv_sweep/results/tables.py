"""The report's tables, from a sweep's rows and choices: results.md (Table 3 beside the paper, the lr chosen per
network, all jobs) and results.csv."""

from __future__ import annotations

import csv
import time
from pathlib import Path
from typing import Any, Iterable, Optional

from allconv_sweep.results import paper
from allconv_sweep.results.claims import verdicts_md
from allconv_sweep.results.figures import FIGURES, data_title
from allconv_sweep.results.paper import FAMILIES, PAPER, PAPER_TABLE3, VARIANTS, display_name, model_name, paper_value
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


def md_table(header: list[str], rows: Iterable[Iterable[Any]], align: str = "") -> list[str]:
    """A markdown table; align: "l" or "r" per column (left where not given)."""
    sep = "|".join("---:" if a == "r" else "---" for a in align.ljust(len(header), "l"))
    return [f"| {' | '.join(header)} |", f"|{sep}|"] + [f"| {' | '.join(map(str, r))} |" for r in rows]


def _fmt(v: Any, spec: str = "") -> str:
    return "-" if v is None else format(v, spec)


def _pct(v: Optional[float]) -> str:
    return _fmt(None if v is None else 100 * v, ".2f")


def _err_cell(c: Optional[LrChoice], flags: bool = True) -> str:
    """Test error (%), mean ± std over seeds; † the chosen runs include diverged ones, ᶠ retrained (final)."""
    if c is None:
        return "-"
    cell = _pct(c.test_mean) + ("" if c.test_mean is None or c.test_std is None else f" ± {_pct(c.test_std)}")
    return cell + (("" if c.statuses <= {"ok"} else " †") + (" ᶠ" if c.protocol == "final" else "") if flags else "")


def _diff(c: Optional[LrChoice], theirs: Optional[float]) -> str:
    return "-" if c is None or c.test_mean is None or theirs is None else f"{100 * c.test_mean - theirs:+.2f}"


def table3_md(choices: list[LrChoice]) -> list[str]:
    """The paper's Table 3 layout for every (data, augment, setting) the sweep has; paper numbers beside ours."""
    out: list[str] = []
    layouts: dict[tuple, dict[str, LrChoice]] = {}
    for c in choices:
        layouts.setdefault((c.data, c.augment, c.setting), {})[c.model] = c
    for (data, augment, extra), cells in sorted(layouts.items(), key=lambda kv: (kv[0][0] != "cifar10", kv[0])):
        table3 = (data, augment) == ("cifar10", "none") and not extra
        title = ("Table 3: test error (%) on CIFAR-10, no augmentation" if table3 else f"Test error (%) on {data}"
                 + ("" if augment == "none" else f" + {augment}") + (f", {extra}" if extra else ""))
        out += [f"### {title}", ""]
        if not extra and any(k[:2] == (data, augment) for k in PAPER):
            out += ["Each cell: ours (paper, ours − paper). Ours: the chosen lr's test error, mean ± std over seeds.", ""]
        grid = []
        for fam in FAMILIES:
            line = [f"**{fam}**"]
            for variant, _ in VARIANTS:
                c, theirs = cells.get(model_name(variant, fam)), PAPER.get((data, augment, model_name(variant, fam)))
                theirs = None if extra else theirs
                line.append(_err_cell(c) + ("" if theirs is None else f" ({theirs:.2f}, {_diff(c, theirs)})"))
            grid.append(line)
        grid += [[m, _err_cell(cells[m], flags=False), "", "", ""] for m in cells if m not in PAPER_TABLE3]
        out += md_table(["", *(label for _, label in VARIANTS)], grid) + [""]
        if table3:  # and in the paper's own form: a row per network, with the parameter counts
            out += ["The same, a row per network as the paper prints it, with the parameter counts:", ""]
            out += md_table(["network", "test error % (ours)", "paper", "# parameters (ours)", "paper"], [
                [display_name(m), _err_cell(cells.get(m)), f"{theirs:.2f}",
                 f"{cells[m].num_params:,}" if m in cells and cells[m].num_params else "-", paper.PAPER_PARAMS[m]]
                for m, theirs in PAPER_TABLE3.items()]) + [""]
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
    """The comparison as (columns, rows) of numbers: the W&B report run's table."""
    columns = ["network", "data", "augment", "setting", "lr", "protocol", "seeds", "test_error_pct",
               "test_error_std_pct", "paper_test_error_pct", "ours_minus_paper", "num_params"]
    data = []
    for c in choices:
        ours = None if c.test_mean is None else round(100 * c.test_mean, 3)
        theirs = paper_value(c)
        data.append([display_name(c.model), c.data, c.augment, c.setting, c.lr, c.protocol, len(c.test_errors), ours,
                     None if c.test_std is None else round(100 * c.test_std, 3), theirs,
                     None if ours is None or theirs is None else round(ours - theirs, 3), c.num_params])
    return columns, data


def _protocol(c: LrChoice) -> str:
    """How the chosen runs trained, each image count named by what it counts."""
    train, val = (", ".join(f"{n:,}" for n in sorted({getattr(r, k) for r in c.rows} - {None, 0}))
                  for k in ("train_size", "val_size"))
    if c.protocol == "final":
        return "final: all training images" + (f" ({train} images)" if train else "")
    counts = ", ".join(([f"{train} training images"] if train else []) + ([f"{val} validation images"] if val else []))
    return "lr selection: validation held out" + (f" ({counts})" if counts else "")


def per_network(choices: list[LrChoice]) -> tuple[list[str], list[list[str]]]:
    """Per network: the lr chosen, what it was chosen on, its errors, beside the paper's."""
    header = ["network", "data", "augment", "setting", "lr", "chosen on (lr: val error %)", "val error %",
              "test error %", "seeds", "protocol", "params", "paper %", "ours − paper"]
    rows = []
    for c in choices:
        theirs = paper_value(c)
        tried = ", ".join(f"{lr:g}: {100 * s:.2f}" for lr, s in sorted(c.candidates.items(), reverse=True))
        rows.append([display_name(c.model), c.data, c.augment, c.setting or "-", _fmt(c.lr, "g"),
                     c.chosen_on + (f" ({tried})" if tried else ""), _pct(c.val_mean), _err_cell(c),
                     len(c.test_errors), _protocol(c), _fmt(c.num_params, ","), _fmt(theirs, ".2f"), _diff(c, theirs)])
    return header, rows


def render_md(sweep_dir: Path, rows: list[JobResult], choices: list[LrChoice], figures: dict, counts: dict) -> str:
    epochs = sorted({r.max_epochs for r in rows if r.max_epochs is not None})
    name = read_manifest(sweep_dir).get("name") or sweep_dir.name
    compared = any(paper_value(c) is not None for c in choices)
    lines = [f"# {name}: {data_title(choices)}" + (", beside the paper's numbers" if compared else ""), "",
             f"Sweep folder `{sweep_dir}`, report written {time.strftime('%Y-%m-%d %H:%M:%S')}.",
             f"Jobs: {len(rows)} (" + ", ".join(f"{k} {v}" for k, v in counts.items()) + "). "
             f"Epochs per run: {', '.join(map(str, epochs)) or '-'} (paper: {paper.PAPER_EPOCHS}).",
             "Settings of every job: " + (" ".join(f"`{o}`" for o in common_settings(rows)) or "the defaults") + ".", ""]
    lines += table3_section(choices) + verdicts_md(choices)
    lines += ["## Per network: the learning rate with the best validation accuracy", "",
              "Chosen on mean validation error over the seeds every lr of the network has (ties: a non-diverged run, "
              "then the larger lr); test error: mean ± std over all seeds at that lr.", ""]
    lines += md_table(*per_network(choices))
    lines += ["", "## All jobs", ""] + md_table(
        ["job", "model", "lr", "seed", "status", "val error %", "test error %", "epochs", "wall time s", "note"],
        [[r.job, r.model or "?", _fmt(r.lr, "g"), _fmt(r.seed), r.status, _pct(r.val_error), _pct(r.test_error),
          f"{_fmt(r.epochs_run)}/{_fmt(r.max_epochs)}", _fmt(r.wall_time_s, ".0f"),
          (r.reason or "").replace("|", "/").replace("\n", " ")] for r in rows])
    for figure in FIGURES:
        if figure.file in figures:
            lines += ["", f"## {figure.caption}", "", f"![{figure.caption}]({figure.file})"]
    return "\n".join(lines + [""])


CSV_AS_IS = ("job", "status", "model", "family", "variant", "data", "augment", "setting", "lr", "seed")
CSV_PCT = ("val_error", "test_error", "best_val_test_error", "train_error")  # written as <name>_pct
CSV_FIELDS = [*CSV_AS_IS, *(f"{k}_pct" for k in CSV_PCT), "epochs_run", "max_epochs", "wall_time_s", "chosen",
              "paper_test_error_pct", "protocol", "train_size", "num_params", "reason"]


def write_csv(path: Path, rows: list[JobResult], choices: list[LrChoice]) -> None:
    chosen = {id(r) for c in choices for r in c.rows}
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        w.writeheader()
        for r in rows:  # None: an empty cell
            w.writerow({**{k: getattr(r, k) for k in (*CSV_AS_IS, "epochs_run", "max_epochs", "reason")},
                        **{f"{k}_pct": "" if getattr(r, k) is None else f"{100 * getattr(r, k):.4f}" for k in CSV_PCT},
                        "wall_time_s": "" if r.wall_time_s is None else f"{r.wall_time_s:.1f}",
                        "chosen": id(r) in chosen, "paper_test_error_pct": paper_value(r),
                        "protocol": "final" if r.val_size == 0 else "select", "train_size": r.train_size or "",
                        "num_params": r.num_params or ""})
