"""train(cfg): one run, start to metrics.json. A plain function: tests call it without @hydra.main."""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any, Optional

import lightning as L
import torch
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.callbacks.early_stopping import EarlyStoppingReason
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from allconv_sweep import config as config_mod
from allconv_sweep import runs
from allconv_sweep.config import build, runtime
from allconv_sweep.config.identity import result_key
from allconv_sweep.console import console, print_job, print_summary, quiet_lightning
from allconv_sweep.errors import RunInterrupted, UserError
from allconv_sweep.interrupts import lightning_handles_signals
from allconv_sweep.model.module import ImageClassifier
from allconv_sweep.model.nets import count_parameters
from allconv_sweep.runs import RunRecord
from allconv_sweep.training import precision
from allconv_sweep.training.callbacks import DivergenceMonitor, Throughput
from allconv_sweep.training.checkpoint_io import AtomicCheckpointIO
from allconv_sweep.training.components import datamodule_from
from allconv_sweep.training.resume import ExactResume, repair_csv

log = logging.getLogger(__name__)

quiet_lightning()

BEST_TEST = "best_val_ckpt_test"  # the best-validation checkpoint's test metrics are logged under this prefix


def _finetune(model: ImageClassifier, path: str) -> None:
    """Load every layer but the class conv (the last conv/linear), whose shape depends on the classes.
    Weights only: a checkpoint is data, never code (torch.load(weights_only=True) refuses pickled objects)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = state.get("state_dict", state) if isinstance(state, dict) else None
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise ValueError("no state_dict of tensors in it")
    except Exception as e:  # noqa: BLE001 - zip, pickle and format errors all mean "not a checkpoint"
        why = " ".join(str(e).split())[:120]
        raise UserError(f"finetune_from={path}: not a checkpoint this tool can load ({type(e).__name__}: {why}); "
                        f"give a <run>/checkpoints/last.ckpt written by python -m allconv_sweep") from None
    convs = [n for n, m in model.net.named_children() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    head = f"net.{convs[-1]}."
    keep = {k: v for k, v in state.items() if k.startswith("net.") and not k.startswith(head)}
    try:
        missing, unexpected = model.load_state_dict(keep, strict=False)
    except RuntimeError as e:  # shape mismatches
        raise UserError(f"finetune_from={path}: layers do not match this model ({str(e).splitlines()[1].strip()[:120]})") from None
    wrong = [k for k in missing if not k.startswith(head)]
    if wrong or unexpected:
        raise UserError(f"finetune_from={path}: layers do not match this model ({(wrong + unexpected)[:3]}...)")


def _unified_precision(value: Any) -> str:
    """The precision as Lightning names it ("32" -> "32-true"), before it adapts it to the device."""
    from lightning.fabric.connector import _convert_precision_to_unified_args

    return str(_convert_precision_to_unified_args(value))


def _readable_checkpoint(path: Path) -> Optional[int]:
    """The epoch a checkpoint was saved at, or None when it cannot be read (truncated, not a checkpoint)."""
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        return int(ck["epoch"]) if isinstance(ck, dict) and "state_dict" in ck and "epoch" in ck else None
    except Exception:  # noqa: BLE001 - any failure means "cannot resume from it"
        return None


def _resume_point(output_dir: Path) -> tuple[Optional[Path], Optional[str]]:
    """(checkpoint to resume from, a note when it is not last.ckpt). A damaged last.ckpt is set aside and
    the run resumes from best.ckpt (a full training state of an earlier epoch) or, failing that, starts
    over; it never stays failed for good."""
    ckpt_dir = output_dir / "checkpoints"
    last = ckpt_dir / "last.ckpt"
    if not last.is_file():
        return None, None
    if _readable_checkpoint(last) is not None:
        return last, None
    aside = output_dir / "last.ckpt.unreadable"  # outside checkpoints/, which a fresh start clears
    os.replace(last, aside)
    best = ckpt_dir / "best.ckpt"
    epoch = _readable_checkpoint(best) if best.is_file() else None
    if epoch is not None:
        return best, f"checkpoints/last.ckpt is unreadable (kept as {aside.name}): resuming from best.ckpt (epoch {epoch + 1})"
    return None, f"checkpoints/last.ckpt is unreadable (kept as {aside.name}) and no earlier checkpoint: starting over"


def _clear(output_dir: Path) -> None:
    """Start a run folder over (resume=false, or a re-run with nothing to resume): the old record,
    checkpoints and CSV log go, so nothing of the old run can be mistaken for the new one's."""
    for name in (runs.METRICS_FILE, runs.RUN_FILE):
        (output_dir / name).unlink(missing_ok=True)
    for name in ("checkpoints", "csv", "tensorboard"):
        shutil.rmtree(output_dir / name, ignore_errors=True)


