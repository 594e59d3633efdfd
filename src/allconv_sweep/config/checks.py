"""Command-line overrides checked before Hydra runs, so that a wrong choice, a typo'd key or an
unwritable output folder is one line that names the value and what would be valid (Hydra's own
messages span a dozen lines and end in a stack-trace hint)."""

from __future__ import annotations

import difflib
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from allconv_sweep.errors import UserError
from allconv_sweep.runs import ensure_writable


def _group_dirs() -> list[Path]:
    from allconv_sweep import config as c
    dirs = [c.config_dir()]
    try:
        dirs.append(c.sweeps_dir())
    except FileNotFoundError:
        pass
    return dirs


def group_options(group: str) -> list[str] | None:
    """Options of a config group (None if ``group`` is not a group)."""
    found = None
    for root in _group_dirs():
        # sweeps/ may hold the group's files directly (sweeps/lr_grid.yaml for group `sweep`)
        for d in (root / group, root) if root.name == "sweeps" and group == "sweep" else (root / group,):
            if d.is_dir() and not (d == root and root.name != "sweeps"):
                names = sorted(p.stem for p in d.glob("*.yaml") if not p.stem.startswith("_"))
                found = sorted(set(found or []) | set(names))
    return found


def _suggest(word: str, options: list[str]) -> str:
    close = difflib.get_close_matches(word, options, n=1)
    return f"did you mean {close[0]}? " if close else ""


def check_overrides(args: list[str]) -> None:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from allconv_sweep.config import compose, user_error, validate

    multirun = any(a in ("-m", "--multirun") for a in args)
    args = [a for a in args if not a.startswith("-")]
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
            if key in ("hydra.run.dir", "hydra.sweep.dir") and not o.is_sweep_override():
                value = str(o.value())  # parsed: Lightning's DDP re-launch passes the dir quoted
                if "${" not in value:
                    folders.append(Path(value).expanduser().resolve())
                    if key == "hydra.run.dir":
                        run_dir = Path(value).expanduser().resolve()
            continue
        options = group_options(key.split("@")[0])
        if options is not None:
            for v in values:
                if v not in options and v != "null":
                    raise UserError(f"{key}={v}: no such {key}; {_suggest(v, options)}valid: {', '.join(options)}")
        if not o.is_sweep_override() and not o.is_delete():
            simple.append(text)
    # the keys: compose with the (non-sweep) overrides and say which key does not exist
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
    ident = validate(cfg)  # the schema's checks, once, before Hydra starts (the sweep planner checks every job)
    for folder in folders:
        ensure_writable(folder)
    if run_dir is not None and not multirun and "sweep" not in cfg:
        check_run_folder(cfg, run_dir, ident)


def check_run_folder(cfg: DictConfig, run_dir: Path, ident: dict) -> None:
    """A single run into an existing folder: refuse before Hydra rewrites its .hydra/config.yaml when the
    folder holds a run of another config (train() would refuse too, but after the rewrite)."""
    from allconv_sweep import runs

    state = runs.run_state(run_dir, runs.result_key(ident), ident, resume=bool(cfg.resume))
    if state.kind == "mismatch":
        raise UserError(state.refusal(run_dir))


def _unknown_key(key: str, simple: list[str]) -> str:
    from allconv_sweep.config import compose

    cfg = compose([s for s in simple if "=" in s and s.split("=")[0].lstrip("+").split(".")[0] in _groups_only(s)])
    parent, _, leaf = key.rpartition(".")
    node = OmegaConf.select(cfg, parent) if parent else cfg
    if isinstance(node, DictConfig):
        valid = [str(k) for k in node.keys()]
        return f"{key}: no such key; {_suggest(leaf, valid)}valid keys{' in ' + parent if parent else ''}: {', '.join(valid)}"
    return f"{key}: no such key ({parent or 'the config'} has no such entry)"


def _groups_only(text: str) -> set[str]:
    key = text.split("=")[0].lstrip("+")
    return {key} if group_options(key) is not None else set()
