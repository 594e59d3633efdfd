"""train(cfg): one run, start to metrics.json. A plain function: tests call it without @hydra.main."""

from __future__ import annotations

import logging
import time
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint, RichProgressBar, TQDMProgressBar
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from allconv_sweep import config as config_mod
from allconv_sweep.callbacks import DivergenceMonitor, Throughput
from allconv_sweep.console import console, print_config_tree, print_summary
from allconv_sweep.data import build_datamodule
from allconv_sweep.errors import UserError
from allconv_sweep.module import ImageClassifier
from allconv_sweep.nets import count_parameters
from allconv_sweep.results import ensure_writable, git_commit, read_metrics, versions, write_metrics

log = logging.getLogger(__name__)

# Lightning's advice lines that do not apply to in-memory tensors
warnings.filterwarnings("ignore", message=".*does not have many workers.*")
warnings.filterwarnings("ignore", message=".*is a sized iterable.*")
warnings.filterwarnings("ignore", message=".*The number of training batches.*")
warnings.filterwarnings("ignore", message=".*treespec, LeafSpec.*")
# Lightning prints through its own handler; without this Hydra's root handler prints every line again
logging.getLogger("lightning.pytorch").propagate = False
logging.getLogger("lightning.fabric").propagate = False


def _loggers(cfg: DictConfig, output_dir: Path, run_name: str):
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    name = cfg.logger.name
    if name == "csv":
        return [CSVLogger(save_dir=str(output_dir), name="csv", version="")]
    if name == "tensorboard":
        return [TensorBoardLogger(save_dir=str(output_dir), name="tensorboard", version=""),
                CSVLogger(save_dir=str(output_dir), name="csv", version="")]
    if name == "wandb":
        from allconv_sweep.wandb_utils import make_wandb_logger
        return [make_wandb_logger(cfg, output_dir, run_name), CSVLogger(save_dir=str(output_dir), name="csv", version="")]
    raise UserError(f"logger={name!r}; valid: csv, tensorboard, wandb")