def _read_bytes(path: Path) -> Optional[bytes]:
    try:
        return path.read_bytes()
    except OSError:
        return None


def _undo_failed_start(output_dir: Path, run_json_before: Optional[bytes]) -> None:
    """A start that wrote run.json and then failed before training (missing data, a Trainer argument
    Lightning refuses) leaves no run.json: a folder with one but neither a result (metrics.json) nor a
    checkpoint to resume would look like a run. A folder with either is a run, and stays as it is."""
    run_json = output_dir / runs.RUN_FILE
    if _read_bytes(run_json) == run_json_before:  # this start did not get as far as writing it
        return
    if (output_dir / runs.METRICS_FILE).exists() or any((output_dir / "checkpoints").glob("*.ckpt")):
        return
    _clear(output_dir)  # what this start wrote (run.json, the loggers' folders); an older run was cleared already


def _start(output_dir: Path, key: str, ident: dict, resuming: bool, overrides: list[str]) -> dict:
    """run.json: written when a run starts; a resume keeps its W&B run id (one W&B run per run folder)."""
    info = runs.read_run_info(output_dir) if resuming else None
    if not info or info.get("result_key") != key:
        import secrets
        info = {"result_key": key, "identity": ident, "overrides": overrides, "started": time.time(),
                "wandb_run_id": secrets.token_hex(8), "starts": 0}
    info["starts"] = int(info.get("starts", 0)) + 1
    runs.write_json(output_dir / runs.RUN_FILE, info)
    return info


def train(cfg: DictConfig) -> dict[str, Any]:
    """Train one network with the config's protocol; write and return its metrics.json record."""
    t_start = time.perf_counter()
    ident = config_mod.validate(cfg)
    output_dir = runs.ensure_writable(Path(cfg.paths.output_dir).resolve())
    key = result_key(ident)
    rank0 = rank_zero_only.rank == 0  # DDP: ranks > 0 (re-launched by Lightning) share rank 0's folder
    folder_lock = runs.lock(output_dir, "run") if rank0 else None
    run_json = _read_bytes(output_dir / runs.RUN_FILE) if rank0 else None
    try:
        return _train(cfg, output_dir, ident, key, t_start, rank0)
    except BaseException:
        if rank0:
            _undo_failed_start(output_dir, run_json)
        raise
    finally:
        if folder_lock is not None:
            folder_lock.release()


