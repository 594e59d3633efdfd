"""Command-line overrides checked before Hydra runs (the config part; allconv_sweep.cli adds the folders): a
wrong choice or a typo'd key is one line naming the value and what would be valid (Hydra's own messages span
a dozen lines)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from allconv_sweep.config.compose import compose, user_error, validate
from allconv_sweep.config.files import group_options
from allconv_sweep.config.schema import did_you_mean
from allconv_sweep.errors import UserError


@dataclass
class Checked:
    """The composed config, its identity, the folders the command writes, the single run's, multirun or not."""
    cfg: DictConfig
    ident: dict
    folders: list[Path]
    run_dir: Path | None
    multirun: bool


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
        cfg = compose([s for s in simple if not s.startswith("~")])  # +sweep=... adds the sweep.* keys
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
