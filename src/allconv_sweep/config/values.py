"""The checks of single config values that the schema declares (numbers, choices), and the arguments of
Lightning's Trainer checked against Lightning itself: its signature for +trainer.<key>=..., its accelerator
registry for what this machine has. Each check raises ValueError("<key>=<value>: ..."), one line."""

from __future__ import annotations

import collections.abc
import contextlib
import dataclasses
import difflib
import inspect
import math
import typing
from typing import Any, Callable

MAX_INT = 2**31 - 1  # sizes and counts beyond this are typos (and overflow torch's int32 indexing)


def did_you_mean(word: Any, options: typing.Iterable[str]) -> str:
    close = difflib.get_close_matches(str(word), list(options), n=1)
    return f"did you mean {close[0]}? " if close else ""


def number(ok: Callable[[Any], bool], what: str, integer: bool = False) -> Callable[[Any, str], None]:
    """A check that a value is a finite number (an integer) for which ok(value) holds, or None (an Optional
    field left unset: OmegaConf refuses None for the others)."""
    def check(value: Any, key: str) -> None:
        is_number = isinstance(value, int if integer else (int, float)) and not isinstance(value, bool)
        if value is not None and not (is_number and math.isfinite(value) and ok(value)):
            raise ValueError(f"{key}={value!r}: must be {what}")
    return check


POSITIVE = number(lambda v: v > 0, "a finite number > 0")
NONNEGATIVE = number(lambda v: v >= 0, "a finite number >= 0")
INT = number(lambda v: 0 < v <= MAX_INT, f"an integer > 0 up to {MAX_INT}", integer=True)
COUNT = number(lambda v: 0 <= v <= MAX_INT, f"an integer >= 0 up to {MAX_INT}", integer=True)


def within(low: float, high: float, low_open: bool = False, high_open: bool = False) -> Callable[[Any, str], None]:
    return number(lambda v: (v > low if low_open else v >= low) and (v < high if high_open else v <= high),
                  f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}")


def one_of(*options: Any, shown: str = "", what: str = "") -> Callable[[Any, str], None]:
    """A check that a value is one of the options (`what`: a name such as strategy; say the closest option)."""
    def check(value: Any, key: str) -> None:
        if value in options:
            return
        if what:
            raise ValueError(f"{key}={value}: no such {what}; {did_you_mean(value, options)}valid: {', '.join(options)}")
        raise ValueError(f"{key}={value!r}; valid: {shown or ', '.join(options)}")
    return check


AUTO_OR_BOOL = one_of("auto", True, False, shown="auto, true, false")


def check_fields(conf: Any, prefix: str, **checks: Callable[[Any, str], None]) -> None:
    """Each field's check(value, key), in order."""
    for field, check in checks.items():
        check(getattr(conf, field), f"{prefix}.{field}")


# Trainer arguments train() passes itself (train.py): a value given for one would be silently replaced
TRAINER_SET_BY_TOOL = ("callbacks", "logger", "default_root_dir", "enable_model_summary", "num_sanity_val_steps",
                       "plugins")
# added Trainer arguments with a lower bound Lightning checks only when it is built
TRAINER_ADDED_MINIMUM = {"fast_dev_run": 0, "min_epochs": 0, "min_steps": 0, "max_steps": -1,
                         "reload_dataloaders_every_n_epochs": 0}


def trainer_added(conf: Any) -> None:
    """Keys added by +trainer.<key>=... (set after __post_init__): Trainer arguments that train() does not set."""
    from lightning.pytorch import Trainer

    fields = {f.name for f in dataclasses.fields(conf)}
    params = inspect.signature(Trainer.__init__).parameters
    valid = sorted(p for p in params if p != "self" and p not in TRAINER_SET_BY_TOOL)
    for key, value in vars(conf).items():
        if key in fields:
            continue
        if key in TRAINER_SET_BY_TOOL:
            raise ValueError(f"trainer.{key}: set by allconv_sweep itself (train.py); "
                             f"it cannot be given: drop +trainer.{key}")
        if key not in params or key == "self":
            raise ValueError(f"trainer.{key}: no such key; {did_you_mean(key, valid)}valid keys in trainer "
                             f"(lightning.pytorch.Trainer's arguments): {', '.join(valid)}")
        ok, expected = fits(value, params[key].annotation)
        if not ok:
            raise ValueError(f"trainer.{key}={value!r}: must be {expected} (lightning.pytorch.Trainer's {key})")
        low = TRAINER_ADDED_MINIMUM.get(key)
        if low is not None and isinstance(value, (int, float)) and not isinstance(value, bool) and value < low:
            raise ValueError(f"trainer.{key}={value!r}: must be >= {low}")
        if key in ("limit_predict_batches", "overfit_batches"):
            batch_limit(value, f"trainer.{key}")


