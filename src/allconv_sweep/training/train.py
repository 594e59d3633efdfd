"""train(cfg): one run, start to metrics.json. A plain function: tests call it without @hydra.main."""

import time
from functools import partial
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.connector import _convert_precision_to_unified_args as unified_precision  # "32": "32-true"
from lightning.pytorch.callbacks import ProgressBar
from lightning.pytorch.utilities import rank_zero_only
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf

from allconv_sweep import config as config_mod
from allconv_sweep import runs
from allconv_sweep.config import build, runtime
from allconv_sweep.config.identity import result_key
from allconv_sweep.console import console, print_job, print_summary, quiet_lightning
from allconv_sweep.errors import RunInterrupted, UserError
from allconv_sweep.interrupts import lightning_handles_signals
from allconv_sweep.model.module import ImageClassifier
from allconv_sweep.model.nets import conv_layer_names
from allconv_sweep.training import outcome, precision
from allconv_sweep.training.callbacks import DivergenceMonitor
from allconv_sweep.training.components import datamodule_from, flat_config
from allconv_sweep.training.config_view import print_config
from allconv_sweep.training.resume import ExactResume, repair_csv

quiet_lightning()


def _finetune(model: ImageClassifier, path: str) -> None:
    """Every layer's weights but the class conv's (its shape depends on the classes); weights only."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = state.get("state_dict", state) if isinstance(state, dict) else None
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise ValueError("no state_dict of tensors in it")
    except Exception as e:  # noqa: BLE001 - zip, pickle and format errors all mean "not a checkpoint"
        why = " ".join(str(e).split())[:120]
        raise UserError(f"finetune_from={path}: not a checkpoint this tool can load ({type(e).__name__}: {why}); "
                        f"give a <run>/checkpoints/last.ckpt written by python -m allconv_sweep") from None
    head = f"net.{conv_layer_names(model.net)[-1]}."
    # the source's class layer goes too: a 1x1 class conv's weights do not fit an FC head, nor the reverse
    theirs = [k[:-len("weight")] for k, v in state.items()
              if k.startswith("net.") and k.endswith(".weight") and v.dim() > 1]
    keep = {k: v for k, v in state.items() if k.startswith("net.") and not k.startswith((head, *theirs[-1:]))}
    try:
        missing, unexpected = model.load_state_dict(keep, strict=False)
    except RuntimeError as e:  # shape mismatches
        raise UserError(f"finetune_from={path}: layers do not match this model "
                        f"({str(e).splitlines()[1].strip()[:120]})") from None
    wrong = [k for k in missing if not k.startswith(head)]
    if wrong or unexpected:
        raise UserError(f"finetune_from={path}: layers do not match this model ({(wrong + unexpected)[:3]}...)")


def train(cfg: DictConfig) -> dict[str, Any]:
    """Train one network with the config's protocol; write and return its metrics.json record."""
    t_start = time.perf_counter()
    ident = config_mod.validate(cfg)
    output_dir = runs.ensure_writable(Path(cfg.paths.output_dir).resolve())
    rank0 = rank_zero_only.rank == 0  # DDP: ranks > 0 (re-launched by Lightning) share rank 0's folder
    folder_lock = runs.lock(output_dir, "run") if rank0 else None
    run_json = outcome.read_bytes(output_dir / runs.RUN_FILE) if rank0 else None
    try:
        return _train(cfg, output_dir, ident, result_key(ident), t_start, rank0)
    except BaseException:
        if rank0:
            outcome.undo_failed_start(output_dir, run_json)
        raise
    finally:
        if folder_lock is not None:
            folder_lock.release()


