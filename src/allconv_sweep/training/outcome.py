"""How a run ended, as its record (metrics.json, sent to the trackers); a job failed before training too."""

import logging
import os
from pathlib import Path
from typing import Any, Optional

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.callbacks.early_stopping import EarlyStoppingReason
from omegaconf import DictConfig, OmegaConf

from allconv_sweep import config as config_mod
from allconv_sweep import runs
from allconv_sweep.config import runtime
from allconv_sweep.config.identity import result_key
from allconv_sweep.errors import UserError
from allconv_sweep.model.module import ImageClassifier
from allconv_sweep.model.nets import count_parameters
from allconv_sweep.model.schedule import drop_epochs
from allconv_sweep.runs import RunRecord
from allconv_sweep.training import precision
from allconv_sweep.training.callbacks import DivergenceMonitor
from allconv_sweep.training.run_folder import readable_checkpoint
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


def final_validation(trainer: L.Trainer, model: ImageClassifier, dm, has_val: bool) -> dict[str, float]:
    """The final model's validation metrics: the fit's last validation if no training step came after it."""
    if not has_val:
        return {}
    last = model.last_validation
    if last is not None and last[0] == trainer.current_epoch - 1 and last[1] == trainer.global_step:
        return last[2]
    return trainer.validate(model, datamodule=dm, verbose=False)[0]


def best_val_checkpoint(checkpoint: Optional[ModelCheckpoint], trainer: L.Trainer, wanted: bool) -> Optional[str]:
    """The best-validation checkpoint when it is another epoch's than the final model's, else None."""
    path = checkpoint.best_model_path if checkpoint is not None else None
    if not wanted or not path or not Path(path).is_file():
        return None
    return None if readable_checkpoint(Path(path)) == trainer.current_epoch - 1 else path


def used_batch_size(cfg: DictConfig, dm, world_size: int) -> int:
    """data.batch_size, or the training images each process has when they are fewer (one batch is all)."""
    asked, n = int(cfg.data.batch_size), dm.describe().get("train")
    return min(asked, -(-n // max(1, world_size))) if n else asked


def _err(acc: Optional[float]) -> Optional[float]:
    return None if acc is None else 1.0 - acc


def _from_config(cfg: DictConfig) -> dict[str, Any]:
    """The record's fields that the config alone gives: all that a job failed before training has."""
    def get(path: str, kind=lambda v: v):
        v = OmegaConf.select(cfg, path, default=None)
        return None if v is None else kind(v)

    return dict(model=get("model.name"), family=get("model.family"), variant=get("model.variant"),
                data=get("data.name"), preprocess=get("preprocess.name"), augment=get("augment.name"),
                lr=get("optimizer.lr", float), seed=get("seed", int), max_epochs=get("trainer.max_epochs", int))


def record_run(*, cfg, model, output_dir, key, info, trainer, throughput, divergence, dm, exact, resumed_from,
               overrides, precision_reason, status, reason, final) -> dict[str, Any]:
    f = {name: float(v) for name, v in final.items() if v is not None}.get  # a final metric, or None
    train_acc = throughput.train_acc if throughput is not None else None
    val_acc, test_acc, best = f("val/acc"), f("test/acc"), f(f"{BEST_TEST}/acc")
    images_per_s = throughput.images_per_s if throughput is not None else None  # per process (DDP: x world size)
    sizes, s = dm.describe(), cfg.scheduler
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    record = RunRecord(
        status=status, reason=reason, result_key=key, **_from_config(cfg),
        batch_size=used_batch_size(cfg, dm, trainer.world_size), num_params=count_parameters(model.net),
        epochs_run=int(trainer.current_epoch), steps_per_epoch=getattr(model, "steps_per_epoch", None),
        lr_drop_epochs=None if s.get("milestones") is None else drop_epochs(
            list(s.milestones), int(s.of_epochs), int(cfg.trainer.max_epochs), int(trainer.current_epoch)),
        train_size=sizes.get("train"), val_size=sizes.get("val", 0), test_size=sizes.get("test"),
        images_seen=divergence.images_seen if divergence is not None else None,
        train_acc=train_acc, train_error=_err(train_acc), val_acc=val_acc, val_error=_err(val_acc),
        test_acc=test_acc, test_error=_err(test_acc), best_val_test_acc=best, best_val_test_error=_err(best),
        val_acc_top5=f("val/acc_top5"), test_acc_top5=f("test/acc_top5"), val_live_fraction=f("val/live_fraction"),
        **exact.wall_times(),  # over all starts (resumed: up to the checkpoint or signal), and this one's
        train_images_per_s=None if images_per_s is None else images_per_s * trainer.world_size,
        world_size=trainer.world_size, resumed_from=resumed_from, output_dir=str(output_dir), overrides=overrides,
        # what ran, which is not always what was asked: Lightning runs 16-mixed as bf16-mixed on a CPU
        device=str(trainer.strategy.root_device), precision=str(trainer.precision),
        precision_requested=str(cfg.trainer.precision), precision_reason=precision_reason,
        cpu=precision.read_cpu().describe() if trainer.strategy.root_device.type == "cpu" else None,
        slurm_job_id=f"{array}_{task}" if array and task else os.environ.get("SLURM_JOB_ID"),
        wandb_run_id=info.get("wandb_run_id") if any(_is_wandb(lg) for lg in trainer.loggers) else None,
        versions=runs.versions(), git_commit=runs.git_commit(),
    )
    if trainer.is_global_zero:
        runs.write_record(output_dir, record)
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


def _is_wandb(logger) -> bool:
    return any(c.__name__ == "WandbLogger" for c in type(logger).__mro__)  # wandb_run's subclass too


def finish_loggers(trainer, metrics: dict) -> None:
    """The run's summary into W&B; a failure (its service killed by SLURM, say) is logged, never raised."""
    for lg in trainer.loggers:
        if _is_wandb(lg):
            try:
                finish_wandb(lg, metrics)
            except Exception as e:  # noqa: BLE001 - see above
                log.warning("could not finish the W&B run (%s: %s); run `wandb sync` on its folder later",
                            type(e).__name__, e)
