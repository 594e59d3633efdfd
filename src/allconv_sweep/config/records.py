"""Records of runs (checkpoints, run folders, sweep folders) read as data, never run: the one place every
reader of such a file goes through.

A checkpoint's stored config, a run folder's .hydra files and a sweep's recorded overrides were written by this
tool, but anyone can edit them. What a caller needs is rebuilt through our own composition (conf/ + the
schema): groups chosen by name among conf/'s options, only the values taken from the file and assigned into
our typed nodes. Nothing the file says about what to build (`_target_`, any `_..._` key) is used unless it
equals ours; no added (`+`, `++`) or deleted (`~`) entries, no Hydra settings, no option conf/ lacks. Any
such content is refused in one line naming the file and the key (UserError: exit 2), before any of it runs.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Mapping, Optional

from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from allconv_sweep.config import files
from allconv_sweep.config.compose import compose
from allconv_sweep.config.schema import is_seed
from allconv_sweep.errors import UserError

REFUSED = "refused: checkpoints and run folders are read as data, never run"

# The groups a stored run config is rebuilt from, each chosen by its stored `name` among conf/'s options.
NAMED_GROUPS = ("model", "data", "preprocess", "augment")
# Nodes taken from our default composition, their values from the record (trainer=ddp has default's keys).
VALUE_NODES = ("trainer",)
# What a reader of a stored run config gets; every other node of the record is never read.
RUN_NODES = NAMED_GROUPS + VALUE_NODES + ("paths", "seed")

_INTERPOLATION = "${"


def _refuse(source: Any, what: str) -> UserError:
    return UserError(f"{source}: {what}; {REFUSED}")


def is_special(key: Any) -> bool:
    """_target_, _partial_, _args_, _convert_, _recursive_, ...: keys that tell Hydra what to build."""
    return isinstance(key, str) and len(key) > 2 and key.startswith("_") and key.endswith("_")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _take(value: Any, key: str, source: Any, ours: Optional[DictConfig] = None, override: str = "") -> None:
    """A record's value at `key`, refused unless plain data: scalars, lists and string-keyed mappings of them; no
    interpolation, no `_..._` key but one equal to ours. `ours`: our composed node the mapping's values go into
    (keys it has, values its schema accepts). `override`: the recorded override whose value it is (a resolver
    in it would run when a job resolves it)."""
    if ours is not None and not isinstance(value, Mapping):
        raise _refuse(source, f"key {key} = {_short(value)} is not a config node")
    if isinstance(value, str) and _INTERPOLATION in value:
        raise _refuse(source, f"{override}: its value holds an interpolation (a record holds plain values)" if override
                      else f"key {key} = {_short(value)} is an interpolation (a record holds resolved values)")
    if isinstance(value, (list, tuple, ListConfig)):
        for i, v in enumerate(value):
            _take(v, f"{key}[{i}]", source, override=override)
    elif isinstance(value, (Mapping, DictConfig)):
        # into ours, what to build first: the refusal names a foreign _target_ rather than the keys that come with it
        for k, v in sorted(value.items(), key=lambda kv: ours is not None and not is_special(kv[0])):
            if not isinstance(k, str):
                raise _refuse(source, f"key {key}.{k!r} is not a config key")
            if is_special(k) and (ours is None or k not in ours or v != ours[k]):
                builds = f"this tool builds {ours[k]}" if ours is not None and k in ours else "it builds nothing there"
                raise _refuse(source, f"{override}: its value holds {k} (this tool builds nothing from a value)"
                              if override else f"key {key}.{k} = {_short(v)} is not what this tool builds ({builds})")
            if ours is None:
                _take(v, f"{key}.{k}", source, override=override)
            elif not is_special(k):
                if k not in ours:
                    raise _refuse(source, f"key {key}.{k} is not a key of this tool's {key} config "
                                          f"(valid: {', '.join(str(x) for x in ours.keys() if not is_special(x))})")
                child = ours._get_node(k)
                into = isinstance(v, Mapping) and isinstance(child, DictConfig) and not child._is_none() \
                    and not child._is_interpolation()
                _take(v, f"{key}.{k}", source, ours[k] if into else None)
                if not into:
                    try:
                        ours[k] = v
                    except (OmegaConfBaseException, ValueError) as e:  # the schema's type or choice check
                        raise _refuse(source, f"key {key}.{k} = {_short(v)}: {str(e).splitlines()[0]}") from None
    elif value is not None and not isinstance(value, (bool, int, float, str)):
        raise _refuse(source, f"key {key} holds a {type(value).__name__}, not a config value")


def run_config_from_record(stored: Any, source: Any) -> DictConfig:
    """RUN_NODES of a record's stored config, rebuilt as our composition of the options it names, its values
    assigned (nothing is instantiated here)."""
    if not isinstance(stored, Mapping):
        raise _refuse(source, f"its config is a {type(stored).__name__}, not a config")
    if "hydra" in stored:
        raise _refuse(source, "key hydra: a run's record holds no Hydra settings")
    choices = []
    for group in NAMED_GROUPS:
        node = stored.get(group)
        if not isinstance(node, Mapping):
            raise _refuse(source, f"key {group} = {_short(node)} is not a {group} config")
        name, options = node.get("name"), files.group_options(group) or []
        if not isinstance(name, str) or name not in options:
            if any(is_special(k) for k in node):  # name what it would build, beside our default's
                _take(node, group, source, compose([])[group])
            raise _refuse(source, f"key {group}.name = {_short(name)} is not an option of the {group} group "
                                  f"(valid: {', '.join(options)})")
        choices.append(f"{group}={name}")
    try:
        ours = compose(choices)
    except Exception as e:  # noqa: BLE001 - an option that does not compose is not one we can rebuild
        raise _refuse(source, f"{' '.join(choices)} do not compose ({str(e).splitlines()[0]})") from None
    with open_dict(ours):
        for k in [k for k in ours.keys() if k not in RUN_NODES]:
            del ours[k]
        del ours.paths.output_dir  # Hydra's runtime folder: not a record's, and unresolvable here
    for node in NAMED_GROUPS + VALUE_NODES:
        if node in stored:
            _take(stored[node], node, source, ours[node])
    paths = stored.get("paths", {})
    if isinstance(paths, Mapping) and "cache_dir" in paths:
        _take({"cache_dir": paths["cache_dir"]}, "paths", source, ours.paths)
    if "seed" in stored:
        if not is_seed(stored["seed"]):
            raise _refuse(source, f"key seed = {_short(stored['seed'])} is not an integer in [0, 2^32)")
        ours.seed = stored["seed"]
    try:  # the schema's range checks, as for a run's own config
        for node in NAMED_GROUPS + VALUE_NODES:
            if OmegaConf.get_type(ours[node]) not in (dict, None):
                OmegaConf.to_object(ours[node])
        OmegaConf.to_container(ours, resolve=True, throw_on_missing=True)
    except (OmegaConfBaseException, ValueError, RecursionError) as e:
        raise _refuse(source, str(e).splitlines()[0]) from None
    return ours


def overrides_from_record(overrides: Any, source: Any) -> list[str]:
    """Recorded overrides (metrics.json, sweep.json, .hydra/overrides.yaml), checked before +sweep=seeds or final
    compose them again: each sets a key we have or chooses an option conf/ has; +sweep=<sweep> is the one add."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    if not isinstance(overrides, (list, tuple)) or not all(isinstance(o, str) for o in overrides):
        raise _refuse(source, f"overrides = {_short(overrides)} is not a list of key=value strings")
    parser = OverridesParser.create()
    parsed = []
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
        if key.split(".")[-1] in WHERE_LEAVES:
            raise _refuse(source, f"{what} says where a job writes; a job built from a record writes into its "
                                  f"own folder of the sweep")
        value = o.value()
        options = files.group_options(key)
        if options is not None and not isinstance(value, dict):  # Hydra's group choice (a list: several)
            for v in value if isinstance(value, list) else [value]:
                if not isinstance(v, str) or v not in options:
                    raise _refuse(source, f"{what}: {_short(v)} is not an option of the {key} group "
                                          f"(valid: {', '.join(options)})")
        elif key == "sweep" or o.is_add():
            raise _refuse(source, f"{what} adds an entry of the config")
        else:
            _take(value, key, source, override=what)
        parsed.append(o)
    try:  # every recorded key exists in our composition and every value has the schema's type
        compose([o.input_line for o in parsed])
    except Exception as e:  # noqa: BLE001 - Hydra's and OmegaConf's multi-line errors: one line here
        message = " ".join(str(e).split())
        culprit = next((o.input_line for o in parsed if f"'{o.key_or_group}'" in message
                        or f"{o.key_or_group}" in message.split(" ")), None)
        what = f"override {culprit!r}" if culprit else "its overrides"
        raise _refuse(source, f"{what} do not compose with this tool's config ({message[:200]})") from None
    return list(overrides)


