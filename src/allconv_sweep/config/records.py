"""Records of runs (checkpoints, run folders, sweep folders) read as data, never run: the one place
every reader of such a file goes through.

A checkpoint's stored config, a run folder's .hydra/config.yaml and overrides.yaml, and the overrides a
sweep folder's metrics.json recorded were written by this tool, but anyone can edit them. What a caller
needs from them is rebuilt through the project's own composition (conf/ + the schema): the groups are
chosen by name among the options that exist in conf/, and only the values are taken from the file,
assigned into our composed (typed) nodes, so OmegaConf checks each against the schema. Nothing the file
says about what to build (`_target_`, `_partial_`, `_args_`, any `_..._` key) is used unless it equals
ours; no added (`+`, `++`) or deleted (`~`) entries, no Hydra settings, no option that conf/ lacks. Any
such content is refused in one line naming the file and the key (UserError: exit 2), before anything of
it runs.
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional, Sequence

from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict

from allconv_sweep.errors import UserError

REFUSED = "refused: checkpoints and run folders are read as data, never run"

# The groups a stored run config is rebuilt from, each chosen by its stored `name` among conf/'s options.
NAMED_GROUPS = ("model", "data", "preprocess", "augment")
# Nodes taken from our default composition, their values from the record (trainer=ddp has default's keys).
VALUE_NODES = ("trainer",)
# What a reader of a stored run config gets: the network, the data and how it is prepared, the seed,
# the precision and the whitening cache. Every other node of the record is never read.
RUN_NODES = NAMED_GROUPS + VALUE_NODES + ("paths", "seed")

_MISSING = object()
_INTERPOLATION = "${"


def _refuse(source: Any, what: str) -> UserError:
    return UserError(f"{source}: {what}; {REFUSED}")


def is_special(key: Any) -> bool:
    """_target_, _partial_, _args_, _convert_, _recursive_, ...: keys that tell Hydra what to build."""
    return isinstance(key, str) and len(key) > 2 and key.startswith("_") and key.endswith("_")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


# ----------------------------------------------------------------------------------------- composing

def group_options(group: str) -> Optional[list[str]]:
    """The options of a config group (config.files.group_options); None if it is no group, and for a key
    that is no plain group name (a record's `../x` never looks outside conf/)."""
    from allconv_sweep.config import files

    if not group or "/" in group or "\\" in group or group.startswith("."):
        return None
    return files.group_options(group)


@contextlib.contextmanager
def _keep_global_hydra() -> Iterator[None]:
    """config.compose() re-initializes Hydra's global state; a reader called inside a running Hydra app
    (the sweep planner, evaluate) gets it back as it was."""
    from hydra.core.global_hydra import GlobalHydra

    saved = GlobalHydra.instance().hydra
    try:
        yield
    finally:
        GlobalHydra.instance().hydra = saved


def _compose(overrides: list[str]) -> DictConfig:
    from allconv_sweep.config.compose import compose

    with _keep_global_hydra():
        return compose(overrides)


# ------------------------------------------------------------------------------- a stored run config

def _check_plain(value: Any, key: str, source: Any) -> None:
    """A value from a file is plain data: scalars, lists and string-keyed mappings of them, no key that
    tells Hydra what to build, no interpolation (a record's config is stored resolved)."""
    if value is None or isinstance(value, (bool, int, float)):
        return
    if isinstance(value, str):
        if _INTERPOLATION in value:
            raise _refuse(source, f"key {key} = {_short(value)} is an interpolation (a record holds resolved values)")
        return
    if isinstance(value, (list, tuple, ListConfig)):
        for i, v in enumerate(value):
            _check_plain(v, f"{key}[{i}]", source)
        return
    if isinstance(value, (Mapping, DictConfig)):
        for k, v in value.items():
            if not isinstance(k, str):
                raise _refuse(source, f"key {key}.{k!r} is not a config key")
            if is_special(k):
                raise _refuse(source, f"key {key}.{k} = {_short(v)} is not what this tool builds (it builds "
                                      f"nothing there)")
            _check_plain(v, f"{key}.{k}", source)
        return
    raise _refuse(source, f"key {key} holds a {type(value).__name__}, not a config value")


def _assign(ours: DictConfig, stored: Mapping, path: str, source: Any) -> None:
    """Stored values into our composed node: keys it has, values its schema accepts, `_..._` keys only
    when they equal ours (ours is kept either way)."""
    from omegaconf.errors import OmegaConfBaseException

    if not isinstance(stored, Mapping):
        raise _refuse(source, f"key {path} = {_short(stored)} is not a config node")
    # what to build first: the refusal names a foreign _target_ rather than the keys that come with it
    for k, v in sorted(stored.items(), key=lambda kv: not is_special(kv[0])):
        key = f"{path}.{k}"
        if not isinstance(k, str):
            raise _refuse(source, f"key {path}.{k!r} is not a config key")
        if is_special(k):
            mine = ours[k] if k in ours else _MISSING
            if mine is _MISSING or v != mine:
                builds = f"this tool builds {mine}" if mine is not _MISSING else "it builds nothing there"
                raise _refuse(source, f"key {key} = {_short(v)} is not what this tool builds ({builds})")
            continue
        if k not in ours:
            raise _refuse(source, f"key {key} is not a key of this tool's {path} config "
                                  f"(valid: {', '.join(str(x) for x in ours.keys() if not is_special(x))})")
        child = ours._get_node(k)
        if isinstance(v, Mapping) and isinstance(child, DictConfig) and not child._is_none() \
                and not child._is_interpolation():
            _assign(ours[k], v, key, source)
            continue
        _check_plain(v, key, source)
        try:
            ours[k] = v
        except (OmegaConfBaseException, ValueError) as e:  # the schema's type or choice check
            raise _refuse(source, f"key {key} = {_short(v)}: {str(e).splitlines()[0]}") from None


def run_config_from_record(stored: Any, source: Any) -> DictConfig:
    """The run config a caller needs from a record's stored (resolved) config: model, data, preprocess,
    augment, trainer, seed and paths.cache_dir, rebuilt through our composition with the record's values.
    The groups are the conf/ options the record names; one-line UserError naming `source` and the key
    for anything else. Nothing is instantiated here: a caller builds what it needs from our nodes."""
    from omegaconf.errors import OmegaConfBaseException

    if not isinstance(stored, Mapping):
        raise _refuse(source, f"its config is a {type(stored).__name__}, not a config")
    if "hydra" in stored:
        raise _refuse(source, "key hydra: a run's record holds no Hydra settings")
    choices = []
    for group in NAMED_GROUPS:
        node = stored.get(group)
        if not isinstance(node, Mapping):
            raise _refuse(source, f"key {group} = {_short(node)} is not a {group} config")
        name, options = node.get("name"), group_options(group) or []
        if not isinstance(name, str) or name not in options:
            if any(is_special(k) for k in node):  # name what it would build, beside our default's
                _assign(_compose([])[group], node, group, source)
            raise _refuse(source, f"key {group}.name = {_short(name)} is not an option of the {group} group "
                                  f"(valid: {', '.join(options)})")
        choices.append(f"{group}={name}")
    try:
        ours = _compose(choices)
    except Exception as e:  # noqa: BLE001 - an option that does not compose is not one we can rebuild
        raise _refuse(source, f"{' '.join(choices)} do not compose ({str(e).splitlines()[0]})") from None
    with open_dict(ours):
        for k in [k for k in ours.keys() if k not in RUN_NODES]:
            del ours[k]
        del ours.paths.output_dir  # Hydra's runtime folder: not a record's, and unresolvable here
    for node in NAMED_GROUPS + VALUE_NODES:
        if node in stored:
            _assign(ours[node], stored[node], node, source)
    paths = stored.get("paths", {})
    if isinstance(paths, Mapping) and "cache_dir" in paths:
        _assign(ours.paths, {"cache_dir": paths["cache_dir"]}, "paths", source)
    if "seed" in stored:
        seed = stored["seed"]
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
            raise _refuse(source, f"key seed = {_short(seed)} is not an integer in [0, 2^32)")
        ours.seed = seed
    try:  # the schema's range checks, as for a run's own config
        for node in NAMED_GROUPS + VALUE_NODES:
            if OmegaConf.get_type(ours[node]) not in (dict, None):
                OmegaConf.to_object(ours[node])
        OmegaConf.to_container(ours, resolve=True, throw_on_missing=True)
    except (OmegaConfBaseException, ValueError, RecursionError) as e:
        raise _refuse(source, str(e).splitlines()[0]) from None
    return ours


# ------------------------------------------------------------------------------- recorded overrides

def overrides_from_record(overrides: Any, source: Any) -> list[str]:
    """Overrides a run recorded (metrics.json, sweep.json, .hydra/overrides.yaml), checked before they are
    composed again (+sweep=seeds / final): each one a plain `key=value` of a key our composition has, or
    a group choice that exists in conf/; `+sweep=<sweep>` is the one added group (every sweep job records
    it). Refused in one line naming `source` and the override: adding (`+`, `++`) or deleting (`~`)
    entries, Hydra's settings (hydra.*), sweeps of values, options conf/ lacks, and `_..._` keys in keys
    or values. Returns the overrides unchanged."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    if not isinstance(overrides, (list, tuple)) or not all(isinstance(o, str) for o in overrides):
        raise _refuse(source, f"overrides = {_short(overrides)} is not a list of key=value strings")
    parser = OverridesParser.create()
    checked: list[str] = []
    for text in overrides:
        try:
            (o,) = parser.parse_overrides([text])
        except Exception as e:  # noqa: BLE001 - Hydra's grammar errors
            raise _refuse(source, f"override {text!r} cannot be parsed ({str(e).splitlines()[0]})") from None
        key = o.key_or_group
        what = f"override {text!r}"
        if o.is_hydra_override() or key == "hydra" or key.startswith(("hydra.", "hydra/")):
            raise _refuse(source, f"{what} sets Hydra's own config (hydra.*)")
        if o.package is not None:
            raise _refuse(source, f"{what} moves a config to another package (@)")
        if o.is_delete() or o.is_force_add() or (o.is_add() and key != "sweep"):
            raise _refuse(source, f"{what} adds or deletes an entry of the config; a record's overrides only "
                                  f"set keys and choose options")
        if o.is_sweep_override():
            raise _refuse(source, f"{what} is a sweep of several values")
        if any(is_special(part) for part in re.split(r"[./]", key)):
            raise _refuse(source, f"{what} sets a key that tells Hydra what to build")
        if _says_where(key):
            raise _refuse(source, f"{what} says where a job writes; a job built from a record writes into its "
                                  f"own folder of the sweep")
        value = o.value()
        options = group_options(key)
        if options is not None and not isinstance(value, dict):  # Hydra's group choice (a list: several)
            for v in value if isinstance(value, list) else [value]:
                if not isinstance(v, str) or v not in options:
                    raise _refuse(source, f"{what}: {_short(v)} is not an option of the {key} group "
                                          f"(valid: {', '.join(options)})")
        elif key == "sweep" or o.is_add():
            raise _refuse(source, f"{what} adds an entry of the config")
        else:
            _check_value(value, what, source)
        checked.append(text)
    _compose_overrides(checked, source)
    return list(overrides)


# Keys that say where a run writes its folder, checkpoints or logs: a job built from a record writes into
# its own folder of the sweep, never into (or over) another's. (paths.cache_dir stays: the whitening cache
# is a file named by its content's key, read weights-only and refitted when it does not fit.)
WHERE_LEAVES = ("output_dir", "dirpath", "save_dir", "lease_dir")


def _says_where(key: str) -> bool:
    return key.split(".")[-1] in WHERE_LEAVES


def _check_value(value: Any, what: str, source: Any) -> None:
    if isinstance(value, str) and _INTERPOLATION in value:  # a resolver (oc.decode, oc.env, ...) would run
        raise _refuse(source, f"{what}: its value holds an interpolation (a record holds plain values)")
    if isinstance(value, dict):
        for k, v in value.items():
            if is_special(k):
                raise _refuse(source, f"{what}: its value holds {k} (this tool builds nothing from a value)")
            _check_value(v, what, source)
    elif isinstance(value, list):
        for v in value:
            _check_value(v, what, source)


def _compose_overrides(overrides: Sequence[str], source: Any) -> None:
    """Every recorded key exists in our composition and every value has the schema's type."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        _compose(list(overrides))
    except Exception as e:  # noqa: BLE001 - Hydra's and OmegaConf's multi-line errors: one line here
        message = " ".join(str(e).split())
        parsed = OverridesParser.create().parse_overrides(list(overrides))
        culprit = next((o.input_line for o in parsed if f"'{o.key_or_group}'" in message
                        or f"{o.key_or_group}" in message.split(" ")), None)
        what = f"override {culprit!r}" if culprit else "its overrides"
        raise _refuse(source, f"{what} do not compose with this tool's config ({message[:200]})") from None


# ----------------------------------------------------------------------------- values of a run folder

_REFERENCE = re.compile(r"^\$\{([A-Za-z0-9_.]+)\}$")


def _lookup(tree: Any, dotted: str) -> Any:
    node = tree
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return _MISSING
        node = node[part]
    return node


def _plain_value(tree: Any, dotted: str, depth: int = 0) -> Any:
    """A scalar of the file's tree: literal, or a reference to another of its keys (${sweep.name});
    anything needing a resolver (${oc.env:...}, ${hydra:...}) is unknown here (None)."""
    value = _lookup(tree, dotted)
    if isinstance(value, str) and _INTERPOLATION in value:
        match = _REFERENCE.match(value.strip())
        if match is None or depth > 8:
            return None
        return _plain_value(tree, match.group(1), depth + 1)
    return value


def read_config_file(path: str | Path) -> Optional[dict]:
    """A run folder's .hydra/config.yaml as plain data (YAML only, nothing resolved or built); None when
    absent or unreadable (a half-written file)."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        data = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    except Exception:  # noqa: BLE001 - a half-written file: treat as absent
        return None
    return data if isinstance(data, dict) else None


def config_values(path: str | Path, keys: Mapping[str, type | tuple[type, ...]],
                  required: bool = False) -> dict[str, Any]:
    """The values of `keys` ({dotted key: type}) in a run folder's .hydra/config.yaml: read as data,
    each of its type (int is a float too); None when absent, unknown, or (required=False) of another
    type. required=True: a missing or mistyped value is a one-line UserError naming the file and key."""
    tree = read_config_file(path)
    if tree is None and required:
        raise UserError(f"{path}: missing or not a config file")
    out: dict[str, Any] = {}
    for key, kind in keys.items():
        value = None if tree is None else _plain_value(tree, key)
        kinds = kind if isinstance(kind, tuple) else (kind,)
        ok = value is not _MISSING and value is not None and not (isinstance(value, bool) and bool not in kinds)
        ok = ok and (isinstance(value, kinds) or (float in kinds and isinstance(value, int)))
        if not ok:
            if required:
                raise UserError(f"{path}: key {key} = {_short(None if value is _MISSING else value)} is not "
                                f"{' or '.join(k.__name__ for k in kinds)}")
            value = None
        if isinstance(value, int) and not isinstance(value, bool) and float in kinds and int not in kinds:
            value = float(value)  # YAML writes lr=1 as an int
        out[key] = value
    return out


def read_overrides_file(path: str | Path) -> list[str]:
    """A run folder's .hydra/overrides.yaml as a list of strings (shown in the report; checked by
    overrides_from_record before any of them is composed); [] when absent or not such a list."""
    path = Path(path)
    if not path.is_file():
        return []
    try:
        data = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    except Exception:  # noqa: BLE001 - a half-written file: treat as absent
        return []
    return [str(o) for o in data] if isinstance(data, list) else []