def trainer_on_this_machine(conf: Any) -> None:
    """The accelerator and devices exist on this machine (call only where the run will run)."""
    from lightning.pytorch.accelerators import AcceleratorRegistry

    here = {"cpu"}
    for name, entry in AcceleratorRegistry.items():
        with contextlib.suppress(Exception):  # a probe that fails means "not here"
            if entry["accelerator"].is_available():
                here.add(name)
    valid = ["auto", "cpu"] + (["gpu", "cuda"] if "cuda" in here else ["gpu", "mps"] if "mps" in here else [])
    valid += ["tpu"] if "tpu" in here else []
    wanted = str(conf.accelerator)
    kind = {"gpu": "mps" if "mps" in here and "cuda" not in here else "cuda",
            "auto": next((k for k in ("tpu", "mps", "cuda") if k in here), "cpu")}.get(wanted, wanted)
    if kind not in here:
        what = {"cuda": "GPU (CUDA)", "tpu": "TPU (torch_xla)", "mps": "Apple GPU (MPS)"}.get(kind, kind)
        raise ValueError(f"trainer.accelerator={wanted}: this machine has no {what}; valid here: {', '.join(valid)}")
    devices = conf.devices
    if isinstance(devices, str) and devices.strip().lstrip("-").isdigit():
        devices = int(devices)
    if kind == "cpu" and not (devices == "auto" or (isinstance(devices, int) and devices >= 1)):
        raise ValueError(f"trainer.devices={conf.devices!r}: on a CPU, the number of processes (1, 2, ...) or auto")
    if kind == "cuda":
        import torch

        count = torch.cuda.device_count()
        indices = (devices if isinstance(devices, list)
                   else [int(p) for p in devices.split(",") if p.strip()] if isinstance(devices, str) and devices != "auto"
                   else [])
        if (isinstance(devices, int) and devices > count) or any(i >= count for i in indices):
            raise ValueError(f"trainer.devices={conf.devices!r}: this machine has {count} GPU(s); "
                             f"valid here: auto, -1 (all), a count up to {count}, or indices 0..{count - 1}")


def batch_limit(value: Any, key: str) -> None:
    """Lightning's limit_*_batches: a fraction of the batches in [0, 1], or a whole number of batches."""
    if value is None:
        return
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (value > 1 and value % 1 != 0):
        shown = f"{value:g}" if ok else repr(value)
        raise ValueError(f"{key}={shown}: must be a fraction in [0, 1] or a whole number of batches (2, 3, ...)")


def trainer_devices(value: Any, key: str) -> None:
    """Lightning's devices: auto, a count (-1: all), "0,1", or a list of device indices."""
    text = value.strip() if isinstance(value, str) else None
    ok = (text == "auto"
          or (text is not None and text.lstrip("-").isdigit() and (int(text) >= 1 or int(text) == -1))
          or (text is not None and "," in text and all(p.strip().isdigit() for p in text.split(",") if p.strip()))
          or (isinstance(value, int) and not isinstance(value, bool) and (value >= 1 or value == -1))
          or (isinstance(value, list) and value and len(set(value)) == len(value)
              and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in value)))
    if not ok:
        raise ValueError(f"{key}={value!r}: must be auto, a device count (1, 2, ...; -1: all of them) "
                         f"or a list of distinct device indices such as [0, 1]")


# The plain types a config value can be: the Python types of its values, and its name in an error
_PLAIN = {type(None): ((type(None),), "null"), bool: ((bool,), "true/false"), int: ((int,), "an integer"),
          float: ((int, float), "a number"), str: ((str,), "a string")}


def fits(value: Any, annotation: Any) -> tuple[bool, str]:
    """Whether a config value is of a Trainer argument's type, and the type in words ("" for a class)."""
    if annotation is inspect.Parameter.empty or annotation is Any or isinstance(annotation, str):
        return True, ""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Union:
        arms = [fits(value, a) for a in args]
        return any(ok for ok, _ in arms), " or ".join(dict.fromkeys(words for _, words in arms if words))
    if origin is typing.Literal:
        return any(value == a and type(value) is type(a) for a in args), "one of " + ", ".join(map(repr, args))
    if origin in (list, collections.abc.Iterable, collections.abc.Sequence):
        ok = isinstance(value, list) and all(fits(v, args[0])[0] for v in value) if args else isinstance(value, list)
        return ok, "a list" if origin is list else ""
    if origin is dict or annotation is dict:
        return isinstance(value, dict), "a dict" if origin is dict else ""
    types, words = _PLAIN.get(annotation, ((), ""))
    return isinstance(value, types) and (annotation is bool or not isinstance(value, bool)), words
