"""Where the configs live, composing them without @hydra.main, and checks that run before any work."""

from __future__ import annotations

import math
import sys
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from allconv_sweep.errors import UserError

_PKG = Path(__file__).resolve().parent


def _find(name: str) -> Path:
    """An absolute path derived from the package: the repo's folder (source or editable install), else
    the copy a wheel installs under <prefix>/share/allconv_sweep/."""
    for candidate in (_PKG.parents[1] / name, Path(sys.prefix) / "share" / "allconv_sweep" / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"allconv_sweep: cannot find its {name}/ folder next to {_PKG}")


def register_resolvers() -> None:
    """${allconv.dirname_excludes:}: the override keys a sweep's folder names leave out (conf/hydra/default.yaml),
    derived from the one list of keys that cannot change a result (allconv_sweep.runs.NEUTRAL_KEYS)."""
    if not OmegaConf.has_resolver("allconv.dirname_excludes"):
        from allconv_sweep.runs import dirname_exclude_keys
        OmegaConf.register_new_resolver("allconv.dirname_excludes", lambda: list(dirname_exclude_keys()))


register_resolvers()


def config_dir() -> Path:
    return _find("conf")


def sweeps_dir() -> Path:
    return _find("sweeps")


def compose(overrides: list[str] | None = None, return_hydra_config: bool = False) -> DictConfig:
    """The same config `python -m allconv_sweep <overrides>` would get (tests, notebooks, tools)."""
    from hydra import compose as hydra_compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return hydra_compose("config", overrides=overrides or [], return_hydra_config=return_hydra_config)


MAX_INT = 2**31 - 1  # sizes and counts beyond this are typos (and overflow torch's int32 indexing)


def _positive(value, key: str, kind=float) -> None:
    bad = isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and not isinstance(value, int))
    if bad or not math.isfinite(value) or value <= 0 or (kind is int and value > MAX_INT):
        what = f"a positive integer up to {MAX_INT}" if kind is int else "a positive, finite number"
        raise UserError(f"{key}={value!r}: must be {what}")


def _interpolation_error(e: Exception) -> UserError:
    """One line for a config value that cannot be resolved (an unset ${oc.env:...}, a loop)."""
    key = getattr(e, "full_key", None)
    first = str(e).splitlines()[0] if str(e) else type(e).__name__
    first = first.split("raised while resolving interpolation: ")[-1].strip('"')
    if isinstance(e, RecursionError):
        first = "it refers to itself"
    return UserError(f"{key or 'the config'}: cannot resolve its value ({first})")


def identity(cfg: DictConfig) -> dict:
    """runs.identity, with unresolvable values (an unset env variable, a loop) as one-line errors."""
    from omegaconf.errors import OmegaConfBaseException

    from allconv_sweep import runs

    try:
        return runs.identity(cfg)
    except (OmegaConfBaseException, RecursionError) as e:
        raise _interpolation_error(e) from None


def validate(cfg: DictConfig) -> None:
    """Checks that need no data: every one names the value and what would be valid."""
    from omegaconf.errors import OmegaConfBaseException

    try:
        identity(cfg)  # every value that decides the result resolves
        _validate(cfg)
    except (OmegaConfBaseException, RecursionError) as e:
        raise _interpolation_error(e) from None


def _validate(cfg: DictConfig) -> None:
    _positive(cfg.optimizer.lr, "optimizer.lr")
    _positive(cfg.trainer.max_epochs, "trainer.max_epochs", int)
    _positive(cfg.data.batch_size, "data.batch_size", int)
    _positive(cfg.data.eval_batch_size, "data.eval_batch_size", int)
    seed = cfg.seed
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise UserError(f"seed={seed!r}: must be an integer in [0, 2^32)")
    if cfg.optimizer.weight_decay < 0:
        raise UserError(f"optimizer.weight_decay={cfg.optimizer.weight_decay!r}: must be >= 0")
    if not 0 <= cfg.optimizer.momentum < 1:
        raise UserError(f"optimizer.momentum={cfg.optimizer.momentum!r}: must be in [0, 1)")
    if cfg.optimizer.get("warmup_epochs", 0) < 0:
        raise UserError(f"optimizer.warmup_epochs={cfg.optimizer.warmup_epochs!r}: must be >= 0")
    if not 0 < cfg.scheduler.gamma <= 1:
        raise UserError(f"scheduler.gamma={cfg.scheduler.gamma!r}: must be in (0, 1]")
    precisions = ("32-true", "32", "bf16-mixed", "16-mixed", "bf16-true")
    if str(cfg.trainer.precision) not in precisions:
        raise UserError(f"trainer.precision={cfg.trainer.precision!r}; valid: {', '.join(precisions)}")
    if cfg.finetune_from is not None and not Path(cfg.finetune_from).is_file():
        raise UserError(f"finetune_from={cfg.finetune_from}: no such checkpoint file")


def to_container(cfg: DictConfig) -> dict:
    return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)  # type: ignore[return-value]
