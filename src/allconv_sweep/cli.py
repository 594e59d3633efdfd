"""The command line's pre-check before Hydra runs: the config (config.checks), then the output folders."""

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
        # refused here, before Hydra rewrites its .hydra/config.yaml (train() would refuse after the rewrite)
        state = run_state(checked.run_dir, result_key(checked.ident), checked.ident, resume=bool(checked.cfg.resume))
        if state.kind == "mismatch":
            raise UserError(state.refusal(checked.run_dir))