def _train(cfg: DictConfig, output_dir: Path, ident: dict, key: str, t_start: float, rank0: bool) -> dict[str, Any]:
    state = runs.run_state(output_dir, key, ident, resume=bool(cfg.resume))
    if state.kind == "done":
        if rank0:
            console.print(f"[green]already finished ({state.record.status}):[/green] {output_dir}/metrics.json; nothing to do")
        return state.record.to_dict()
    if state.kind == "mismatch":
        raise UserError(state.refusal(output_dir))
    resume_from, note = _resume_point(output_dir) if state.kind == "resume" else (None, None)
    if rank0:
        if resume_from is None:
            _clear(output_dir)
        if note:
            console.print(f"[yellow]{note}[/yellow]")
    overrides = runtime.job_overrides()
    info = _start(output_dir, key, ident, resume_from is not None, overrides) if rank0 else {}
    if cfg.print_config and rank0:
        print_job(cfg, overrides, runtime.job_number())
    resolved = config_mod.to_container(cfg)

    # The components the config names, top to bottom: data, network, optimizer and schedule (bound to the
    # parameters and the run's length in configure_optimizers), callbacks, loggers, trainer.
    L.seed_everything(int(cfg.seed), workers=True, verbose=False)
    datamodule = datamodule_from(resolved)
    datamodule.prepare_data()
    datamodule.setup()  # eagerly: a missing file or a bad val_size stops here, before any training
    has_val = datamodule.describe().get("val", 0) > 0
    model = ImageClassifier(build(cfg.model, _convert_="all"), int(cfg.data.num_classes),
                            optimizer=build(cfg.optimizer), scheduler=build(cfg.scheduler), config=resolved,
                            result_key=key)
    if cfg.finetune_from:
        _finetune(model, cfg.finetune_from)
    callbacks = _callbacks(cfg, has_val)
    # always on, not a config entry: the random streams, should_stop, the CSV rows and the time spent so far
    # travel in every checkpoint (resume.py); an interrupted start's record counts its time up to the signal
    prior = state.record.wall_time_s if resume_from is not None and state.record is not None else None
    exact = ExactResume(t_start, prior_s=prior or 0.0)
    callbacks.append(exact)
    if resume_from is not None and rank0:  # the CSV as it stood at the checkpoint, before a logger reads it
        repair_csv(output_dir / "csv" / "metrics.csv", resume_from)
    loggers = [build(node) for node in cfg.logger.values() if node is not None]
    for lg in loggers:  # the config once, flat (W&B's config, TensorBoard's hparams, the CSV's hparams.yaml)
        lg.log_hyperparams(_flat_config(resolved, info))
    chosen = precision.resolve(str(cfg.trainer.precision), str(cfg.trainer.accelerator))
    if str(cfg.trainer.precision) == "auto" and rank0:
        console.print(f"trainer.precision=auto: {chosen.precision} ({chosen.reason})", soft_wrap=True)
    trainer = build(cfg.trainer, callbacks=callbacks, logger=loggers, default_root_dir=str(output_dir),
                    enable_model_summary=False, num_sanity_val_steps=0, precision=chosen.precision,
                    plugins=[AtomicCheckpointIO()],  # a full disk leaves no half checkpoint under its real name
                    # no validation split (data.val_size=0): no empty val loop, no warning about it
                    **({} if has_val else {"limit_val_batches": 0}))
    if str(trainer.precision) != _unified_precision(chosen.precision) and rank0:
        console.print(f"[yellow]trainer.precision={chosen.precision} runs as {trainer.precision} on "
                      f"{trainer.strategy.root_device.type}[/yellow] (Lightning's choice); metrics.json records both")
    if trainer.world_size > 1 and runtime.in_multirun() and not trainer.strategy.cluster_environment.creates_processes_externally:
        # Lightning would re-run this whole command (-m included) once per extra rank: a sweep per rank
        raise UserError("trainer=ddp with several devices is for single runs: drop -m (one job per command), "
                        "or sweep with launcher=slurm, which starts every rank itself")
    used_batch = _used_batch_size(cfg, datamodule, trainer.world_size)
    if used_batch < int(cfg.data.batch_size) and rank0:
        console.print(f"[yellow]data.batch_size={int(cfg.data.batch_size)}: the training split has only {used_batch} "
                      f"images{' per process' if trainer.world_size > 1 else ''}, all of them in each step; "
                      f"metrics.json records batch_size {used_batch}[/yellow]", soft_wrap=True)
    if hasattr(datamodule, "use_device"):  # the in-memory sets live on the device; ImageNet streams from workers
        datamodule.use_device(trainer.strategy.root_device)

    divergence = _find(callbacks, DivergenceMonitor)
    nonfinite = next((c for c in callbacks if isinstance(c, EarlyStopping) and c.check_finite), None)
    best_checkpoint = next((c for c in callbacks if isinstance(c, ModelCheckpoint) and c.monitor), None)
    ckpt_dir = output_dir / "checkpoints"
    record = dict(cfg=cfg, model=model, output_dir=output_dir, key=key, info=info, trainer=trainer,
                  throughput=_find(callbacks, Throughput), divergence=divergence, dm=datamodule, exact=exact,
                  resumed_from=None if resume_from is None else str(resume_from), overrides=overrides,
                  precision_reason=chosen.reason)
    status, reason = "ok", None
    final: dict[str, float] = {}
    try:
        with lightning_handles_signals():
            trainer.fit(model, datamodule=datamodule, ckpt_path=resume_from, weights_only=True)
            status, reason = _status(divergence, nonfinite, int(cfg.data.num_classes))
            final.update(_final_validation(trainer, model, datamodule, has_val))
            final.update(trainer.test(model, datamodule=datamodule, verbose=False)[0])
            best = _best_checkpoint(best_checkpoint, trainer, has_val and status == "ok")
            if best is not None:  # the best-validation checkpoint, when it is not the final model: its weights
                # only (trainer.test(ckpt_path=...) would also restore its callbacks' states over the final ones)
                model.load_state_dict(torch.load(best, map_location="cpu", weights_only=True)["state_dict"])
                model.test_prefix = BEST_TEST
                final.update(trainer.test(model, datamodule=datamodule, verbose=False)[0])
                model.test_prefix = "test"
            elif has_val and status == "ok" and "test/acc" in final:
                final[f"{BEST_TEST}/acc"] = final["test/acc"]  # the final model is the best-validation one
    except UserError:
        raise
    except (SystemExit, KeyboardInterrupt) as e:  # Lightning's answer to SIGTERM (exit 0!) and Ctrl-C (exit 1)
        from lightning.pytorch.utilities.exceptions import SIGTERMException
        sig = "SIGTERM" if isinstance(e, SIGTERMException) else "SIGINT"
        msg = (f"interrupted by {sig} in epoch {trainer.current_epoch + 1}; "
               + ("checkpoints/last.ckpt kept: the same command resumes" if (ckpt_dir / "last.ckpt").is_file()
                  else "no checkpoint yet: the same command starts over"))
        _finish_loggers(trainer, _record(status="interrupted", reason=msg, final={}, **record))
        raise RunInterrupted(sig, msg) from None
    except Exception as e:  # a crash is recorded, then re-raised (non-zero exit)
        # a DataLoader worker's exception arrives wrapped in its traceback text: its last line is the message
        message = [line for line in str(e).splitlines() if line.strip()][-1:] or [""]
        _finish_loggers(trainer, _record(status="failed", reason=f"{type(e).__name__}: {message[0].strip()}",
                                         final={}, **record))
        raise
    metrics = _record(status=status, reason=reason, final=final, **record)
    _finish_loggers(trainer, metrics)
    if trainer.is_global_zero:
        print_summary(metrics)
    return metrics


