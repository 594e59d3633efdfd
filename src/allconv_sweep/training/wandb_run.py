"""W&B: offline without credentials; one W&B run per run folder (resumed, not duplicated, after a kill); every
multirun grouped; the config nested, as W&B's Hydra integration logs it; the summary says what metrics.json says."""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Optional

log = logging.getLogger(__name__)
# metrics.json fields copied into the W&B summary under the same names (what a runs table compares)
SUMMARY_KEYS = ("status", "reason", "result_key", "train_error", "val_error", "test_error", "test_acc",
                "best_val_test_error", "best_val_test_acc", "test_acc_top5", "val_live_fraction", "epochs_run",
                "images_seen", "train_images_per_s", "num_params", "wall_time_s", "resumed_from", "slurm_job_id")


def has_credentials() -> bool:
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        return bool(os.environ.get("WANDB_API_KEY")) or "api.wandb.ai" in netrc.read_text()
    except OSError:
        return False


def flatten(d: dict, prefix: str = "") -> dict:
    """{"a": {"b": 1}} -> {"a.b": 1}"""
    out = {}
    for k, v in d.items():
        out.update(flatten(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def nest(flat: dict) -> dict:
    """{"a.b": 1} -> {"a": {"b": 1}}"""
    out: dict = {}
    for key, value in flat.items():
        *parents, leaf = key.split(".")
        node = out
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = value
    return out


def config_path(key: str) -> str:
    """Where W&B keeps a nested config key: model.name -> model.value.name (each top-level key is stored as
    {"value": ...}: wandb/sdk/lib/config_util.py); wandb-workspaces' Config("model.name") names the same."""
    top, _, rest = key.partition(".")
    return f"{top}.value" + (f".{rest}" if rest else "")


def group_for(sweep_dir: Path) -> str:
    """The W&B group of a sweep folder's runs: its name; <date>_<time> in outputs/multiruns/<date>/<time>."""
    if re.fullmatch(r"\d\d-\d\d-\d\d", sweep_dir.name):
        return f"{sweep_dir.parent.name}_{sweep_dir.name}"
    return sweep_dir.name


def resolve_mode(mode: Optional[str]) -> str:
    """online / offline / disabled: as configured, else $WANDB_MODE, else online only with credentials."""
    return mode or os.environ.get("WANDB_MODE") or ("online" if has_credentials() else "offline")


def make_wandb_logger(save_dir: str, project: str = "allconv_sweep", entity: Optional[str] = None,
                      group: Optional[str] = None, name: Optional[str] = None, tags: Optional[list] = None,
                      mode: Optional[str] = None):
    """conf/logger/wandb.yaml's component: Lightning's WandbLogger for the run folder `save_dir`, continuing the
    W&B run whose id its run.json keeps, so a killed and resumed job stays one W&B run; any multirun is a group.
    run.json also keeps the run's name and group: the report's summary updates resume the run under both."""
    from lightning.pytorch.loggers import WandbLogger

    from allconv_sweep import runs
    from allconv_sweep.config import runtime

    class NestedConfigLogger(WandbLogger):
        def log_hyperparams(self, params: dict) -> None:  # train() gives the config flat (model.name, ...)
            super().log_hyperparams(nest(dict(params)))

    mode, sweep_dir, info = resolve_mode(mode), runtime.sweep_dir(), runs.read_run_info(save_dir) or {}
    group = group or (sweep_dir and group_for(sweep_dir)) or None
    if info and (info.get("wandb_name"), info.get("wandb_group")) != (name, group):
        runs.write_json(Path(save_dir) / runs.RUN_FILE, {**info, "wandb_name": name, "wandb_group": group})
    # a job talks to a W&B service of its own, not one it inherited through WANDB_SERVICE (the address and the pid
    # that started it): a job killed with SIGKILL leaves its run's stream open in the parent's service, and the
    # resumed job (same run id) is refused ("run ID ... is in use"). A service this process started is kept.
    token = os.environ.get("WANDB_SERVICE")
    match = re.match(r"^\d+-(\d+)-", token or "")
    if token and (match is None or int(match.group(1)) != os.getpid()):
        os.environ.pop("WANDB_SERVICE")
    return NestedConfigLogger(project=project, entity=entity, group=group, name=name, id=info.get("wandb_run_id"),
                              job_type="train", resume="allow", tags=list(tags or []), save_dir=str(save_dir),
                              offline=mode == "offline", mode=mode, reinit="finish_previous")


def finish_wandb(loggers, metrics: dict) -> None:
    """The run's summary into W&B; a failure (its service killed by SLURM, say) is logged, never raised."""
    from lightning.pytorch.loggers import WandbLogger

    for logger in (lg for lg in loggers if isinstance(lg, WandbLogger)):  # NestedConfigLogger
        try:
            import wandb

            logger.experiment.summary.update({k: v for k, v in metrics.items() if k in SUMMARY_KEYS})
            wandb.finish(exit_code=0 if metrics.get("status") in ("ok", "diverged") else 1)
        except Exception as e:  # noqa: BLE001 - see above
            log.warning("could not finish the W&B run (%s: %s); run `wandb sync` on its folder later",
                        type(e).__name__, e)
