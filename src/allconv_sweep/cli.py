"""The command line's pre-check, before Hydra runs: the overrides and the config (config.checks), then the
output folders: each writable, and a single run's folder not holding another config's run."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from allconv_sweep.config.checks import check_config
from allconv_sweep.config.identity import result_key
from allconv_sweep.errors import UserError
from allconv_sweep.runs.files import ensure_writable
from allconv_sweep.runs.state import run_state


def check_overrides(args: list[str]) -> None:
    checked = check_config(args)
    for folder in checked.folders:
        ensure_writable(folder)
    if checked.run_dir is not None and not checked.multirun and "sweep" not in checked.cfg:
        check_run_folder(checked.cfg, checked.run_dir, checked.ident)


def check_run_folder(cfg: DictConfig, run_dir: Path, ident: dict) -> None:
    """A single run into an existing folder: refuse before Hydra rewrites its .hydra/config.yaml when the
    folder holds a run of another config (train() would refuse too, but after the rewrite)."""
    state = run_state(run_dir, result_key(ident), ident, resume=bool(cfg.resume))
    if state.kind == "mismatch":
        raise UserError(state.refusal(run_dir))