def _train(cfg: DictConfig, output_dir: Path, ident: dict, key: str, t_start: float, rank0: bool) -> dict[str, Any]:
    say = console.print if rank0 else (lambda *args, **kwargs: None)  # DDP ranks > 0 stay quiet
    state = runs.run_state(output_dir, key, ident, resume=bool(cfg.resume))
    if state.kind == "done":
        say(f"[green]already finished ({state.record.status}):[/green] {output_dir}/metrics.json; nothing to do")
        return state.record.to_dict()
    if state.kind == "mismatch":
        raise UserError(state.refusal(output_dir))
    resume_from, note = outcome.resume_point(output_dir) if state.kind == "resume" else (None, None)
    if rank0 and resume_from is None:
        outcome.clear(output_dir)
    if note:
        say(f"[yellow]{note}[/yellow]")
    overrides = runtime.job_overrides()
    info = outcome.start(output_dir, key, ident, resume_from is not None, overrides) if rank0 else {}
    if cfg.print_config and rank0 and (job := runtime.job_number()) is not None:
        print_job(overrides, job)  # a sweep's job: one line (the sweep showed its config once)
    elif cfg.print_config and rank0:
        print_config(cfg)
    resolved = config_mod.to_container(cfg)
    L.seed_everything(int(cfg.seed), workers=True, verbose=False)
    datamodule = datamodule_from(resolved)
    datamodule.prepare_data()
    datamodule.setup()  # eagerly: a missing file or a bad val_size stops here, before any training
    has_val = datamodule.describe().get("val", 0) > 0
    # the optimizer and schedule: partials, bound to the parameters and the run's length in configure_optimizers
    model = ImageClassifier(build(cfg.model, _convert_="all"), int(cfg.data.num_classes),
                            optimizer=build(cfg.optimizer), scheduler=build(cfg.scheduler), config=resolved,
                            result_key=key)
    if cfg.finetune_from:
        _finetune(model, cfg.finetune_from)
    callbacks = _callbacks(cfg, has_val)
    # always on: what Lightning's checkpoints leave out; an interrupted start's record counts its time
    prior = state.record.wall_time_s if resume_from is not None and state.record is not None else None
    callbacks.append(exact := ExactResume(t_start, prior_s=prior or 0.0))
    if resume_from is not None and rank0:  # the CSV as it stood at the checkpoint, before a logger reads it
        repair_csv(output_dir / "csv" / "metrics.csv", resume_from)
    loggers = [build(node) for node in cfg.logger.values() if node is not None]
    for lg in loggers:  # the config once, flat (W&B's config, TensorBoard's hparams, the CSV's hparams.yaml)
        lg.log_hyperparams(flat_config(resolved, info))
    chosen = precision.resolve(str(cfg.trainer.precision), str(cfg.trainer.accelerator))
    if str(cfg.trainer.precision) == "auto":
        say(f"trainer.precision=auto: {chosen.precision} ({chosen.reason})", soft_wrap=True)
    trainer = build(cfg.trainer, callbacks=callbacks, logger=loggers, default_root_dir=str(output_dir),
                    enable_model_summary=False, num_sanity_val_steps=0, precision=chosen.precision,
                    plugins=[outcome.AtomicCheckpointIO()],
                    **({} if has_val else {"limit_val_batches": 0}))  # data.val_size=0: no empty val loop
    if str(trainer.precision) != str(unified_precision(chosen.precision)):
        say(f"[yellow]trainer.precision={chosen.precision} runs as {trainer.precision} on "
            f"{trainer.strategy.root_device.type}[/yellow] (Lightning's choice); metrics.json records both")
    if (trainer.world_size > 1 and runtime.in_multirun()
            and not trainer.strategy.cluster_environment.creates_processes_externally):
        # Lightning would re-run this whole command (-m included) once per extra rank: a sweep per rank
        raise UserError("trainer=ddp with several devices is for single runs: drop -m (one job per command), "
                        "or sweep with launcher=slurm, which starts every rank itself")
    # data.batch_size, or the training images each process has when they are fewer (one batch is all)
    asked, n_train = int(cfg.data.batch_size), datamodule.describe().get("train")
    used_batch = min(asked, -(-n_train // trainer.world_size)) if n_train else asked
    if used_batch < asked:
        say(f"[yellow]data.batch_size={asked}: the training split has only {used_batch} images"
            f"{' per process' if trainer.world_size > 1 else ''}, all of them in each step; "
            f"metrics.json records batch_size {used_batch}[/yellow]", soft_wrap=True)
    if hasattr(datamodule, "use_device"):  # the in-memory sets live on the device; ImageNet streams from workers
        datamodule.use_device(trainer.strategy.root_device)

    divergence = next((c for c in callbacks if isinstance(c, DivergenceMonitor)), None)
    nonfinite = next((c for c in trainer.early_stopping_callbacks if c.check_finite), None)
    finish = partial(outcome.record_run, cfg, trainer, model, datamodule, output_dir=output_dir, key=key, info=info,
                     exact=exact, overrides=overrides, precision_reason=chosen.reason, batch_size=used_batch,
                     resumed_from=None if resume_from is None else str(resume_from))
    try:
        with lightning_handles_signals():
            trainer.fit(model, datamodule=datamodule, ckpt_path=resume_from, weights_only=True)
            status, reason = outcome.run_status(divergence, nonfinite, int(cfg.data.num_classes))
            final = outcome.final_metrics(trainer, model, datamodule, has_val, status == "ok")
    except UserError:
        raise
    except (SystemExit, KeyboardInterrupt) as e:  # Lightning's answer to SIGTERM (exit 0!) and Ctrl-C (exit 1)
        sig = "SIGTERM" if isinstance(e, SIGTERMException) else "SIGINT"
        msg = (f"interrupted by {sig} in epoch {trainer.current_epoch + 1}; "
               + ("checkpoints/last.ckpt kept: the same command resumes"
                  if (output_dir / "checkpoints" / "last.ckpt").is_file()
                  else "no checkpoint yet: the same command starts over"))
        finish(status="interrupted", reason=msg, final={})
        raise RunInterrupted(sig, msg) from None
    except Exception as e:  # a crash is recorded, then re-raised (non-zero exit)
        finish(status="failed", reason=outcome.failure_reason(e), final={})
        raise
    metrics = finish(status=status, reason=reason, final=final)
    if trainer.is_global_zero:
        print_summary(metrics)
    return metrics


def _callbacks(cfg: DictConfig, has_val: bool) -> list[L.Callback]:
    """The callbacks group, less a val/ monitor without a validation split and a disabled progress bar."""
    built = [build(node) for node in cfg.callbacks.values() if node is not None and (
        has_val or not str(OmegaConf.select(node, "monitor", default="") or "").startswith("val/"))]
    return [c for c in built if cfg.trainer.enable_progress_bar or not isinstance(c, ProgressBar)]
