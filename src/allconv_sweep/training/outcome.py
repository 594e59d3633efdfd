"""A run folder's lifecycle (resume point, start over, run.json, undoing a failed start, whole checkpoints) and
how its run ended, as its record (metrics.json, sent to the trackers); a job failed before training too."""

import logging
import os
import secrets
import shutil
import time
from contextlib import suppress
from pathlib import Path
from typing import Any, Optional

import lightning as L
import torch
from lightning.pytorch.callbacks.early_stopping import EarlyStoppingReason
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.plugins.io import TorchCheckpointIO
from omegaconf import DictConfig, OmegaConf

from allconv_sweep import config as config_mod
from allconv_sweep import runs
from allconv_sweep.atomic import atomic_write
from allconv_sweep.config import runtime
from allconv_sweep.config.identity import result_key
from allconv_sweep.errors import UserError
from allconv_sweep.model.module import ImageClassifier
from allconv_sweep.model.nets import count_parameters
from allconv_sweep.model.schedule import drop_epochs
from allconv_sweep.runs import RunRecord
from allconv_sweep.training import precision
from allconv_sweep.training.callbacks import DivergenceMonitor, Throughput
from allconv_sweep.training.wandb_run import finish_wandb

log = logging.getLogger(__name__)

BEST_TEST = "best_val_ckpt_test"  # the best-validation checkpoint's test metrics are logged under this prefix


def run_status(divergence: Optional[DivergenceMonitor], nonfinite, num_classes: int) -> tuple[str, Optional[str]]:
    """ok, or diverged with the reason (a result either way: exit 0)."""
    if divergence is not None and divergence.reason:
        return "diverged", divergence.reason
    # stopping_reason, not stopped_epoch: a NaN in the first epoch stops at epoch 0
    if nonfinite is not None and nonfinite.stopping_reason == EarlyStoppingReason.NON_FINITE_METRIC:
        return "diverged", nonfinite.stopping_reason_message
    if divergence is not None and divergence.dead_at_end:  # died before the window closed: not an ok result
        return "diverged", (f"final ReLU dead at the end: {divergence.live_fraction:.1%} of images had any class "
                            f"score > 0 (loss at ln {num_classes})")
    return "ok", None


def failure_reason(exc: BaseException) -> str:
    """The last line (a DataLoader worker's error comes inside its traceback), named by its type unless a UserError."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    last = lines[-1] if lines else ""
    return last if isinstance(exc, UserError) else f"{type(exc).__name__}: {last}".rstrip(": ")


def final_metrics(trainer: L.Trainer, model: ImageClassifier, dm, has_val: bool, ok: bool) -> dict[str, float]:
    """The final model's validation (the fit's last one if no training step came after it) and test metrics, and
    the best-validation checkpoint's test metrics when it is another epoch's than the final model's."""
    final, last = {}, model.last_validation
    if has_val and last is not None and last[:2] == (trainer.current_epoch - 1, trainer.global_step):
        final.update(last[2])
    elif has_val:
        final.update(trainer.validate(model, datamodule=dm, verbose=False)[0])
    final.update(trainer.test(model, datamodule=dm, verbose=False)[0])
    checkpoint = next((c for c in trainer.checkpoint_callbacks if c.monitor), None)
    path = checkpoint.best_model_path if checkpoint is not None and has_val and ok else None
    if path and Path(path).is_file() and readable_checkpoint(Path(path)) != trainer.current_epoch - 1:
        # its weights only (trainer.test(ckpt_path=...) would also restore its callbacks' states over the final ones)
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True)["state_dict"])
        model.test_prefix = BEST_TEST
        final.update(trainer.test(model, datamodule=dm, verbose=False)[0])
        model.test_prefix = "test"
    elif has_val and ok and "test/acc" in final:
        final[f"{BEST_TEST}/acc"] = final["test/acc"]  # the final model is the best-validation one
    return final


def _from_config(cfg: DictConfig) -> dict[str, Any]:
    """The record's fields that the config alone gives: all that a job failed before training has."""
    def get(path: str, kind=lambda v: v):
        v = OmegaConf.select(cfg, path, default=None)
        return None if v is None else kind(v)

    return dict(model=get("model.name"), family=get("model.family"), variant=get("model.variant"),
                data=get("data.name"), preprocess=get("preprocess.name"), augment=get("augment.name"),
                lr=get("optimizer.lr", float), seed=get("seed", int), max_epochs=get("trainer.max_epochs", int))


