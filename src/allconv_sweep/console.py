"""What a researcher sees: the config as a tree (once), a line per sweep job, a summary table at the end."""

from __future__ import annotations

import os
import time
from typing import Any

from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.table import Table
from rich.tree import Tree

console = Console(stderr=False, highlight=False)


def quiet_lightning(level: int | None = None) -> None:
    """Lightning's advice lines that do not apply here, printed once (not again through Hydra's root
    handler); level: also hide Lightning's info lines (the evaluate and visualize commands)."""
    import logging
    import os
    import warnings

    messages = [".*does not have many workers.*", ".*is a sized iterable.*", ".*The number of training batches.*",
                ".*treespec, LeafSpec.*"]
    if os.environ.get("SLURM_NTASKS", "1") == "1":  # srun matters only for several tasks in one SLURM job
        messages.append(".*The `srun` command is available on your system but is not used.*")
    for message in messages:
        warnings.filterwarnings("ignore", message=message)
    for name in ("lightning.pytorch", "lightning.fabric"):
        logger = logging.getLogger(name)
        logger.propagate = False
        if level is not None:
            logger.setLevel(level)

_ORDER = ("model", "data", "preprocess", "augment", "optimizer", "scheduler", "trainer", "callbacks", "logger", "paths")
# set by the sweeper for its jobs: where each job is in the sweep, for "job k of n" and the ETA
SWEEP_START, SWEEP_JOBS = "ALLCONV_SWEEP_START", "ALLCONV_SWEEP_JOBS"


def config_tree(cfg: DictConfig) -> Tree:
    """The composed config as YAML under one branch per group; the model's layer list folded to its name
    (`python -m allconv_sweep --cfg job` prints it whole)."""
    tree = Tree("[bold]config[/bold]")
    keys = [k for k in _ORDER if k in cfg] + [k for k in cfg if k not in _ORDER and k != "hydra"]
    for key in keys:
        value = cfg[key]
        if isinstance(value, DictConfig):
            node = OmegaConf.to_container(value, resolve=True, enum_to_str=True)
            if key == "model" and "layers" in node:
                node["layers"] = f"<{len(node['layers'])} layers of {node.get('name')}: conf/model/{node.get('name')}.yaml>"
            branch = tree.add(f"[bold cyan]{key}[/bold cyan]")
            branch.add(OmegaConf.to_yaml(OmegaConf.create(node)).rstrip())
        else:
            tree.add(f"[bold cyan]{key}[/bold cyan]: {value}")
    return tree


def print_config_tree(cfg: DictConfig) -> None:
    console.print(config_tree(cfg))


def print_job(cfg: DictConfig, overrides: list[str], job: int | None = None) -> None:
    """A single run (job None): the config tree. A sweep's job (its number): one line (the sweep printed the
    tree once), with its place in the sweep and, from the second job on, an estimate of when the sweep ends."""
    if job is None:
        print_config_tree(cfg)
        return
    total, start = os.environ.get(SWEEP_JOBS), os.environ.get(SWEEP_START)
    place = f"job {job + 1} of {total}" if total else f"job {job + 1}"
    eta = ""
    if total and start and job > 0:
        per_job = (time.time() - float(start)) / job
        eta = f"; sweep ends in ~{_duration(per_job * (int(total) - job))} (at {per_job / 60:.1f} min a job)"
    console.print(f"[bold]{place}[/bold]: {' '.join(o for o in overrides if not o.startswith('hydra.')) or '(defaults)'}{eta}")


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _pct(v: Any) -> str:
    return "-" if v is None else f"{100 * v:.2f}%"


def print_summary(m: dict[str, Any]) -> None:
    colour = {"ok": "green", "diverged": "yellow", "failed": "red"}.get(m["status"], "white")
    t = Table(title=f"{m['model']} on {m['data']}  [{colour}]{m['status']}[/{colour}]", show_header=True)
    t.add_column("")
    t.add_column("accuracy", justify="right")
    t.add_column("error", justify="right")
    for split in ("train", "val", "test"):
        t.add_row(split + (" (last epoch, training mode)" if split == "train" else " (final model)"),
                  _pct(m.get(f"{split}_acc")), _pct(m.get(f"{split}_error")))
    t.add_row("test (best-val checkpoint)", _pct(m.get("best_val_test_acc")), _pct(m.get("best_val_test_error")))
    console.print(t)
    extra = (f"lr {m['lr']}  seed {m['seed']}  epochs {m['epochs_run']}/{m['max_epochs']}  "
             f"params {m['num_params']:,}  {m['train_images_per_s'] or 0:.0f} img/s  wall {m['wall_time_s']:.0f}s")
    console.print(extra)
    if m.get("reason"):
        console.print(f"[{colour}]{m['status']}: {m['reason']}[/{colour}]")
    console.print(f"metrics: {m['output_dir']}/metrics.json", soft_wrap=True)