# Keys that say where a run writes: a job built from a record writes into its own folder of the sweep. (Not
# paths.cache_dir: the whitening cache is named by its content's key, read weights-only, refitted if it differs.)
WHERE_LEAVES = ("output_dir", "dirpath", "save_dir", "lease_dir")


def _plain_value(tree: Any, dotted: str, depth: int = 0) -> Any:
    """A literal, or a reference to another key (${sweep.name}); None: absent, or it needs a resolver."""
    value = tree
    for part in dotted.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    if isinstance(value, str) and _INTERPOLATION in value:
        match = re.fullmatch(r"\$\{([A-Za-z0-9_.]+)\}", value.strip())
        if match is None or depth > 8:
            return None
        return _plain_value(tree, match.group(1), depth + 1)
    return value


def _load(path: str | Path) -> Any:
    """A YAML file of a run folder as plain data (nothing resolved); None when absent or half-written."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        return OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    except Exception:  # noqa: BLE001 - a half-written file: treat as absent
        return None


def config_values(path: str | Path, keys: Mapping[str, type]) -> dict[str, Any]:
    """The values of `keys` ({dotted key: type}) in a run folder's .hydra/config.yaml, read as data: each of
    its type (an int is a float too), else None (absent, of another type, or needing a resolver)."""
    tree = _load(path)
    out: dict[str, Any] = {}
    for key, kind in keys.items():
        value = _plain_value(tree, key)
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)  # YAML writes lr=1 as an int
        out[key] = value if isinstance(value, kind) and (kind is bool or not isinstance(value, bool)) else None
    return out


def read_overrides_file(path: str | Path) -> list[str]:
    """A run folder's .hydra/overrides.yaml as strings (for the report; overrides_from_record checks them)."""
    data = _load(path)
    return [str(o) for o in data] if isinstance(data, list) else []
