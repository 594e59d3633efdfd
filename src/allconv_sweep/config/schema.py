"""The one schema: a dataclass per config-group option, stored in Hydra's ConfigStore as schema/<group>/<option>
and named by each YAML file's defaults list (`- /schema/optimizer/sgd@_here_`). OmegaConf checks the types and
Enum choices at every merge; the range checks (__post_init__, made of values.py's checks) run in validate().
conf/ keeps the values and why; this file the types and limits, and no values (every field is MISSING)."""

from __future__ import annotations

import typing
from dataclasses import dataclass
from enum import Enum
from typing import Any, Callable, List, Optional

from omegaconf import MISSING

from allconv_sweep.config.values import (
    AUTO_OR_BOOL,
    COUNT,
    INT,
    NONNEGATIVE,
    POSITIVE,
    batch_limit,
    check_fields,
    one_of,
    trainer_devices,
    within,
)

MIN_IMAGE_SIZE = 59  # all_cnn_imagenet: conv9 (3x3, stride 2, unpadded) needs a 3x3 map

# model.init (allconv_sweep.model.nets.init_weights says each law). The functional form: a name may hold a dot.
INITS = ("caffe_xavier", "caffe_msra", "xavier_uniform", "normal_0.05")
Init = Enum("Init", {name: name for name in INITS}, type=str)
# model.head: conv, the paper's 1x1 class conv + global average; fc, global average + a linear layer
Head = Enum("Head", {name: name for name in ("conv", "fc")}, type=str)

# trainer.precision: Lightning's names (and its integer aliases 32, 16), plus auto (allconv_sweep.training.precision)
PRECISIONS = ("32-true", "32", "bf16-mixed", "16-mixed", "bf16-true", "auto")


SCHEMAS: dict[str, Any] = {}  # group/option: its dataclass (stored as schema/<group>/<option>)


@typing.dataclass_transform()
def _schema(*paths: str, node: str = "", **checks: Callable[[Any, str], None]) -> Callable[[type], type]:
    """A dataclass, the schema of the config options at `paths` (group/option). Its __post_init__ runs its
    parent's, then each field's check(value, "<node>.<field>") (node: the options' group), then its own."""
    def store(cls: type) -> type:
        parent, own = getattr(super(cls, cls), "__post_init__", None), cls.__dict__.get("__post_init__")

        def post_init(self: Any) -> None:
            if parent is not None:
                parent(self)
            check_fields(self, node or paths[0].split("/")[0], **checks)
            if own is not None:
                own(self)

        cls.__post_init__ = post_init  # type: ignore[attr-defined]
        SCHEMAS.update(dict.fromkeys(paths, dataclass(cls)))
        return cls
    return store


@_schema("preprocess/plain", "augment/plain", "launcher/local")
class NamedConf:
    """An option known by its name alone (preprocess=none, augment=none, launcher=local); the base of others."""
    name: str = MISSING


@_schema("model/network")
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


@_schema(node="data", num_classes=INT, batch_size=INT, eval_batch_size=INT, val_size=COUNT, num_workers=COUNT,
         split_seed=COUNT, on_device=AUTO_OR_BOOL)
class _InMemoryData(NamedConf):
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
        if self.classes is not None and len(self.classes) != self.num_classes:
            raise ValueError(f"data.classes has {len(self.classes)} classes but data.num_classes={self.num_classes}: "
                             f"set data.num_classes={len(self.classes)}")


@_schema("data/cifar")
class CifarDataConf(_InMemoryData):
    _target_: str = MISSING
    root: str = MISSING
    download: bool = MISSING
    verify: bool = MISSING


@_schema("data/fake", total_classes=INT, train_size=INT, test_size=INT, noise=NONNEGATIVE)
class FakeDataConf(_InMemoryData):
    _target_: str = MISSING
    total_classes: int = MISSING
    train_size: int = MISSING
    test_size: int = MISSING
    noise: float = MISSING


@_schema("data/imagenet", num_classes=INT, batch_size=INT, eval_batch_size=INT, image_size=INT, resize=INT,
         prefetch_factor=INT, num_workers=COUNT, max_per_class=INT)
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
        if self.image_size < MIN_IMAGE_SIZE:
            raise ValueError(f"data.image_size={self.image_size}: the ImageNet network needs at least {MIN_IMAGE_SIZE}")
        if self.resize < self.image_size:
            raise ValueError(f"data.resize={self.resize} < data.image_size={self.image_size}: the centre crop "
                             f"must fit (ImageNet's usual pair is 256 / 224)")
        check_fields(self, "data", pin_memory=AUTO_OR_BOOL)
        if not (len(self.mean) == len(self.std) == 3 and min(self.std) > 0):
            raise ValueError(f"data.mean={list(self.mean)} / data.std={list(self.std)}: need 3 values each (RGB), std > 0")


@_schema("preprocess/gcn_zca", gcn_scale=POSITIVE, zca_filter_bias=NONNEGATIVE)
class GcnZcaConf(NamedConf):
    gcn_scale: float = MISSING
    zca_filter_bias: float = MISSING


@_schema("augment/flip_translate", max_shift=COUNT)
class FlipTranslateConf(NamedConf):
    flip: bool = MISSING
    max_shift: int = MISSING


