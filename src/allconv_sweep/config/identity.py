"""A run's *identity*: its resolved config as flat dotted keys, minus the keys that cannot change a result
(NEUTRAL_KEYS). Its *result key*: a digest of the identity, which every "already finished?" decision compares
(train() on an existing folder, the sweep's plan and dry run, the report's grouping)."""

from __future__ import annotations

import hashlib
import json
import os
from enum import Enum
from typing import Any, Callable, Iterator, Mapping, Optional

# THE keys that cannot change a result (each with everything under it); every other key is in the result key.
# A sweep's folder names leave them out (config.files.dirname_exclude_keys).
NEUTRAL_KEYS = (
    "hydra",                        # Hydra's own settings (run/sweep folders, launcher plugin, logging)
    "launcher",                     # where and how the jobs of a sweep run
    "logger",                       # csv / tensorboard / wandb, project, tags
    "tracking",                     # W&B group, run name, tags
    "sweep",                        # the sweep's name, folder, dry run, seeds-from
    "paths",                        # this run's folder, the whitening cache (keyed by the data itself)
    "resume",                       # continue from last.ckpt or start over: the same result either way
    "print_config",
    "trainer.enable_progress_bar",
    "callbacks.best_checkpoint.dirpath",  # where checkpoints go (the run's folder)
    "callbacks.last_checkpoint.dirpath",
    "callbacks.progress_bar",       # how progress is shown
    "callbacks.flush_loggers",      # when log rows reach the disk
    "callbacks.lr_monitor",         # what is logged
    "data.download",                # fetch the files when missing: the files, not the fetch, decide
    "data.verify",                  # md5 check of the official files
)
# Paths in the identity are compared as absolute paths: ../data and /home/me/data are the same data.
PATH_KEYS = ("data.root", "finetune_from")


def is_neutral(key: str) -> bool:
    return any(key == k or key.startswith(k + ".") for k in NEUTRAL_KEYS)


def _flatten_all(value: Any, prefix: str, out: dict[str, Any]) -> None:
    if isinstance(value, Mapping) and value:
        for k, v in value.items():
            _flatten_all(v, f"{prefix}.{k}" if prefix else str(k), out)
    elif prefix:
        out[prefix] = value


def identity(cfg: Any) -> dict[str, Any]:
    """The resolved config minus the neutral keys, as {dotted key: value}. Neutral keys are skipped before
    anything under them is resolved: they may need Hydra's runtime."""
    from omegaconf import DictConfig, ListConfig, OmegaConf

    out: dict[str, Any] = {}
    for key, node, k in walk(cfg, is_neutral):
        value = node[k]
        if isinstance(value, (DictConfig, ListConfig)):
            value = OmegaConf.to_container(value, resolve=True, enum_to_str=True)
        out[key] = getattr(value, "value", value) if isinstance(value, Enum) else value
    for key in PATH_KEYS:
        if isinstance(out.get(key), str):
            out[key] = os.path.abspath(os.path.expanduser(out[key]))
    return out


def walk(node: Any, skip: Callable[[str], bool], prefix: str = "") -> Iterator[tuple[str, Any, Any]]:
    """(dotted key, its node, its key there) of each leaf of a DictConfig (an empty, None or interpolated node is
    one), none at or under a key skip(key) names (nothing there is resolved)."""
    from omegaconf import DictConfig

    for k in node.keys():
        key = f"{prefix}.{k}" if prefix else str(k)
        if skip(key):
            continue
        child = node._get_node(k)
        if isinstance(child, DictConfig) and len(child) and not child._is_none() and not child._is_interpolation():
            yield from walk(node[k], skip, key)
        else:
            yield key, node, k


def result_key(ident: Mapping[str, Any]) -> str:
    """A digest of an identity (see identity()): equal keys, equal configs up to the neutral keys."""
    blob = json.dumps(ident, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def differences(old: Optional[Mapping[str, Any]], new: Mapping[str, Any], limit: int = 4) -> str:
    """'optimizer.lr 0.05 -> 0.01, seed 0 -> 1' for the keys two identities disagree on."""
    if old is None:
        return "its config is unknown (no run.json)"
    keys = sorted(k for k in set(old) | set(new) if old.get(k, "<unset>") != new.get(k, "<unset>"))
    if not keys:
        return "same config, another key (written by another version of allconv_sweep)"

    def short(d: Mapping[str, Any], k: str) -> str:
        if isinstance(d.get(k), str) and len(d[k]) > 70:
            return f'"...{d[k][-60:]}"'  # a long path: its end, where two paths differ, still quoted
        s = json.dumps(d[k], default=str) if k in d else "<unset>"
        return s if len(s) <= 72 else "..." + s[-69:]

    parts = [f"{k} {short(old, k)} -> {short(new, k)}" for k in keys[:limit]]
    return ", ".join(parts) + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def override_key(override: str) -> str:
    """The key an override sets: `+model.lr=0.1` -> `model.lr`."""
    return override.lstrip("+~").split("=", 1)[0].strip()