def record_run(cfg, trainer, model, dm, *, output_dir, key, info, exact, resumed_from, overrides, precision_reason,
               batch_size, status, reason, final) -> dict[str, Any]:
    """metrics.json written (rank 0), the trackers told; the record returned."""
    throughput, divergence = (next((c for c in trainer.callbacks if isinstance(c, kind)), None)
                              for kind in (Throughput, DivergenceMonitor))
    f = {name: float(v) for name, v in final.items() if v is not None}.get  # a final metric, or None
    accs = {"train": throughput.train_acc if throughput is not None else None, "val": f("val/acc"),
            "test": f("test/acc"), "best_val_test": f(f"{BEST_TEST}/acc")}
    images_per_s = throughput.images_per_s if throughput is not None else None  # per process (DDP: x world size)
    sizes, s = dm.describe(), cfg.scheduler
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    record = RunRecord(
        status=status, reason=reason, result_key=key, **_from_config(cfg),
        batch_size=batch_size, num_params=count_parameters(model.net),
        epochs_run=int(trainer.current_epoch), steps_per_epoch=getattr(model, "steps_per_epoch", None),
        lr_drop_epochs=None if s.get("milestones") is None else drop_epochs(
            list(s.milestones), int(s.of_epochs), int(cfg.trainer.max_epochs), int(trainer.current_epoch)),
        train_size=sizes.get("train"), val_size=sizes.get("val", 0), test_size=sizes.get("test"),
        images_seen=divergence.images_seen if divergence is not None else None,
        **{f"{k}_acc": acc for k, acc in accs.items()},
        **{f"{k}_error": None if acc is None else 1.0 - acc for k, acc in accs.items()},
        val_acc_top5=f("val/acc_top5"), test_acc_top5=f("test/acc_top5"), val_live_fraction=f("val/live_fraction"),
        **exact.wall_times(),  # over all starts (resumed: up to the checkpoint or signal), and this one's
        train_images_per_s=None if images_per_s is None else images_per_s * trainer.world_size,
        world_size=trainer.world_size, resumed_from=resumed_from, output_dir=str(output_dir), overrides=overrides,
        # what ran, which is not always what was asked: Lightning runs 16-mixed as bf16-mixed on a CPU
        device=str(trainer.strategy.root_device), precision=str(trainer.precision),
        precision_requested=str(cfg.trainer.precision), precision_reason=precision_reason,
        cpu=precision.read_cpu().describe() if trainer.strategy.root_device.type == "cpu" else None,
        slurm_job_id=f"{array}_{task}" if array and task else os.environ.get("SLURM_JOB_ID"),
        wandb_run_id=info.get("wandb_run_id") if any(isinstance(lg, WandbLogger) for lg in trainer.loggers) else None,
        versions=runs.versions(), git_commit=runs.git_commit(),
    )
    if trainer.is_global_zero:
        runs.write_record(output_dir, record)
    finish_wandb(trainer.loggers, record.to_dict())
    return record.to_dict()


def metrics_stamp(cfg: DictConfig):
    """What the job's metrics.json is now (None: absent), to tell later whether the job wrote one."""
    try:
        st = (Path(str(cfg.paths.output_dir)) / runs.METRICS_FILE).stat()
        return (st.st_ino, st.st_mtime_ns, st.st_size)
    except (OSError, ValueError, TypeError, KeyError):
        return None