def _finetune(model: ImageClassifier, path: str) -> None:
    """Load every layer but the class conv (the last conv/linear), whose shape depends on the classes."""
    state = torch.load(path, map_location="cpu", weights_only=False)
    state = state.get("state_dict", state)
    convs = [n for n, m in model.net.named_children() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    head = f"net.{convs[-1]}."
    keep = {k: v for k, v in state.items() if k.startswith("net.") and not k.startswith(head)}
    missing, unexpected = model.load_state_dict(keep, strict=False)
    wrong = [k for k in missing if not k.startswith(head)]
    if wrong or unexpected:
        raise UserError(f"finetune_from={path}: layers do not match this model ({(wrong + unexpected)[:3]}...)")


def _unified_precision(value: Any) -> str:
    """The precision as Lightning names it ("32" -> "32-true"), before it adapts it to the device."""
    from lightning.fabric.connector import _convert_precision_to_unified_args

    return str(_convert_precision_to_unified_args(value))


def run_name(cfg: DictConfig) -> str:
    return f"{cfg.model.name}-{cfg.data.name}-lr{cfg.optimizer.lr}-s{cfg.seed}"


def train(cfg: DictConfig) -> dict[str, Any]:
    """Train one network with the config's protocol; write and return its metrics.json record."""
    t_start = time.perf_counter()
    config_mod.validate(cfg)
    output_dir = Path(cfg.paths.output_dir).resolve()
    ensure_writable(output_dir)
    previous = read_metrics(output_dir)
    if previous and previous.get("status") in ("ok", "diverged") and cfg.resume:
        if rank_zero_only.rank == 0:
            console.print(f"[green]already finished ({previous['status']}):[/green] {output_dir}/metrics.json; nothing to do")
        return previous
    if cfg.print_config and rank_zero_only.rank == 0:  # DDP: ranks > 0 (re-launched by Lightning) stay quiet
        print_config_tree(cfg)
    resolved = config_mod.to_container(cfg)

    L.seed_everything(int(cfg.seed), workers=True, verbose=False)
    dm = build_datamodule(resolved)  # by data.name: in-memory CIFAR/fake, or ImageNet JPEG folders
    dm.prepare_data()
    dm.setup()  # eagerly: a missing file or a bad val_size stops here, before any training
    model = ImageClassifier(resolved)
    if cfg.finetune_from:
        _finetune(model, cfg.finetune_from)

    ckpt_dir = output_dir / "checkpoints"
    has_val = dm.describe().get("val", 0) > 0
    # Two callbacks: Lightning >= 2.5 writes save_last only in epochs that also saved a top-k checkpoint,
    # but resuming after preemption needs the latest epoch every time.
    checkpoint = ModelCheckpoint(dirpath=str(ckpt_dir), filename="best", monitor="val/acc" if has_val else None,
                                 mode="max", save_top_k=1 if has_val else 0)
    last_checkpoint = ModelCheckpoint(dirpath=str(ckpt_dir), filename="last", monitor=None, save_top_k=1,
                                      enable_version_counter=False)
    divergence = DivergenceMonitor(int(cfg.data.num_classes), **resolved["divergence"])
    throughput = Throughput()
    tcfg = dict(resolved["trainer"])
    callbacks = [checkpoint, last_checkpoint, divergence, throughput]
    if tcfg.pop("enable_progress_bar", True):
        callbacks.append(RichProgressBar() if console.is_terminal else TQDMProgressBar(refresh_rate=50))
        enable_pb = True
    else:
        enable_pb = False
    trainer = L.Trainer(default_root_dir=str(output_dir), logger=_loggers(cfg, output_dir, run_name(cfg)),
                        callbacks=callbacks, enable_progress_bar=enable_pb, enable_model_summary=False,
                        num_sanity_val_steps=0, **{k: v for k, v in tcfg.items() if v is not None or k == "gradient_clip_val"})
    if str(trainer.precision) != _unified_precision(cfg.trainer.precision) and rank_zero_only.rank == 0:
        console.print(f"[yellow]trainer.precision={cfg.trainer.precision} runs as {trainer.precision} on "
                      f"{trainer.strategy.root_device.type}[/yellow] (Lightning's choice); metrics.json records both")
    if trainer.world_size > 1 and _in_multirun() and not trainer.strategy.cluster_environment.creates_processes_externally:
        # Lightning would re-run this whole command (-m included) once per extra rank: a sweep per rank
        raise UserError("trainer=ddp with several devices is for single runs: drop -m (one job per command), "
                        "or sweep with launcher=slurm, which starts every rank itself")
    if hasattr(dm, "use_device"):  # the in-memory sets live on the device; ImageNet streams from workers
        dm.use_device(trainer.strategy.root_device)

    last = ckpt_dir / "last.ckpt"
    resumed_from = str(last) if cfg.resume and last.is_file() else None
    status, reason = "ok", None
    try:
        trainer.fit(model, datamodule=dm, ckpt_path=resumed_from)
        train_acc = trainer.callback_metrics.get("train/acc")  # before validate/test reset the metrics
        if divergence.reason:
            status, reason = "diverged", divergence.reason
        final = {}
        if has_val:
            final.update(trainer.validate(model, datamodule=dm, verbose=False)[0])
        final.update(trainer.test(model, datamodule=dm, verbose=False)[0])
        best_test = None
        if has_val and checkpoint.best_model_path and status == "ok":
            best_test = trainer.test(model, datamodule=dm, ckpt_path=checkpoint.best_model_path,
                                     verbose=False)[0]["test/acc"]
    except UserError:
        raise
    except Exception as e:  # a crash is recorded, then re-raised (non-zero exit)
        metrics = _record(cfg, model, output_dir, "failed", f"{type(e).__name__}: {e}", trainer, throughput,
                          t_start, {}, None, None, resumed_from)
        raise
    metrics = _record(cfg, model, output_dir, status, reason, trainer, throughput, t_start, final,
                      best_test, None if train_acc is None else float(train_acc), resumed_from)
    _finish_loggers(trainer, metrics)
    if trainer.is_global_zero:
        print_summary(metrics)
    return metrics


def _err(acc):
    return None if acc is None else 1.0 - acc


def _record(cfg, model, output_dir, status, reason, trainer, throughput, t_start, final, best_test,
            train_acc, resumed_from) -> dict[str, Any]:
    val_acc, test_acc = final.get("val/acc"), final.get("test/acc")
    images_per_s = throughput.images_per_s  # per process; DDP ranks step in lockstep: x world_size = global
    metrics = {
        "status": status, "reason": reason,
        "model": cfg.model.name, "family": cfg.model.get("family"), "variant": cfg.model.get("variant"),
        "data": cfg.data.name, "preprocess": cfg.preprocess.name, "augment": cfg.augment.name,
        "lr": float(cfg.optimizer.lr), "seed": int(cfg.seed), "batch_size": int(cfg.data.batch_size),
        "num_params": count_parameters(model.net),
        "epochs_run": int(trainer.current_epoch), "max_epochs": int(cfg.trainer.max_epochs),
        "train_acc": train_acc, "train_error": _err(train_acc),
        "val_acc": val_acc, "val_error": _err(val_acc),
        "test_acc": test_acc, "test_error": _err(test_acc),
        "best_val_test_acc": best_test, "best_val_test_error": _err(best_test),
        "wall_time_s": time.perf_counter() - t_start,
        "val_acc_top5": final.get("val/acc_top5"), "test_acc_top5": final.get("test/acc_top5"),
        "train_images_per_s": None if images_per_s is None else images_per_s * trainer.world_size,
        "world_size": trainer.world_size,  # batch_size is per device: the global batch is batch_size x world_size
        "resumed_from": resumed_from,
        "output_dir": str(output_dir),
        "overrides": _overrides(),
        # what ran, which is not always what was asked: Lightning runs 16-mixed as bf16-mixed on a CPU
        "device": str(trainer.strategy.root_device), "precision": str(trainer.precision),
        "precision_requested": str(cfg.trainer.precision),
        "versions": versions(), "git_commit": git_commit(),
    }
    if trainer.is_global_zero:
        write_metrics(output_dir, metrics)
    return metrics


def _in_multirun() -> bool:
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode
        return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
    except Exception:  # noqa: BLE001 - no Hydra (tests, notebooks)
        return False


def _overrides() -> list[str]:
    try:
        from hydra.core.hydra_config import HydraConfig
        return list(HydraConfig.get().overrides.task)
    except Exception:  # noqa: BLE001 - called without Hydra (tests, notebooks)
        return []


def _finish_loggers(trainer, metrics: dict) -> None:
    for lg in trainer.loggers:
        if lg.__class__.__name__ == "WandbLogger":
            from allconv_sweep.wandb_utils import finish_wandb
            finish_wandb(lg, metrics)
