"""Composing our configs without @hydra.main, validating them (the one validation), building a node, and
the one-line text of a config error."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from allconv_sweep.config import identity as identity_mod
from allconv_sweep.config.files import config_dir
from allconv_sweep.config.resolvers import register
from allconv_sweep.errors import UserError


def compose(overrides: list[str] | None = None, return_hydra_config: bool = False) -> DictConfig:
    """The same config `python -m allconv_sweep <overrides>` would get (tests, notebooks, tools)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    register()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return hydra_compose("config", overrides=overrides or [], return_hydra_config=return_hydra_config)


# The groups whose options carry a schema (allconv_sweep/config/schema.py), and nodes inside groups that do.
# (paths and tracking have types but no range checks, and values that exist only inside a Hydra run.)
SCHEMA_NODES = ("model", "data", "preprocess", "augment", "optimizer", "scheduler", "trainer", "launcher",
                "callbacks.divergence", "callbacks.nonfinite", "logger.wandb")


def user_error(e: BaseException) -> UserError:
    """One line for what Hydra and OmegaConf raise about a config: the key, the value, what is valid."""
    from omegaconf.errors import ValidationError

    if isinstance(e, UserError):
        return e
    chain, cause = [], e
    while cause is not None and len(chain) < 8:
        chain.append(cause)
        cause = cause.__cause__ or cause.__context__
    for c in chain:
        if isinstance(c, ValidationError):
            key = getattr(c, "full_key", None) or "a value"
            first = str(c).splitlines()[0]
            if "expected one of" in first:  # an Enum choice: name the closest one
                import difflib
                value = first.split("'")[1] if "'" in first else ""
                options = first.split("[", 1)[1].rstrip("]").split(", ") if "[" in first else []
                close = difflib.get_close_matches(value, options, n=1)
                hint = f"did you mean {close[0]}? " if close else ""
                return UserError(f"{key}={value}: no such option; {hint}valid: {', '.join(options)}")
            return UserError(f"{key}: {first}")
        if isinstance(c, ValueError) and str(c).split(":")[0].count("=") == 1:  # a schema's range check
            return UserError(str(c).splitlines()[0])
        if isinstance(c, RecursionError):
            return UserError("the config: a value refers to itself")
    return _interpolation_error(e) if "interpolation" in str(e).lower() else UserError(str(e).splitlines()[0])


def _interpolation_error(e: BaseException) -> UserError:
    """One line for a config value that cannot be resolved (an unset ${oc.env:...}, a loop)."""
    key = getattr(e, "full_key", None)
    first = str(e).splitlines()[0] if str(e) else type(e).__name__
    first = first.split("raised while resolving interpolation: ")[-1].strip('"')
    if isinstance(e, RecursionError):
        first = "it refers to itself"
    return UserError(f"{key or 'the config'}: cannot resolve its value ({first})")


def identity(cfg: DictConfig) -> dict:
    """config.identity.identity, with unresolvable values (an unset env variable, a loop) as one-line errors."""
    from omegaconf.errors import OmegaConfBaseException

    try:
        return identity_mod.identity(cfg)
    except (OmegaConfBaseException, RecursionError) as e:
        raise _interpolation_error(e) from None


def _placeholders(cfg: DictConfig) -> DictConfig:
    """A copy in which neutral values that exist only inside a Hydra run (${hydra:runtime.output_dir},
    ${hydra:job.override_dirname}) read "<set by Hydra>", so the schemas of nodes that refer to them
    (a logger's save_dir) can be checked before the run, in the CLI's pre-check and the sweep planner."""
    from omegaconf.errors import OmegaConfBaseException

    is_neutral = identity_mod.is_neutral
    cfg = cfg.copy()

    def walk(node: DictConfig, prefix: str) -> None:
        for k in list(node.keys()):
            key = f"{prefix}.{k}" if prefix else str(k)
            child = node._get_node(k)
            if isinstance(child, DictConfig):
                if not child._is_none() and not child._is_interpolation():
                    walk(node[k], key)
            elif is_neutral(key) and OmegaConf.is_interpolation(node, k):
                try:
                    node[k]
                except OmegaConfBaseException:
                    with open_dict(node):
                        node[k] = "<set by Hydra>"

    walk(cfg, "")
    return cfg


def validate(cfg: DictConfig) -> dict[str, Any]:
    """The one validation, after composition (the CLI, the sweep planner, train() and tests call it):
    every value that decides the result resolves, and every schema's range checks pass. Returns the run's
    identity (config.identity.identity), which the resolving computed."""
    from omegaconf.errors import OmegaConfBaseException

    from allconv_sweep.config.schema import RunConf, TrainerConf

    ident = identity(cfg)
    cfg = _placeholders(cfg)
    try:
        for path in SCHEMA_NODES:
            node = OmegaConf.select(cfg, path, default=None)
            if isinstance(node, DictConfig) and OmegaConf.get_type(node) not in (dict, None):
                built = OmegaConf.to_object(node)  # builds the dataclasses: their __post_init__ checks run
                if isinstance(built, TrainerConf):
                    built.check_added()
                    if _runs_here(cfg):
                        built.check_machine()
        RunConf(seed=cfg.seed, resume=cfg.resume, finetune_from=cfg.finetune_from, print_config=cfg.print_config)
    except (OmegaConfBaseException, ValueError, RecursionError) as e:
        raise user_error(e) from None
    if cfg.finetune_from is not None and not Path(cfg.finetune_from).is_file():
        raise UserError(f"finetune_from={cfg.finetune_from}: no such checkpoint file")
    return ident


def _runs_here(cfg: DictConfig) -> bool:
    """Whether the run (each job) runs on this machine: not so for launcher=slurm's jobs until they run in
    their SLURM job (a login node without GPUs plans a sweep of GPU jobs)."""
    import os

    return OmegaConf.select(cfg, "launcher.name", default=None) != "slurm" or "SLURM_JOB_ID" in os.environ


def build(node, /, **kwargs):
    """hydra.utils.instantiate, but a component's own one-line UserError (bad data, an unsupported
    combination) comes out as itself, not wrapped in Hydra's multi-line InstantiationException."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    try:
        return instantiate(node, **kwargs)
    except InstantiationException as e:
        cause = e.__cause__
        if isinstance(cause, UserError):
            raise cause from None
        raise


def to_container(cfg: DictConfig) -> dict:
    """Plain, resolved: enums as their names (checkpoints hold only plain types: weights_only loading)."""
    return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True, enum_to_str=True)  # type: ignore[return-value]
