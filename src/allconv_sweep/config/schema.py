"""The one schema: a structured config (dataclass) per config-group option, registered in Hydra's ConfigStore
under schema/<group>/<option> and named by each YAML file's defaults list (`- /schema/optimizer/sgd@_here_`).

OmegaConf checks types and choices (Enum fields) whenever a value is merged: at composition, for the
command line, the sweep planner and tests alike, and a string from ${oc.env:X,0.05} becomes the float it
says. The range checks are each dataclass's __post_init__, run by validate() (OmegaConf.to_object builds the
dataclasses) once after composition. Every failure becomes one line naming the key, the value and what is
valid (config.user_error).

The YAML files keep the values and the comments that say why (conf/); this file keeps the types and limits,
and no values: every field is MISSING (each option's YAML sets it; a field no YAML set would fail loudly).
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import math
from dataclasses import dataclass
from enum import Enum
from typing import Any, List, Optional

from omegaconf import MISSING

MIN_IMAGE_SIZE = 59  # all_cnn_imagenet: conv9 (3x3, stride 2, unpadded) needs a 3x3 map
MAX_INT = 2**31 - 1  # sizes and counts beyond this are typos (and overflow torch's int32 indexing)


# model.init (allconv_sweep.model.nets.init_weights says each law). The functional form: a name may hold a dot.
INITS = ("caffe_xavier", "caffe_msra", "xavier_uniform", "normal_0.05")
Init = Enum("Init", {name: name for name in INITS}, type=str)


class Head(str, Enum):
    conv = "conv"   # the paper's 1x1 class conv + global average
    fc = "fc"       # global average + a linear layer


# trainer.precision: Lightning's names (and its integer aliases 32, 16), plus auto (allconv_sweep.training.precision)
PRECISIONS = ("32-true", "32", "bf16-mixed", "16-mixed", "bf16-true", "auto")


# ------------------------------------------------------------------------------------------------ checks

def _positive(value: Any, key: str, integer: bool = False, zero: bool = False) -> None:
    what = ("an integer" if integer else "a finite number") + (" >= 0" if zero else " > 0")
    bad = isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not isinstance(value, int))
    if bad or not math.isfinite(value) or value < 0 or (value == 0 and not zero) or (integer and value > MAX_INT):
        raise ValueError(f"{key}={value!r}: must be {what}" + (f" up to {MAX_INT}" if integer else ""))


def _within(value: Any, key: str, low: float, high: float, low_open: bool = False, high_open: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
    if not ok:
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise ValueError(f"{key}={value!r}: must be in {interval}")


def _auto_or_bool(value: Any, key: str) -> None:
    if value not in ("auto", True, False):
        raise ValueError(f"{key}={value!r}; valid: auto, true, false")


# ------------------------------------------------------------------------------------------------- model

@dataclass
class ModelConf:
    """conf/model/*.yaml + conf/model_options/default.yaml; instantiate(cfg.model) -> the network."""
    _target_: str = MISSING
    name: str = MISSING
    family: Optional[str] = MISSING
    variant: Optional[str] = MISSING
    layers: List[Any] = MISSING
    final_relu: bool = MISSING
    init: Init = MISSING
    batch_norm: bool = MISSING
    head: Head = MISSING
    channels_last: bool = MISSING
    compile: bool = MISSING


# -------------------------------------------------------------------------------------------------- data

@dataclass
class _InMemoryData:
    name: str = MISSING
    num_classes: int = MISSING
    image_size: int = MISSING
    val_size: int = MISSING
    split_seed: int = MISSING
    classes: Optional[List[int]] = MISSING
    batch_size: int = MISSING
    eval_batch_size: int = MISSING
    on_device: Any = MISSING
    num_workers: int = MISSING

    def __post_init__(self) -> None:
        _positive(self.num_classes, "data.num_classes", integer=True)
        _positive(self.batch_size, "data.batch_size", integer=True)
        _positive(self.eval_batch_size, "data.eval_batch_size", integer=True)
        _positive(self.val_size, "data.val_size", integer=True, zero=True)
        _positive(self.num_workers, "data.num_workers", integer=True, zero=True)
        _positive(self.split_seed, "data.split_seed", integer=True, zero=True)
        _auto_or_bool(self.on_device, "data.on_device")
        if self.classes is not None and len(self.classes) != self.num_classes:
            raise ValueError(f"data.classes has {len(self.classes)} classes but data.num_classes={self.num_classes}: "
                             f"set data.num_classes={len(self.classes)}")


@dataclass
class CifarDataConf(_InMemoryData):
    _target_: str = MISSING
    root: str = MISSING
    download: bool = MISSING
    verify: bool = MISSING


@dataclass
class FakeDataConf(_InMemoryData):
    _target_: str = MISSING
    total_classes: int = MISSING
    train_size: int = MISSING
    test_size: int = MISSING
    noise: float = MISSING

    def __post_init__(self) -> None:
        super().__post_init__()
        _positive(self.total_classes, "data.total_classes", integer=True)
        _positive(self.train_size, "data.train_size", integer=True)
        _positive(self.test_size, "data.test_size", integer=True)
        _positive(self.noise, "data.noise", zero=True)


@dataclass
class ImageNetDataConf:
    _target_: str = MISSING
    name: str = MISSING
    num_classes: int = MISSING
    max_per_class: Optional[int] = MISSING
    root: str = MISSING
    train_dir: str = MISSING
    val_dir: str = MISSING
    test_dir: str = MISSING
    image_size: int = MISSING
    resize: int = MISSING
    mean: List[float] = MISSING
    std: List[float] = MISSING
    batch_size: int = MISSING
    eval_batch_size: int = MISSING
    num_workers: int = MISSING
    pin_memory: Any = MISSING
    persistent_workers: bool = MISSING
    prefetch_factor: int = MISSING

    def __post_init__(self) -> None:
        for key in ("num_classes", "batch_size", "eval_batch_size", "image_size", "resize", "prefetch_factor"):
            _positive(getattr(self, key), f"data.{key}", integer=True)
        _positive(self.num_workers, "data.num_workers", integer=True, zero=True)
        if self.max_per_class is not None:
            _positive(self.max_per_class, "data.max_per_class", integer=True)
        if self.image_size < MIN_IMAGE_SIZE:
            raise ValueError(f"data.image_size={self.image_size}: the ImageNet network needs at least {MIN_IMAGE_SIZE}")
        if self.resize < self.image_size:
            raise ValueError(f"data.resize={self.resize} < data.image_size={self.image_size}: the centre crop "
                             f"must fit (ImageNet's usual pair is 256 / 224)")
        _auto_or_bool(self.pin_memory, "data.pin_memory")
        if not (len(self.mean) == len(self.std) == 3 and min(self.std) > 0):
            raise ValueError(f"data.mean={list(self.mean)} / data.std={list(self.std)}: need 3 values each (RGB), std > 0")


# ------------------------------------------------------------------------------ preprocessing, augmentation

@dataclass
class PreprocessConf:
    name: str = MISSING


@dataclass
class GcnZcaConf(PreprocessConf):
    gcn_scale: float = MISSING
    zca_filter_bias: float = MISSING

    def __post_init__(self) -> None:
        _positive(self.gcn_scale, "preprocess.gcn_scale")
        _positive(self.zca_filter_bias, "preprocess.zca_filter_bias", zero=True)


@dataclass
class AugmentConf:
    name: str = MISSING


@dataclass
class FlipTranslateConf(AugmentConf):
    flip: bool = MISSING
    max_shift: int = MISSING

    def __post_init__(self) -> None:
        _positive(self.max_shift, "augment.max_shift", integer=True, zero=True)


@dataclass
class RandomResizedCropConf(AugmentConf):
    scale: List[float] = MISSING
    ratio: List[float] = MISSING
    flip: bool = MISSING

    def __post_init__(self) -> None:
        for key in ("scale", "ratio"):
            lo_hi = list(getattr(self, key))
            if len(lo_hi) != 2 or not 0 < lo_hi[0] <= lo_hi[1]:
                raise ValueError(f"augment.{key}={lo_hi}: must be [low, high] with 0 < low <= high")


# ------------------------------------------------------------------------------------ optimizer, schedule

@dataclass
class SGDConf:
    _target_: str = MISSING
    _partial_: bool = MISSING
    lr: float = MISSING
    momentum: float = MISSING
    weight_decay: float = MISSING
    nesterov: bool = MISSING

    def __post_init__(self) -> None:
        _positive(self.lr, "optimizer.lr")
        _within(self.momentum, "optimizer.momentum", 0, 1, high_open=True)
        _positive(self.weight_decay, "optimizer.weight_decay", zero=True)
        if self.nesterov and self.momentum == 0:
            raise ValueError("optimizer.nesterov=true needs optimizer.momentum > 0")


@dataclass
class AdamConf:
    _target_: str = MISSING
    _partial_: bool = MISSING
    lr: float = MISSING
    betas: List[float] = MISSING
    eps: float = MISSING
    weight_decay: float = MISSING

    def __post_init__(self) -> None:
        _positive(self.lr, "optimizer.lr")
        if len(self.betas) != 2:
            raise ValueError(f"optimizer.betas={list(self.betas)}: must be two numbers in [0, 1)")
        for b in self.betas:
            _within(b, "optimizer.betas", 0, 1, high_open=True)
        _positive(self.eps, "optimizer.eps")
        _positive(self.weight_decay, "optimizer.weight_decay", zero=True)


@dataclass
class MultiStepScheduleConf:
    """scheduler=multistep: allconv_sweep.model.schedule.paper_schedule (that name is in every run's recorded
    _target_, hence in its result key: renaming it would orphan every finished run)."""
    _target_: str = MISSING
    _partial_: bool = MISSING
    milestones: List[float] = MISSING
    of_epochs: int = MISSING
    gamma: float = MISSING
    warmup_epochs: float = MISSING

    def __post_init__(self) -> None:
        _positive(self.of_epochs, "scheduler.of_epochs", integer=True)
        _within(self.gamma, "scheduler.gamma", 0, 1, low_open=True)
        _positive(self.warmup_epochs, "scheduler.warmup_epochs", zero=True)
        for m in self.milestones:
            _positive(m, "scheduler.milestones", zero=True)


# --------------------------------------------------------------------------------------------- trainer

@dataclass
class TrainerConf:
    """Lightning Trainer arguments (instantiate(cfg.trainer, callbacks=..., logger=...)). Another Trainer
    argument: add it here and to conf/trainer/default.yaml, or give it as +trainer.<argument>=<value>
    (check_added holds it to Trainer's signature). validate() runs __post_init__, check_added, and
    check_machine where the run will run."""
    _target_: str = MISSING
    max_epochs: int = MISSING
    accelerator: str = MISSING
    devices: Any = MISSING
    num_nodes: int = MISSING
    strategy: str = MISSING
    sync_batchnorm: bool = MISSING
    precision: str = MISSING
    deterministic: bool = MISSING
    benchmark: Optional[bool] = MISSING
    gradient_clip_val: Optional[float] = MISSING
    accumulate_grad_batches: int = MISSING
    log_every_n_steps: int = MISSING
    limit_train_batches: Optional[float] = MISSING
    limit_val_batches: Optional[float] = MISSING
    limit_test_batches: Optional[float] = MISSING
    check_val_every_n_epoch: int = MISSING
    enable_progress_bar: bool = MISSING

    def __post_init__(self) -> None:
        _positive(self.max_epochs, "trainer.max_epochs", integer=True)
        if str(self.precision) not in PRECISIONS:
            raise ValueError(f"trainer.precision={self.precision!r}; valid: {', '.join(PRECISIONS)}")
        _positive(self.num_nodes, "trainer.num_nodes", integer=True)
        _positive(self.log_every_n_steps, "trainer.log_every_n_steps", integer=True)
        _positive(self.check_val_every_n_epoch, "trainer.check_val_every_n_epoch", integer=True)
        _positive(self.accumulate_grad_batches, "trainer.accumulate_grad_batches", integer=True)
        if self.gradient_clip_val is not None:
            _positive(self.gradient_clip_val, "trainer.gradient_clip_val")
        for key in ("limit_train_batches", "limit_val_batches", "limit_test_batches"):
            _batch_limit(getattr(self, key), f"trainer.{key}")
        _choice(self.accelerator, "trainer.accelerator", "accelerator", ("auto", "gpu", *_lightning_names("accelerators")))
        _choice(self.strategy, "trainer.strategy", "strategy", ("auto", *_lightning_names("strategies")))
        _devices(self.devices)

    def check_added(self) -> None:
        """The keys added to the trainer group (+trainer.<key>=...; OmegaConf sets them on the object after
        __post_init__): arguments of lightning.pytorch.Trainer of its types, none that train() sets itself."""
        from lightning.pytorch import Trainer

        fields = {f.name for f in dataclasses.fields(self)}
        params = inspect.signature(Trainer.__init__).parameters
        valid = sorted(p for p in params if p != "self" and p not in TRAINER_SET_BY_TOOL)
        for key, value in vars(self).items():
            if key in fields:
                continue
            if key in TRAINER_SET_BY_TOOL:
                raise ValueError(f"trainer.{key}: set by allconv_sweep itself (train.py); "
                                 f"it cannot be given: drop +trainer.{key}")
            if key not in params or key == "self":
                close = difflib.get_close_matches(key, valid, n=1)
                hint = f"did you mean {close[0]}? " if close else ""
                raise ValueError(f"trainer.{key}: no such key; {hint}valid keys in trainer "
                                 f"(lightning.pytorch.Trainer's arguments): {', '.join(valid)}")
            annotation = params[key].annotation
            if not _fits(value, annotation):
                raise ValueError(f"trainer.{key}={value!r}: must be {_describe(annotation)} "
                                 f"(lightning.pytorch.Trainer's {key})")
            low = TRAINER_ADDED_MINIMUM.get(key)
            if low is not None and isinstance(value, (int, float)) and not isinstance(value, bool) and value < low:
                raise ValueError(f"trainer.{key}={value!r}: must be >= {low}")
            if key in ("limit_predict_batches", "overfit_batches"):
                _batch_limit(value, f"trainer.{key}")

    def check_machine(self) -> None:
        """The accelerator and devices exist on this machine (call only where the run will run: a SLURM
        sweep's jobs run on the cluster's nodes, not where the sweep is planned)."""
        here = _accelerators_here()
        valid = ["auto", "cpu"] + (["gpu", "cuda"] if "cuda" in here else ["gpu", "mps"] if "mps" in here else [])
        valid += ["tpu"] if "tpu" in here else []
        wanted = str(self.accelerator)
        kind = {"gpu": "mps" if "mps" in here and "cuda" not in here else "cuda",
                "auto": next((k for k in ("tpu", "mps", "cuda") if k in here), "cpu")}.get(wanted, wanted)
        if kind not in here:
            what = {"cuda": "GPU (CUDA)", "tpu": "TPU (torch_xla)", "mps": "Apple GPU (MPS)"}.get(kind, kind)
            raise ValueError(f"trainer.accelerator={wanted}: this machine has no {what}; valid here: {', '.join(valid)}")
        devices = self.devices
        if isinstance(devices, str) and devices.strip().lstrip("-").isdigit():
            devices = int(devices)
        if kind == "cpu" and not (devices == "auto" or (isinstance(devices, int) and devices >= 1)):
            raise ValueError(f"trainer.devices={self.devices!r}: on a CPU, the number of processes (1, 2, ...) or auto")
        if kind == "cuda":
            import torch

            count = torch.cuda.device_count()
            indices = (devices if isinstance(devices, list)
                       else [int(p) for p in devices.split(",") if p.strip()] if isinstance(devices, str) and devices != "auto"
                       else [])
            if (isinstance(devices, int) and devices > count) or any(i >= count for i in indices):
                raise ValueError(f"trainer.devices={self.devices!r}: this machine has {count} GPU(s); "
                                 f"valid here: auto, -1 (all), a count up to {count}, or indices 0..{count - 1}")


# ----------------------------------------------------------------------------------------- trainer checks

# Trainer arguments train() passes itself (train.py): a value given for one would be silently replaced
TRAINER_SET_BY_TOOL = ("callbacks", "logger", "default_root_dir", "enable_model_summary", "num_sanity_val_steps",
                       "plugins")
# added Trainer arguments with a lower bound Lightning checks only when it is built
TRAINER_ADDED_MINIMUM = {"fast_dev_run": 0, "min_epochs": 0, "min_steps": 0, "max_steps": -1,
                         "reload_dataloaders_every_n_epochs": 0}


def _batch_limit(value: Any, key: str) -> None:
    """Lightning's limit_*_batches: a fraction of the batches in [0, 1], or a whole number of batches."""
    if value is None:
        return
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (value > 1 and value % 1 != 0):
        shown = f"{value:g}" if ok else repr(value)
        raise ValueError(f"{key}={shown}: must be a fraction in [0, 1] or a whole number of batches (2, 3, ...)")


def _lightning_names(kind: str) -> tuple[str, ...]:
    if kind == "accelerators":
        from lightning.pytorch.accelerators import AcceleratorRegistry
        return tuple(sorted(AcceleratorRegistry.available_accelerators()))
    from lightning.pytorch.strategies import StrategyRegistry
    return tuple(StrategyRegistry.available_strategies())


def _choice(value: Any, key: str, what: str, options: tuple[str, ...]) -> None:
    if value not in options:
        close = difflib.get_close_matches(str(value), options, n=1)
        hint = f"did you mean {close[0]}? " if close else ""
        raise ValueError(f"{key}={value}: no such {what}; {hint}valid: {', '.join(options)}")


def _devices(value: Any) -> None:
    """Lightning's devices: auto, a count (-1: all), "0,1", or a list of device indices."""
    text = value.strip() if isinstance(value, str) else None
    ok = (text == "auto"
          or (text is not None and text.lstrip("-").isdigit() and (int(text) >= 1 or int(text) == -1))
          or (text is not None and "," in text and all(p.strip().isdigit() for p in text.split(",") if p.strip()))
          or (isinstance(value, int) and not isinstance(value, bool) and (value >= 1 or value == -1))
          or (isinstance(value, list) and value and len(set(value)) == len(value)
              and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in value)))
    if not ok:
        raise ValueError(f"trainer.devices={value!r}: must be auto, a device count (1, 2, ...; -1: all of them) "
                         f"or a list of distinct device indices such as [0, 1]")


def _accelerators_here() -> set[str]:
    from lightning.pytorch.accelerators import AcceleratorRegistry

    here = set()
    for name, entry in AcceleratorRegistry.items():
        try:
            if entry["accelerator"].is_available():
                here.add(name)
        except Exception:  # noqa: BLE001 - a probe that fails means "not here"
            pass
    return here | {"cpu"}


def _fits(value: Any, annotation: Any) -> bool:
    """Whether a config value (int, float, bool, str, None, list, dict) is of a Trainer argument's type; a
    class (an Accelerator, a timedelta) is nothing a config value can be."""
    import collections.abc
    import typing

    if annotation is inspect.Parameter.empty or annotation is Any or isinstance(annotation, str):
        return True
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Union:
        return any(_fits(value, a) for a in args)
    if origin is typing.Literal:
        return any(value == a and type(value) is type(a) for a in args)
    if annotation is type(None):
        return value is None
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is str:
        return isinstance(value, str)
    if origin in (list, collections.abc.Iterable, collections.abc.Sequence):
        return isinstance(value, list) and all(_fits(v, args[0]) for v in value) if args else isinstance(value, list)
    if origin is dict or annotation is dict:
        return isinstance(value, dict)
    return False


def _describe(annotation: Any) -> str:
    import typing

    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Union:
        parts = [_describe(a) for a in args]
        return " or ".join(dict.fromkeys(p for p in parts if p))
    if origin is typing.Literal:
        return "one of " + ", ".join(map(repr, args))
    if annotation is type(None):
        return "null"
    if annotation in (bool, int, float, str):
        return {bool: "true/false", int: "an integer", float: "a number", str: "a string"}[annotation]
    if origin in (list, dict):
        return f"a {origin.__name__}"
    return ""  # a class: nothing a config value can be


# ------------------------------------------------------------------------------------- callbacks, loggers

@dataclass
class DivergenceConf:
    """callbacks.divergence: allconv_sweep.training.callbacks.DivergenceMonitor."""
    _target_: str = MISSING
    num_classes: int = MISSING
    dead_output_fraction: float = MISSING
    dead_output_images: Optional[int] = MISSING
    chance_images: Optional[int] = MISSING
    chance_margin: float = MISSING

    def __post_init__(self) -> None:
        _within(self.dead_output_fraction, "callbacks.divergence.dead_output_fraction", 0, 1)
        for key in ("dead_output_images", "chance_images"):
            if getattr(self, key) is not None:
                _positive(getattr(self, key), f"callbacks.divergence.{key}", integer=True)
        _within(self.chance_margin, "callbacks.divergence.chance_margin", -1, 1)


@dataclass
class NonFiniteStopConf:
    """callbacks.nonfinite: Lightning's EarlyStopping, used only for check_finite (a NaN/inf training loss
    stops the run at the epoch's end; patience never runs out)."""
    _target_: str = MISSING
    monitor: str = MISSING
    check_finite: bool = MISSING
    check_on_train_epoch_end: bool = MISSING
    patience: int = MISSING
    mode: str = MISSING
    verbose: bool = MISSING


@dataclass
class WandbConf:
    _target_: str = MISSING
    save_dir: str = MISSING
    project: str = MISSING
    entity: Optional[str] = MISSING
    group: Optional[str] = MISSING
    name: Optional[str] = MISSING
    tags: List[str] = MISSING
    mode: Optional[str] = MISSING

    def __post_init__(self) -> None:
        if self.mode not in (None, "online", "offline", "disabled"):
            raise ValueError(f"logger.wandb.mode={self.mode!r}; valid: null (online with credentials), online, offline, disabled")


@dataclass
class TrackingConf:
    """How runs are grouped and named in experiment trackers (W&B); sweeps set these."""
    group: Optional[str] = MISSING
    run_name: Optional[str] = MISSING
    tags: List[str] = MISSING


# ------------------------------------------------------------------------------------------- launchers

@dataclass
class LocalLauncherConf:
    name: str = MISSING


@dataclass
class GpusLauncherConf:
    name: str = MISSING
    n_jobs: Optional[int] = MISSING
    jobs_per_gpu: int = MISSING
    lease_dir: str = MISSING

    def __post_init__(self) -> None:
        if self.n_jobs is not None:
            _positive(self.n_jobs, "launcher.n_jobs", integer=True)
        _positive(self.jobs_per_gpu, "launcher.jobs_per_gpu", integer=True)


@dataclass
class SlurmLauncherConf:
    name: str = MISSING
    partition: Optional[str] = MISSING
    gpus_per_job: int = MISSING
    cpus_per_task: int = MISSING
    mem_gb: int = MISSING
    timeout_min: int = MISSING
    array_parallelism: int = MISSING
    max_requeues: int = MISSING
    account: Optional[str] = MISSING
    qos: Optional[str] = MISSING
    constraint: Optional[str] = MISSING

    def __post_init__(self) -> None:
        _positive(self.gpus_per_job, "launcher.gpus_per_job", integer=True, zero=True)
        for key in ("cpus_per_task", "mem_gb", "timeout_min", "array_parallelism"):
            _positive(getattr(self, key), f"launcher.{key}", integer=True)
        _positive(self.max_requeues, "launcher.max_requeues", integer=True, zero=True)


@dataclass
class PathsConf:
    output_dir: str = MISSING
    cache_dir: Optional[str] = MISSING


# -------------------------------------------------------------------------------------------- top level

@dataclass
class RunConf:
    """The keys at the top of conf/config.yaml (checked by validate(); the groups have their own)."""
    seed: int
    resume: bool
    finetune_from: Optional[str]
    print_config: bool | str

    def __post_init__(self) -> None:
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed < 2**32:
            raise ValueError(f"seed={self.seed!r}: must be an integer in [0, 2^32)")
        if not isinstance(self.print_config, bool) and self.print_config != "full":
            raise ValueError(f"print_config={self.print_config!r}: valid: true (the group choices and the keys "
                             f"that differ from their defaults), false, full (the whole config)")


SCHEMAS: dict[str, Any] = {
    "model/network": ModelConf,
    "data/cifar": CifarDataConf, "data/fake": FakeDataConf, "data/imagenet": ImageNetDataConf,
    "preprocess/plain": PreprocessConf, "preprocess/gcn_zca": GcnZcaConf,
    "augment/plain": AugmentConf, "augment/flip_translate": FlipTranslateConf,
    "augment/random_resized_crop": RandomResizedCropConf,
    "optimizer/sgd": SGDConf, "optimizer/adam": AdamConf,
    "scheduler/multistep": MultiStepScheduleConf,
    "trainer/lightning": TrainerConf,
    "callbacks/divergence": DivergenceConf, "callbacks/nonfinite": NonFiniteStopConf,
    "logger/wandb": WandbConf,
    "launcher/local": LocalLauncherConf, "launcher/gpus": GpusLauncherConf, "launcher/slurm": SlurmLauncherConf,
    "paths/default": PathsConf, "tracking/default": TrackingConf,
}


def register() -> None:
    """Put every schema in Hydra's ConfigStore as schema/<group>/<name> (idempotent)."""
    from hydra.core.config_store import ConfigStore

    cs = ConfigStore.instance()
    for path, node in SCHEMAS.items():
        group, name = path.split("/")
        cs.store(group=f"schema/{group}", name=name, node=node, provider="allconv_sweep")