def record_failure(cfg: DictConfig, exc: BaseException, before) -> None:
    """A sweep job that failed before train() recorded anything gets metrics.json with status failed (else
    the report could not tell it from a job never started): never into a folder of another config's run,
    nor one another process holds, and a record this start wrote (a failure inside fit) stays."""
    try:
        out = Path(str(cfg.paths.output_dir)).resolve()
        if metrics_stamp(cfg) != before:  # train() wrote its own record (a failure inside fit)
            return
        key = result_key(config_mod.validate(cfg))
        record = runs.read_record(out)
        if any(k not in (None, key) for k in ((runs.read_run_info(out) or {}).get("result_key"),
                                              record.result_key if record is not None else None)):
            return  # the folder holds another config's run: the job was refused there, nothing of it ran
        lock = runs.lock(out, "run")
    except Exception:  # noqa: BLE001 - cannot tell it is ours: the report shows the job as missing instead
        return
    try:
        runs.write_record(out, RunRecord(status="failed", reason=failure_reason(exc), result_key=key,
                                         **_from_config(cfg), output_dir=str(out), overrides=runtime.job_overrides()))
    except Exception:  # noqa: BLE001 - the job's own error is what its log shows
        log.exception("could not record the failure in metrics.json")
    finally:
        lock.release()


def readable_checkpoint(path: Path) -> Optional[int]:
    """The epoch a checkpoint was saved at, or None when it cannot be read (truncated, not a checkpoint)."""
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        return int(ck["epoch"]) if isinstance(ck, dict) and "state_dict" in ck and "epoch" in ck else None
    except Exception:  # noqa: BLE001 - any failure means "cannot resume from it"
        return None


def resume_point(output_dir: Path) -> tuple[Optional[Path], Optional[str]]:
    """(checkpoint to resume from, a note when it is not last.ckpt). A damaged last.ckpt is set aside: the run
    resumes from best.ckpt (a full training state too) or starts over, never stays failed for good."""
    last = output_dir / "checkpoints" / "last.ckpt"
    if not last.is_file():
        return None, None
    if readable_checkpoint(last) is not None:
        return last, None
    aside = output_dir / "last.ckpt.unreadable"  # outside checkpoints/, which a fresh start clears
    os.replace(last, aside)
    best = last.with_name("best.ckpt")
    epoch = readable_checkpoint(best) if best.is_file() else None
    if epoch is not None:
        return best, (f"checkpoints/last.ckpt is unreadable (kept as {aside.name}): resuming from best.ckpt "
                      f"(epoch {epoch + 1})")
    return None, f"checkpoints/last.ckpt is unreadable (kept as {aside.name}) and no earlier checkpoint: starting over"


def clear(output_dir: Path) -> None:
    """Start a run folder over: nothing of the old run (record, checkpoints, logs) stays to be mistaken."""
    for name in (runs.METRICS_FILE, runs.RUN_FILE):
        (output_dir / name).unlink(missing_ok=True)
    for name in ("checkpoints", "csv", "tensorboard"):
        shutil.rmtree(output_dir / name, ignore_errors=True)


def read_bytes(path: Path) -> Optional[bytes]:
    with suppress(OSError):
        return path.read_bytes()
    return None


def undo_failed_start(output_dir: Path, run_json_before: Optional[bytes]) -> None:
    """A start that failed before training leaves no run.json, unless the folder has a result or checkpoint."""
    if read_bytes(output_dir / runs.RUN_FILE) == run_json_before:  # this start did not get as far as writing it
        return
    if not (output_dir / runs.METRICS_FILE).exists() and not any((output_dir / "checkpoints").glob("*.ckpt")):
        clear(output_dir)  # what this start wrote; an older run was cleared already


def start(output_dir: Path, key: str, ident: dict, resuming: bool, overrides: list[str]) -> dict:
    """run.json: written when a run starts; a resume keeps its W&B run id (one W&B run per run folder)."""
    info = runs.read_run_info(output_dir) if resuming else None
    if not info or info.get("result_key") != key:
        info = {"result_key": key, "identity": ident, "overrides": overrides, "started": time.time(),
                "wandb_run_id": secrets.token_hex(8), "starts": 0}
    info["starts"] = int(info.get("starts", 0)) + 1
    runs.write_json(output_dir / runs.RUN_FILE, info)
    return info


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints written whole (atomic_write): Lightning's stage in the temp folder and move, a copy that a
    full disk leaves truncated across file systems."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Optional[Any] = None) -> None:
        if storage_options is not None or "://" in str(path):  # remote storage: Lightning's own way
            return super().save_checkpoint(checkpoint, path, storage_options)
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(path) as f:
            torch.save(checkpoint, f)