def _callbacks(cfg: DictConfig, has_val: bool) -> list[L.Callback]:
    """Every entry of the callbacks group, instantiated; without a validation split the checkpoint that
    monitors a validation metric goes (nothing to monitor), and with trainer.enable_progress_bar=false the
    progress bar (Lightning refuses one then)."""
    from lightning.pytorch.callbacks import ProgressBar

    out = []
    for node in cfg.callbacks.values():
        if node is None:
            continue
        if not has_val and str(OmegaConf.select(node, "monitor", default="") or "").startswith("val/"):
            continue
        callback = build(node)
        if isinstance(callback, ProgressBar) and not cfg.trainer.enable_progress_bar:
            continue
        out.append(callback)
    return out


def _find(callbacks: list, kind: type):
    return next((c for c in callbacks if isinstance(c, kind)), None)


def _flat_config(resolved: dict, info: dict) -> dict[str, Any]:
    """The resolved config as flat dotted keys (the layer list is the model's name), plus the run's result
    key and its overrides: what a tracker's runs table compares."""
    from allconv_sweep.training.wandb_run import flatten

    container = {k: v for k, v in resolved.items() if k != "hydra"}
    container["model"] = {k: v for k, v in container["model"].items() if k != "layers"}
    flat = flatten(container)
    flat["result_key"] = info.get("result_key")
    flat["overrides"] = list(info.get("overrides") or [])
    return flat