@_schema("augment/random_resized_crop")
class RandomResizedCropConf(NamedConf):
    scale: List[float] = MISSING
    ratio: List[float] = MISSING
    flip: bool = MISSING

    def __post_init__(self) -> None:
        for key in ("scale", "ratio"):
            lo_hi = list(getattr(self, key))
            if len(lo_hi) != 2 or not 0 < lo_hi[0] <= lo_hi[1]:
                raise ValueError(f"augment.{key}={lo_hi}: must be [low, high] with 0 < low <= high")


@_schema("optimizer/sgd", lr=POSITIVE, momentum=within(0, 1, high_open=True), weight_decay=NONNEGATIVE)
class SGDConf:
    _target_: str = MISSING
    _partial_: bool = MISSING
    lr: float = MISSING
    momentum: float = MISSING
    weight_decay: float = MISSING
    nesterov: bool = MISSING

    def __post_init__(self) -> None:
        if self.nesterov and self.momentum == 0:
            raise ValueError("optimizer.nesterov=true needs optimizer.momentum > 0")


@_schema("optimizer/adam", lr=POSITIVE)
class AdamConf:
    _target_: str = MISSING
    _partial_: bool = MISSING
    lr: float = MISSING
    betas: List[float] = MISSING
    eps: float = MISSING
    weight_decay: float = MISSING

    def __post_init__(self) -> None:
        if len(self.betas) != 2:
            raise ValueError(f"optimizer.betas={list(self.betas)}: must be two numbers in [0, 1)")
        for b in self.betas:
            within(0, 1, high_open=True)(b, "optimizer.betas")
        check_fields(self, "optimizer", eps=POSITIVE, weight_decay=NONNEGATIVE)


@_schema("scheduler/multistep", of_epochs=INT, gamma=within(0, 1, low_open=True), warmup_epochs=NONNEGATIVE)
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
        for m in self.milestones:
            NONNEGATIVE(m, "scheduler.milestones")


@_schema("trainer/lightning")
class TrainerConf:
    """Lightning Trainer arguments; another one: add it here and to conf/trainer/, or give +trainer.<arg>=..."""
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
        from lightning.pytorch.accelerators import AcceleratorRegistry
        from lightning.pytorch.strategies import StrategyRegistry

        accelerators = ("auto", "gpu", *sorted(AcceleratorRegistry.available_accelerators()))
        check_fields(self, "trainer", max_epochs=INT, precision=one_of(*PRECISIONS), num_nodes=INT,
                     log_every_n_steps=INT, check_val_every_n_epoch=INT, accumulate_grad_batches=INT,
                     gradient_clip_val=POSITIVE, limit_train_batches=batch_limit, limit_val_batches=batch_limit,
                     limit_test_batches=batch_limit, accelerator=one_of(*accelerators, what="accelerator"),
                     strategy=one_of("auto", *StrategyRegistry.available_strategies(), what="strategy"),
                     devices=trainer_devices)


@_schema("callbacks/divergence", node="callbacks.divergence", dead_output_fraction=within(0, 1),
         dead_output_images=INT, chance_images=INT, chance_margin=within(-1, 1))
class DivergenceConf:
    """callbacks.divergence: allconv_sweep.training.callbacks.DivergenceMonitor."""
    _target_: str = MISSING
    num_classes: int = MISSING
    dead_output_fraction: float = MISSING
    dead_output_images: Optional[int] = MISSING
    chance_images: Optional[int] = MISSING
    chance_margin: float = MISSING


@_schema("callbacks/nonfinite")
class NonFiniteStopConf:
    """callbacks.nonfinite: Lightning's EarlyStopping for check_finite alone (a NaN/inf loss stops the run)."""
    _target_: str = MISSING
    monitor: str = MISSING
    check_finite: bool = MISSING
    check_on_train_epoch_end: bool = MISSING
    patience: int = MISSING
    mode: str = MISSING
    verbose: bool = MISSING


@_schema("logger/wandb", node="logger.wandb", mode=one_of(
    None, "online", "offline", "disabled", shown="null (online with credentials), online, offline, disabled"))
class WandbConf:
    _target_: str = MISSING
    save_dir: str = MISSING
    project: str = MISSING
    entity: Optional[str] = MISSING
    group: Optional[str] = MISSING
    name: Optional[str] = MISSING
    tags: List[str] = MISSING
    mode: Optional[str] = MISSING


@_schema("tracking/default")
class TrackingConf:
    """How runs are grouped and named in experiment trackers (W&B); sweeps set these."""
    group: Optional[str] = MISSING
    run_name: Optional[str] = MISSING
    tags: List[str] = MISSING


@_schema("launcher/gpus", n_jobs=INT, jobs_per_gpu=INT)
class GpusLauncherConf(NamedConf):
    n_jobs: Optional[int] = MISSING
    jobs_per_gpu: int = MISSING
    lease_dir: str = MISSING


@_schema("launcher/slurm", gpus_per_job=COUNT, cpus_per_task=INT, mem_gb=INT, timeout_min=INT, array_parallelism=INT,
         max_requeues=COUNT)
class SlurmLauncherConf(NamedConf):
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


@_schema("paths/default")
class PathsConf:
    output_dir: str = MISSING
    cache_dir: Optional[str] = MISSING


def is_seed(value: Any) -> bool:
    """The top-level seed (conf/config.yaml; a record's): an integer in [0, 2^32)."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**32
