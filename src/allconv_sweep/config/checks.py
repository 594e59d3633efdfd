"""The command line checked before Hydra runs (the config part; allconv_sweep.cli adds the folders): a wrong
choice or a typo'd key is one line naming the value and what would be valid (Hydra's own messages span a dozen
lines). And what two of Hydra's own flags do for this app: `--cfg job|hydra|all [--resolve]`: the overrides'
choices and keys are checked as for a run; with --resolve the config is resolved here, within the whole config,
and the value only a job's start sets (hydra.runtime.output_dir) reads RUN_TIME. `-sc query=<shell>`: Hydra's
completion offers an enum key's current value only; here it offers every choice, as the command line takes it."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Optional, Sequence

from omegaconf import DictConfig, OmegaConf, open_dict

from allconv_sweep.config.compose import compose, user_error, validate
from allconv_sweep.config.files import group_options
from allconv_sweep.config.identity import PATH_KEYS
from allconv_sweep.config.values import did_you_mean
from allconv_sweep.errors import UserError

RUN_TIME = "<set at run time: hydra.runtime.output_dir>"
# Values the command line names paths with: a comma in one makes a list of them
PATH_ARGS = PATH_KEYS + ("ckpt", "sweep.from", "hydra.run.dir", "hydra.sweep.dir")


@dataclass
class Checked:
    """The composed config, its identity, the folders the command writes, the single run's, multirun or not."""
    cfg: DictConfig
    ident: dict
    folders: list[Path]
    run_dir: Path | None
    multirun: bool


def exit_on_unreadable_path(args: Sequence[str]) -> None:
    """A command's first check, before Hydra's parse error: an argument whose path Hydra's override grammar cannot
    read unquoted (a folder named with '=', '(' ..., or a ',' outside a multirun) exits 2 with one line giving
    the quoting that reads it."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    multirun = any(a in ("-m", "--multirun") for a in args)
    for arg in (a for a in args if "=" in a and not a.startswith("-")):
        key, value = arg.split("=", 1)
        if key.lstrip("+~") not in PATH_ARGS and "/" not in value:
            continue
        try:
            (override,) = parser.parse_overrides([arg])
            if multirun or not override.is_sweep_override() or override.key_or_group not in PATH_ARGS:
                continue
        except Exception:  # noqa: BLE001 - Hydra's OverrideParseException
            pass
        if any(c in value for c in "'\"\\"):
            continue
        try:
            parser.parse_overrides([f'{key}="{value}"'])
        except Exception:  # noqa: BLE001 - not a quoting matter: Hydra's own message says more
            continue
        print(f"error: {arg}: Hydra's override grammar cannot read this path unquoted; quote it (double quotes for "
              f"Hydra inside single quotes for the shell): '{key}=\"{value}\"'", file=sys.stderr)
        sys.exit(2)


def check_config(args: list[str]) -> Checked:
    """The overrides parsed, their choices and keys checked, the config composed and validated."""
    multirun = any(a in ("-m", "--multirun") for a in args)
    cfg, folders, run_dir = compose_checked([a for a in args if not a.startswith("-")])
    ident = validate(cfg)  # the schema's checks, once, before Hydra starts (the sweep planner checks every job)
    return Checked(cfg, ident, folders, run_dir, multirun)


def compose_checked(args: list[str]) -> tuple[DictConfig, list[Path], Path | None]:
    """The overrides parsed, their choices and keys checked, the config composed; with the output folders the
    command writes and a single run's folder."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    run_dir: Path | None = None
    folders: list[Path] = []  # probed once the config is known good: a refused command writes no folder
    try:
        overrides = OverridesParser.create().parse_overrides(args)
    except Exception as e:  # noqa: BLE001 - Hydra's grammar errors are already precise
        raise UserError(f"cannot parse the overrides: {str(e).splitlines()[0]}") from None
    simple: list[str] = []
    for o, text in zip(overrides, args):
        key = o.key_or_group
        values = [str(v) for v in o.sweep_string_iterator()] if o.is_sweep_override() else [o.get_value_element_as_str()]
        if key == "sweep" and not text.startswith("+"):  # sweeps are not a default group: they are added
            raise UserError(f"{text}: a sweep is added to the run, not chosen: use +{text}")
        if key.startswith("hydra."):
            value = str(o.value())  # parsed: Lightning's DDP re-launch passes the dir quoted
            if key in ("hydra.run.dir", "hydra.sweep.dir") and not o.is_sweep_override() and "${" not in value:
                folders.append(Path(value).expanduser().resolve())
                run_dir = folders[-1] if key == "hydra.run.dir" else run_dir
            continue
        options = group_options(key.split("@")[0])
        if options is not None:
            for v in values:
                if v not in options and v != "null":
                    raise UserError(f"{key}={v}: no such {key}; {did_you_mean(v, options)}valid: {', '.join(options)}")
        if not o.is_sweep_override() and not o.is_delete():
            simple.append(text)
    try:
        cfg = compose(simple)  # +sweep=... adds the sweep.* keys
    except Exception as e:  # noqa: BLE001
        msg = str(e)
        if "not in struct" in msg or "Could not override" in msg or ("Key '" in msg and "not in '" in msg):
            bad = msg.split("'")[1] if "'" in msg else msg
            raise UserError(_unknown_key(bad, simple)) from None
        raise user_error(e) from None
    if not any(a.startswith(("hydra.run.dir", "hydra.sweep.dir")) for a in args):
        folders.append(Path("outputs").resolve())
    return cfg, folders, run_dir


def _unknown_key(key: str, simple: list[str]) -> str:
    cfg = compose([s for s in simple if "=" in s and group_options(s.split("=")[0].lstrip("+")) is not None])
    parent, _, leaf = key.rpartition(".")
    node = OmegaConf.select(cfg, parent) if parent else cfg
    if isinstance(node, DictConfig):
        valid = [str(k) for k in node.keys()]
        return f"{key}: no such key; {did_you_mean(leaf, valid)}valid keys{' in ' + parent if parent else ''}: {', '.join(valid)}"
    return f"{key}: no such key ({parent or 'the config'} has no such entry)"


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
        cfg = OmegaConf.create({k: OmegaConf.to_container(cfg[k], resolve=True, enum_to_str=True)
                                if OmegaConf.is_config(cfg[k]) else cfg[k] for k in keys})
    except Exception as e:  # noqa: BLE001 - an unset ${oc.env:...}, a loop: one line naming the key
        raise user_error(e) from None
    package = None if parsed.package in (None, "_global_") else parsed.package
    node = OmegaConf.select(cfg, package) if package else cfg
    if node is None:
        raise UserError(f"--package {package}: no such node in the {parsed.cfg} config")
    if not OmegaConf.is_config(node):
        return str(node)
    return (f"# @package {package}\n" if package else "") + OmegaConf.to_yaml(node).rstrip("\n")


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
