"""python -m allconv_sweep.report <sweep dir>, and Hydra's callback at the end of every sweep (sweeps/_common.yaml):
results.md, results.csv and the figures in the sweep folder, the paper's Table 3 beside ours."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Optional

from hydra.experimental.callback import Callback

from allconv_sweep.errors import command
from allconv_sweep.results import tables
from allconv_sweep.results.figures import data_title, write_all
from allconv_sweep.results.tables import RESULTS_CSV, RESULTS_MD, RESULTS_PNG, read_sweep, render_md, write_csv
from allconv_sweep.runs import METRICS_FILE
from allconv_sweep.runs import REPORT_STATUSES as STATUSES


def write_report(sweep_dir: str | Path, plot: bool = True, echo: bool = True) -> dict[str, Any]:
    """Write results.md, results.csv and the figures; returns rows, choices, counts, markdown, figures' data."""
    sweep_dir = Path(sweep_dir).resolve()
    rows, choices = read_sweep(sweep_dir)
    figures = write_all(sweep_dir, choices, rows) if plot else {}
    (sweep_dir / RESULTS_PNG).unlink(missing_ok=True)  # the single figure of earlier versions
    counts = {s: sum(r.status == s for r in rows) for s in STATUSES}
    md = render_md(sweep_dir, rows, choices, figures, counts)
    (sweep_dir / RESULTS_MD).write_text(md)
    write_csv(sweep_dir / RESULTS_CSV, rows, choices)
    result = {"rows": rows, "choices": choices, "counts": counts, "markdown": md, "figures": figures}
    if echo:
        print_report(sweep_dir, result)
    return result


SHOWN = ("network", "data", "augment", "setting", "lr", "val error %", "test error %", "seeds", "paper %",
         "ours − paper")


def print_report(sweep_dir: Path, result: dict[str, Any], console: Any = None) -> None:
    """The lr chosen per network as a table (plain text, no colour codes, where stdout is not a terminal), the
    jobs' statuses, then where results.md and the rest are."""
    from rich.console import Console
    from rich.table import Table

    if console is None:
        console = Console(highlight=False)
        console.width = console.width if console.is_terminal else max(console.width, 120)
    header, rows = tables.per_network(result["choices"])

    def telling(i: int) -> bool:  # a column with something in it; data, augment, setting: where they differ
        values = {str(r[i]) for r in rows}
        return bool(values - {"-"}) and (header[i] not in ("data", "augment", "setting") or len(values) > 1)

    shown = [i for i, h in enumerate(header) if h == "network" or (h in SHOWN and telling(i))]
    console.print(f"{sweep_dir.name} on {data_title(result['choices'])}: the learning rate chosen per network",
                  style="bold", soft_wrap=True)
    table = Table()
    for i in shown:
        table.add_column(header[i], justify="left" if i < 4 else "right")
    for r in rows:
        table.add_row(*(str(r[i]) for i in shown))
    console.print(table)
    console.print("jobs: " + ", ".join(f"{n} {s}" for s, n in result["counts"].items() if n), style="bold")
    console.print(f"report: {sweep_dir / RESULTS_MD}", soft_wrap=True)
    console.print("also: " + ", ".join(str(sweep_dir / f) for f in [RESULTS_CSV, *result["figures"]]), soft_wrap=True)


class ReportCallback(Callback):
    """on_multirun_end: the report, then exit 1 if a job failed or is missing (a failed job never stops a sweep)."""

    def before_report(self, sweep_dir: Path) -> None:
        """What a sweep writes before its report (stability.StabilityReport: its map)."""

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        from omegaconf import OmegaConf

        from allconv_sweep.interrupts import interrupted
        from allconv_sweep.results.dashboard import log_report

        sweep_dir = Path(str(config.hydra.sweep.dir))
        if OmegaConf.select(config, "sweep.dry_run", default=False) or not sweep_dir.is_dir():
            return
        self.before_report(sweep_dir)
        result = write_report(sweep_dir)
        log_report(sweep_dir, result)  # the W&B report run and chosen_lr flags; TensorBoard's figures and hparams
        bad = sum(result["counts"][s] for s in ("failed", "missing", "interrupted"))
        stop = interrupted()
        if stop is not None:
            print(f"error: the sweep was interrupted by {stop.signame} ({stop}); {bad} of {len(result['rows'])} "
                  f"jobs unfinished (see {sweep_dir / RESULTS_MD}); the same command resumes them", file=sys.stderr)
            sys.exit(stop.exit_code)
        if bad:
            print(f"error: {bad} of {len(result['rows'])} jobs failed, were interrupted or left no {METRICS_FILE} "
                  f"(see the All jobs table in {sweep_dir / RESULTS_MD}); re-run the same command to retry them",
                  file=sys.stderr)
            sys.exit(1)


def sweep_command(argv: Optional[list[str]], name: str, description: str, write: Any) -> int:
    """python -m allconv_sweep.<name> <sweep dir> [--no-plot]: write(sweep_dir, plot=...), errors one line."""
    parser = argparse.ArgumentParser(prog=f"python -m allconv_sweep.{name}", description=description)
    parser.add_argument("sweep_dir", help="a sweep folder, e.g. outputs/sweeps/pooling_ablation")
    parser.add_argument("--no-plot", action="store_true", help="skip the figures")
    args = parser.parse_args(argv)
    return command(write, args.sweep_dir, plot=not args.no_plot)


def main(argv: Optional[list[str]] = None) -> int:
    return sweep_command(argv, "report", "Table 3 of the paper beside a sweep's results (writes results.md, "
                         "results.csv and the figures into the folder)", write_report)
