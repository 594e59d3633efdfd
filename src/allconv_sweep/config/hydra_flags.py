"""What two of Hydra's own flags do for this app. `--cfg job|hydra|all [--resolve]`: the overrides' choices and
keys are checked as for a run (one-line errors); with --resolve the config is resolved here, within the whole
config, and the value only a job's start sets (hydra.runtime.output_dir) reads RUN_TIME. `-sc query=<shell>`:
Hydra's completion offers an enum key's current value only; here it offers every choice, as the command line
takes it."""

from __future__ import annotations

from enum import Enum
from typing import Any, Optional

from omegaconf import OmegaConf, open_dict

from allconv_sweep.config.checks import compose_checked
from allconv_sweep.config.compose import compose, user_error
from allconv_sweep.errors import UserError

RUN_TIME = "<set at run time: hydra.runtime.output_dir>"


def shown_config(args: list[str]) -> Optional[str]:
    """The text `--cfg ... --resolve` prints; None when Hydra prints it (no --resolve) or there is no --cfg.
    Hydra itself resolves `--cfg hydra` alone (${sweep.root} has nothing to resolve against there) and fails
    on ${hydra:runtime.output_dir}, which a job's start sets."""
    from hydra._internal.utils import get_args_parser
    from hydra.core.hydra_config import HydraConfig
    from hydra.core.utils import setup_globals

    if not any(a in ("--cfg", "-c") or a.startswith("--cfg=") for a in args):
        return None
    parser = get_args_parser()
    parser.error = _parse_error  # argparse's usage text and exit: one line instead
    parsed = parser.parse_args(args)
    compose_checked(parsed.overrides)  # the choices and keys, as for a run
    try:
        cfg = compose(parsed.overrides, return_hydra_config=True)  # as Hydra composes for --cfg
    except Exception as e:  # noqa: BLE001 - Hydra's and OmegaConf's multi-line errors: one line here
        raise user_error(e) from None
    if not parsed.resolve:
        return None
    setup_globals()  # the ${now:} of hydra.run.dir
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = RUN_TIME
    HydraConfig.instance().set_config(cfg)  # ${hydra:...} as Hydra's --cfg has it
    OmegaConf.set_readonly(cfg.hydra, None)
    if parsed.cfg == "hydra":  # as Hydra's --cfg hydra: without the --help texts
        with open_dict(cfg.hydra):
            del cfg.hydra["help"], cfg.hydra["hydra_help"]
    # the job's keys first (an error names the key the user gave), the hydra node after them
    keys = [k for k in cfg if k != "hydra"] if parsed.cfg != "hydra" else []
    keys += ["hydra"] if parsed.cfg != "job" else []
    try:
        cfg = OmegaConf.create({k: _resolved(cfg[k]) for k in keys})
    except Exception as e:  # noqa: BLE001 - an unset ${oc.env:...}, a loop: one line naming the key
        raise user_error(e) from None
    package = None if parsed.package in (None, "_global_") else parsed.package
    node = OmegaConf.select(cfg, package) if package else cfg
    if node is None:
        raise UserError(f"--package {package}: no such node in the {parsed.cfg} config")
    if not OmegaConf.is_config(node):
        return str(node)
    return (f"# @package {package}\n" if package else "") + OmegaConf.to_yaml(node).rstrip("\n")


def _resolved(value: Any) -> Any:
    return OmegaConf.to_container(value, resolve=True, enum_to_str=True) if OmegaConf.is_config(value) else value


def _parse_error(message: str) -> None:
    raise UserError(f"cannot parse the command line: {message}")


def offer_enum_choices(args: list[str]) -> None:
    """Under -sc/--shell-completion: `model.init=<TAB>` offers every Init (model.init=caffe_msra, ...), not the
    current value as Hydra writes it (model.init=Init.caffe_xavier). Hydra (1.3) has no hook for a value's
    choices: its CompletionPlugin._get_matches, which every shell's plugin calls, is wrapped here."""
    from hydra.plugins.completion_plugin import CompletionPlugin

    hydra_matches = CompletionPlugin._get_matches
    if not any(a in ("-sc", "--shell-completion") for a in args) or getattr(hydra_matches, "enum_choices", False):
        return

    def matches(config: Any, word: str) -> list[str]:
        key, equals, typed = word.partition("=")
        try:
            value = OmegaConf.select(config, key, default=None) if equals and OmegaConf.is_config(config) else None
        except Exception:  # noqa: BLE001 - no such key, or one that does not resolve yet: Hydra's answer
            value = None
        if not isinstance(value, Enum):
            return hydra_matches(config, word)
        return [f"{key}={choice.name}" for choice in type(value) if choice.name.startswith(typed)]

    matches.enum_choices = True  # type: ignore[attr-defined]
    CompletionPlugin._get_matches = staticmethod(matches)  # type: ignore[method-assign]
