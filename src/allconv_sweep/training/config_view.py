"""What a run shows of its config before it starts (print_config): its config-group choices and the keys that
differ from what those choices compose to, in two lines; with print_config=full the whole tree."""

from typing import Any, Optional

from omegaconf import DictConfig, OmegaConf
from rich.markup import escape
from rich.tree import Tree

from allconv_sweep.config import compose, runtime
from allconv_sweep.console import console
from allconv_sweep.training.wandb_run import flatten

ORDER = ("model", "data", "preprocess", "augment", "optimizer", "scheduler", "trainer", "callbacks", "logger", "paths")


def print_config(cfg: DictConfig, job: Optional[DictConfig] = None) -> None:
    """job: the config with its hydra node when cfg has none (the sweeper shows placeholders for what only a
    job knows); by default the running app's."""
    if str(cfg.print_config) == "full":
        return console.print(config_tree(cfg))
    hydra = job.hydra if job is not None else runtime.hydra_config()
    choices = dict(hydra.runtime.choices) if hydra is not None else {}
    picked = [o for o in (hydra.overrides.task if hydra is not None else []) if o.split("=")[0].lstrip("+~") in choices]
    shown = [f"{g}={o}" for g, o in reversed(choices.items())  # in the order of config.yaml's defaults
             if o and "/" not in g and g not in ("hydra", "data_model")]
    changed = differences(job if job is not None else cfg, _compose(picked))
    console.print(f"[bold]config[/bold] {escape(' '.join(shown))}", soft_wrap=True)
    console.print(f"[bold]changed[/bold] {escape(' '.join(changed) or 'nothing')}  (print_config=full: the whole "
                  "config)", soft_wrap=True)


def config_tree(cfg: DictConfig) -> Tree:
    """The config as YAML, one branch per group, the layer list folded (`--cfg job` prints it whole)."""
    tree = Tree("[bold]config[/bold]")
    for key in [k for k in ORDER if k in cfg] + [k for k in cfg if k not in ORDER and k != "hydra"]:
        if not isinstance(value := cfg[key], DictConfig):
            tree.add(f"[bold cyan]{key}[/bold cyan]: {value}")
            continue
        node = OmegaConf.to_container(value, resolve=True, enum_to_str=True)
        if key == "model" and "layers" in node:
            node["layers"] = f"<{len(node['layers'])} layers of {node.get('name')}: conf/model/{node.get('name')}.yaml>"
        tree.add(f"[bold cyan]{key}[/bold cyan]").add(OmegaConf.to_yaml(OmegaConf.create(node)).rstrip())
    return tree


def differences(cfg: DictConfig, base: DictConfig) -> list[str]:
    """`key=value` for each key whose value (as written) differs from base's; `~key` for a node cfg lacks."""
    ours, theirs = (flatten({k: v for k, v in OmegaConf.to_container(c, enum_to_str=True).items() if k != "hydra"})
                    for c in (cfg, base))
    held = {node for k in ours for node in _nodes(k)}
    gone = dict.fromkeys(next(node for node in _nodes(k) if node not in held) for k in theirs if k not in ours)
    return [f"{k}={_text(v)}" for k, v in ours.items() if k not in theirs or theirs[k] != v] + [f"~{k}" for k in gone]


def _nodes(key: str) -> list[str]:
    """'a.b.c' -> ['a', 'a.b', 'a.b.c']"""
    parts = key.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


def _text(value: Any) -> str:
    text = "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _compose(overrides: list[str]) -> DictConfig:
    """Inside a running Hydra app with the app's own loader (its search path: the sweeps, a user's --config-dir)."""
    from hydra import compose as hydra_compose
    from hydra.core.global_hydra import GlobalHydra

    return (hydra_compose("config", overrides=overrides) if GlobalHydra.instance().is_initialized()
            else compose(overrides))
