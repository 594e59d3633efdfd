"""What a researcher sees: the config as a tree at start, a summary table at the end."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.table import Table
from rich.tree import Tree

console = Console(stderr=False, highlight=False)

_ORDER = ("model", "data", "preprocess", "augment", "optimizer", "scheduler", "trainer", "logger", "paths")


def print_config_tree(cfg: DictConfig) -> None:
    tree = Tree("[bold]config[/bold]")
    keys = [k for k in _ORDER if k in cfg] + [k for k in cfg if k not in _ORDER and k != "hydra"]
    for key in keys:
        branch = tree.add(f"[bold cyan]{key}[/bold cyan]")
        value = cfg[key]
        if isinstance(value, DictConfig):
            node = dict(OmegaConf.to_container(value, resolve=True))
            if key == "model":  # the layer list is long: one line per layer
                layers = node.pop("layers", [])
                for k, v in node.items():
                    branch.add(f"{k}: {v}")
                sub = branch.add("layers")
                for layer in layers:
                    (kind, args), = layer.items()
                    sub.add(f"{kind} {args if args not in ({}, None) else ''}".rstrip())
            else:
                for k, v in node.items():
                    branch.add(f"{k}: {v}")
        else:
            branch.label = f"[bold cyan]{key}[/bold cyan]: {value}"
    console.print(tree)


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
    console.print(f"metrics: {m['output_dir']}/metrics.json")
