"""Where the config files live (conf/, sweeps/), their groups and options, and what a sweep's folder names need
of them (exclude keys, safe names). Imports nothing of the project but the identity's neutral keys."""

from __future__ import annotations

import functools
import hashlib
import sys
from pathlib import Path
from typing import Any

from allconv_sweep.config.identity import NEUTRAL_KEYS, PATH_KEYS, _flatten_all, is_neutral

_PKG = Path(__file__).resolve().parent.parent


def _find(name: str) -> Path:
    """An absolute path derived from the package: the repo's folder (source or editable install), else
    the copy a wheel installs under <prefix>/share/allconv_sweep/."""
    for candidate in (_PKG.parents[1] / name, Path(sys.prefix) / "share" / "allconv_sweep" / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"allconv_sweep: cannot find its {name}/ folder next to {_PKG}")


def config_dir() -> Path:
    return _find("conf")


def sweeps_dir() -> Path:
    return _find("sweeps")


def _roots() -> list[tuple[Path, str | None]]:
    """The config folders with the group their top-level files belong to (sweeps/*.yaml: the group `sweep`)."""
    try:
        return [(config_dir(), None), (sweeps_dir(), "sweep")]
    except FileNotFoundError:
        return [(config_dir(), None)]


def group_options(group: str) -> list[str] | None:
    """Options of a config group (None if ``group`` is not a group)."""
    dirs = [root / group for root, _ in _roots()] + [root for root, name in _roots() if name == group]
    dirs = [d for d in dirs if d.is_dir()]
    if not dirs:
        return None
    return sorted({p.stem for d in dirs for p in d.glob("*.yaml") if not p.stem.startswith("_")})


def groups_help() -> str:
    """--help's list of the config groups and their options (the schema's internal groups left out)."""
    groups = sorted(p.name for p in config_dir().iterdir() if p.is_dir() and p.name not in ("hydra", "data_model"))
    lines = [f"{g}: {', '.join(group_options(g) or [])}" for g in groups]
    lines.append(f"+sweep: {', '.join(group_options('sweep') or [])}   (added, not chosen: +sweep=lr_grid)")
    return "\n".join(lines)


@functools.lru_cache(maxsize=1)
def dirname_exclude_keys() -> tuple[str, ...]:
    """The override keys a sweep job's folder name leaves out (${allconv.dirname_excludes:}): every key under
    NEUTRAL_KEYS that a config file sets (a re-run with launcher=gpus finds the same folders), and the paths,
    which stay in the result key (a changed data.root is refused, never reused)."""
    from omegaconf import OmegaConf

    keys = set(NEUTRAL_KEYS) | set(PATH_KEYS)
    for root, group in _roots():
        for path in sorted(root.rglob("*.yaml")):
            head = path.read_text(encoding="utf-8")[:512]
            package = next((line.split("@package", 1)[1].strip() for line in head.splitlines()
                            if line.startswith("#") and "@package" in line), None)
            if package is None:
                package = group if group is not None else ".".join(path.relative_to(root).parts[:-1])
            prefix = "" if package in ("_global_", "_here_") else package
            content = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
            if not isinstance(content, dict):
                continue
            content.pop("defaults", None)
            flat: dict[str, Any] = {}
            _flatten_all(content, prefix, flat)
            for key in flat:
                parts = key.split(".")
                keys.update(k for k in (".".join(parts[:i + 1]) for i in range(len(parts))) if is_neutral(k))
    return tuple(sorted(k for k in keys if not k.startswith("hydra")))


# Characters a job's folder name (made from override values) never holds as they are: path separators and
# control characters (the file system would read a '/' as a sub-folder, '..' after it as the parent), and
# what Hydra's override grammar reads inside a quoted value ($ starts an interpolation, quotes and backslash end
# or escape it), so any job folder can be named back as key='<folder>'. '%' itself, so the encoding is
# one-to-one (two values never share a folder). '=' and ',' stay: they separate the overrides in the name.
_DIRNAME_UNSAFE = frozenset("/\\%$'\"") | frozenset(map(chr, range(32))) | {"\x7f"}
NAME_MAX = 255  # bytes in one folder name (Linux, macOS)


def safe_dirname(name: str) -> str:
    """A sweep job's folder name from its override_dirname (hydra.sweep.subdir, ${allconv.safe_dirname:...}):
    unsafe characters percent-encoded (model.name=x/../../up -> model.name=x%2F..%2F..%2Fup, one folder
    inside the sweep folder); '.' and '..' alone encoded; a name over NAME_MAX bytes shortened, with a hash
    of the whole name. A name without such characters is unchanged (existing sweep folders are found again)."""
    name = "".join(f"%{ord(c):02X}" if c in _DIRNAME_UNSAFE else c for c in str(name))
    if name in (".", ".."):
        name = name.replace(".", "%2E")
    if len(name.encode("utf-8")) > NAME_MAX:
        digest = hashlib.sha256(name.encode("utf-8")).hexdigest()[:16]
        head = name.encode("utf-8")[:NAME_MAX - len(digest) - 1].decode("utf-8", errors="ignore")
        name = f"{head}~{digest}"
    return name
