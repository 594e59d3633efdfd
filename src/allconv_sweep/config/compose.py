"""Composing our configs without @hydra.main (and what that needs: register), the one validation, building a
node, and the one-line text of a config error."""

from __future__ import annotations

import getpass
import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException, ValidationError

from allconv_sweep.config import files, schema
from allconv_sweep.config import identity as identity_mod
from allconv_sweep.config.schema import TrainerConf, is_seed
from allconv_sweep.config.values import did_you_mean, trainer_added, trainer_on_this_machine
from allconv_sweep.errors import UserError

# The nodes whose options carry a schema with range checks (paths and tracking have none)
SCHEMA_NODES = ("model", "data", "preprocess", "augment", "optimizer", "scheduler", "trainer", "launcher",
                "callbacks.divergence", "callbacks.nonfinite", "logger.wandb")


def register() -> None:
    """The schema in Hydra's ConfigStore and the ${allconv.*:} resolvers: idempotent, never an import's side
    effect (compose(), the entry point and the search-path plugin of every Hydra app here call it)."""
    from hydra.core.config_store import ConfigStore

    for path, node in schema.SCHEMAS.items():  # as schema/<group>/<option>
        group, name = path.split("/")
        ConfigStore.instance().store(group=f"schema/{group}", name=name, node=node, provider="allconv_sweep")
    resolvers = {
        # the override keys a sweep's folder names leave out: the keys that cannot change a result
        "allconv.dirname_excludes": lambda: list(files.dirname_exclude_keys()),
        "allconv.safe_dirname": lambda name: files.safe_dirname(str(name)),  # a job stays in its sweep folder
        "allconv.groups_help": files.groups_help,
        # launcher=slurm: gpus_per_job=0 is a CPU job of one task (not 0 devices, 0 tasks)
        "allconv.at_least_one": lambda n: max(1, int(n)),
        "allconv.accelerator_for": lambda gpus: "gpu" if int(gpus) > 0 else "cpu",
        "allconv.user": getpass.getuser,  # launcher=gpus: one lease folder per user
        "allconv.abspath": lambda p: os.path.abspath(str(p)),
    }
    for name, resolver in resolvers.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, resolver)


def compose(overrides: list[str] | None = None, return_hydra_config: bool = False) -> DictConfig:
    """The same config `python -m allconv_sweep <overrides>` would get (tests, notebooks, tools); Hydra's global
    state is kept for a reader inside a running app (planner, evaluate)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    register()
    saved = GlobalHydra.instance().hydra
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(files.config_dir()), version_base="1.3"):
            return hydra_compose("config", overrides=overrides or [], return_hydra_config=return_hydra_config)
    finally:
        GlobalHydra.instance().hydra = saved


def user_error(e: BaseException) -> UserError:
    """One line for what Hydra and OmegaConf raise about a config: the key, the value, what is valid."""
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
                value = first.split("'")[1] if "'" in first else ""
                options = first.split("[", 1)[1].rstrip("]").split(", ") if "[" in first else []
                return UserError(f"{key}={value}: no such option; {did_you_mean(value, options)}"
                                 f"valid: {', '.join(options)}")
            return UserError(f"{key}: {first}")
        if isinstance(c, ValueError) and str(c).split(":")[0].count("=") == 1:  # a schema's range check
            return UserError(str(c).splitlines()[0])
        if isinstance(c, RecursionError):
            return UserError("the config: a value refers to itself")
    return _interpolation_error(e) if "interpolation" in str(e).lower() else UserError(str(e).splitlines()[0])


def _interpolation_error(e: BaseException) -> UserError:
    """One line for a config value that cannot be resolved (an unset ${oc.env:...}, a loop)."""
    first = str(e).splitlines()[0] if str(e) else type(e).__name__
    first = first.split("raised while resolving interpolation: ")[-1].strip('"')
    if isinstance(e, RecursionError):
        first = "it refers to itself"
    return UserError(f"{getattr(e, 'full_key', None) or 'the config'}: cannot resolve its value ({first})")


def _placeholders(cfg: DictConfig) -> DictConfig:
    """A copy in which neutral values that exist only inside a Hydra run (${hydra:runtime.output_dir}) read
    "<set by Hydra>", so that the schemas of nodes that refer to them (a logger's save_dir) can be checked."""
    cfg = cfg.copy()
    for key, node, k in identity_mod.walk(cfg, lambda key: False):
        if identity_mod.is_neutral(key) and OmegaConf.is_interpolation(node, k) \
                and not isinstance(node._get_node(k), DictConfig):
            try:
                node[k]
            except OmegaConfBaseException:
                with open_dict(node):
                    node[k] = "<set by Hydra>"
    return cfg


def validate(cfg: DictConfig) -> dict[str, Any]:
    """The one validation after composition (CLI, sweep planner, train()): every value that decides the result
    resolves and every schema's checks pass. Returns the run's identity."""
    try:
        ident = identity_mod.identity(cfg)
    except (OmegaConfBaseException, RecursionError) as e:
        raise _interpolation_error(e) from None
    cfg = _placeholders(cfg)
    try:
        for path in SCHEMA_NODES:
            node = OmegaConf.select(cfg, path, default=None)
            if isinstance(node, DictConfig) and OmegaConf.get_type(node) not in (dict, None):
                built = OmegaConf.to_object(node)  # builds the dataclasses: their __post_init__ checks run
                if isinstance(built, TrainerConf):
                    trainer_added(built)
                    # launcher=slurm's jobs run on the cluster's nodes: a login node without GPUs plans them
                    if OmegaConf.select(cfg, "launcher.name", default=None) != "slurm" or "SLURM_JOB_ID" in os.environ:
                        trainer_on_this_machine(built)
        if not is_seed(cfg.seed):
            raise UserError(f"seed={cfg.seed!r}: must be an integer in [0, 2^32)")
        if not isinstance(cfg.print_config, bool) and cfg.print_config != "full":
            raise UserError(f"print_config={cfg.print_config!r}: valid: true (the group choices and the keys "
                            f"that differ from their defaults), false, full (the whole config)")
    except (OmegaConfBaseException, ValueError, RecursionError) as e:
        raise user_error(e) from None
    if cfg.finetune_from is not None and not Path(cfg.finetune_from).is_file():
        raise UserError(f"finetune_from={cfg.finetune_from}: no such checkpoint file")
    return ident


def build(node, /, **kwargs):
    """hydra.utils.instantiate, but a component's own UserError comes out as itself (not Hydra's wrapper)."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    try:
        return instantiate(node, **kwargs)
    except InstantiationException as e:
        if isinstance(e.__cause__, UserError):
            raise e.__cause__ from None
        raise


def to_container(cfg: DictConfig) -> dict:
    """Plain, resolved: enums as their names (checkpoints hold only plain types: weights_only loading)."""
    return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True, enum_to_str=True)  # type: ignore[return-value]