def _status(divergence: Optional[DivergenceMonitor], nonfinite, num_classes: int) -> tuple[str, Optional[str]]:
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


def _final_validation(trainer: L.Trainer, model: ImageClassifier, dm, has_val: bool) -> dict[str, float]:
    """The final model's validation metrics: those of the fit's last epoch when it validated after
    training the last epoch (the usual case), else one validate() pass (a resumed run that had finished
    fitting, an epoch cut short by an early stop)."""
    if not has_val:
        return {}
    last = model.last_validation
    if last is not None and last[0] == trainer.current_epoch - 1 and last[1] == trainer.global_step:
        return last[2]
    return trainer.validate(model, datamodule=dm, verbose=False)[0]


def _best_checkpoint(checkpoint: Optional[ModelCheckpoint], trainer: L.Trainer, wanted: bool) -> Optional[str]:
    """The best-validation checkpoint when it is another epoch's than the final model's, else None."""
    path = checkpoint.best_model_path if checkpoint is not None else None
    if not wanted or not path or not Path(path).is_file():
        return None
    epoch = _readable_checkpoint(Path(path))
    return None if epoch == trainer.current_epoch - 1 else path


def _used_batch_size(cfg: DictConfig, dm, world_size: int) -> int:
    """data.batch_size, or the training images each process has when they are fewer: one batch is then
    all of them, and that is the batch size the run used (and records)."""
    asked, n = int(cfg.data.batch_size), dm.describe().get("train")
    return min(asked, -(-n // max(1, world_size))) if n else asked


def _err(acc: Optional[float]) -> Optional[float]:
    return None if acc is None else 1.0 - acc


def _slurm_job_id() -> Optional[str]:
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    return f"{array}_{task}" if array and task else os.environ.get("SLURM_JOB_ID")


def _record(*, cfg, model, output_dir, key, info, trainer, throughput, divergence, dm, exact, resumed_from,
            overrides, precision_reason, status, reason, final) -> dict[str, Any]:
    def f(name: str) -> Optional[float]:
        v = final.get(name)
        return None if v is None else float(v)

    train_acc = throughput.train_acc if throughput is not None else None
    val_acc, test_acc, best = f("val/acc"), f("test/acc"), f(f"{BEST_TEST}/acc")
    images_per_s = throughput.images_per_s if throughput is not None else None  # per process (DDP: x world size)
    sizes = dm.describe()
    record = RunRecord(
        status=status, reason=reason, result_key=key,
        model=cfg.model.name, family=cfg.model.get("family"), variant=cfg.model.get("variant"),
        data=cfg.data.name, preprocess=cfg.preprocess.name, augment=cfg.augment.name,
        lr=float(cfg.optimizer.lr), seed=int(cfg.seed), batch_size=_used_batch_size(cfg, dm, trainer.world_size),
        num_params=count_parameters(model.net),
        epochs_run=int(trainer.current_epoch), max_epochs=int(cfg.trainer.max_epochs),
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
        slurm_job_id=_slurm_job_id(),
        wandb_run_id=info.get("wandb_run_id") if any(_is_wandb(lg) for lg in trainer.loggers) else None,
        versions=runs.versions(), git_commit=runs.git_commit(),
    )
    if trainer.is_global_zero:
        runs.write_record(output_dir, record)
    return record.to_dict()


def _is_wandb(logger) -> bool:
    return logger.__class__.__name__ == "WandbLogger"


def _finish_loggers(trainer, metrics: dict) -> None:
    """The run's summary into W&B and its run closed. A failure here (the W&B service killed with the job
    by SLURM's SIGTERM, say) is logged, never raised: it must not replace how the run ended."""
    for lg in trainer.loggers:
        if _is_wandb(lg):
            from allconv_sweep.training.wandb_run import finish_wandb
            try:
                finish_wandb(lg, metrics)
            except Exception as e:  # noqa: BLE001 - see above
                log.warning("could not finish the W&B run (%s: %s); run `wandb sync` on its folder later",
                            type(e).__name__, e)
