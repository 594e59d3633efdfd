"""Exact resume: what a checkpoint carries besides Lightning's own state, so that a run killed at any moment
and started again with the same command ends with the same numbers (and the same CSV log) as the run never
interrupted.

Lightning restores the weights, the optimizer, the schedule, the loops' counters and every callback's
state_dict; it does not restore the random streams, ``trainer.should_stop``, or the log row it writes right
after the epoch-end checkpoint. ExactResume adds them under ``checkpoint["exact_resume"]``:

- the random streams: torch's CPU generator (dropout on a CPU, the augmentation's flips and shifts on every
  device), the CUDA generator of the training device (dropout on a GPU), numpy's and Python's. They are
  captured when the checkpoint is written (the end of an epoch, after its validation) and put back in
  ``on_train_start`` of the resumed start: the last moment before the next epoch, so that nothing the
  resumed start does while it sets up (building the network, sanity checks, data loaders) shifts them.
  The data module's own shuffling generator travels in its state_dict (data/datamodule.py);
- ``trainer.should_stop``: a run a callback stopped at an epoch's end (divergence, a NaN loss) and that was
  killed afterwards (during its final test) stops again instead of training on;
- the CSV log: how many rows it had when the checkpoint was written, and the epoch's training row that
  Lightning logs only after the checkpoint. A resumed start keeps exactly those rows (repair_csv), so the
  log equals the uninterrupted one: no duplicate rows, none missing;
- the wall time spent up to the checkpoint over all starts: metrics.json's wall_time_s is the total.

Checkpoints stay data: only tensors, numbers, strings, lists and dicts (torch.load(weights_only=True)).
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any, Optional

import lightning as L
import torch

KEY = "exact_resume"


def capture_rng(device: Optional[torch.device] = None) -> dict[str, Any]:
    """Every random stream a training step can draw from, as checkpoint-safe values."""
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if device is not None and device.type == "cuda" and torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state(device)
    try:
        import numpy as np

        name, keys, pos, has_gauss, gauss = np.random.get_state()
        state["numpy"] = [str(name), [int(k) for k in keys], int(pos), int(has_gauss), float(gauss)]
    except ImportError:  # pragma: no cover - numpy comes with torch
        pass
    version, internal, gauss_next = random.getstate()
    state["python"] = [int(version), [int(v) for v in internal], gauss_next]
    return state


def restore_rng(state: dict[str, Any], device: Optional[torch.device] = None) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and device is not None and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)
    if "numpy" in state:
        import numpy as np

        name, keys, pos, has_gauss, gauss = state["numpy"]
        np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, gauss))
    if "python" in state:
        version, internal, gauss_next = state["python"]
        random.setstate((version, tuple(internal), gauss_next))


class ExactResume(L.Callback):
    """Saves and restores what Lightning leaves out of a checkpoint (see the module's docstring).
    t_start: this start's perf_counter at its beginning; prior_s: wall time of earlier starts known from
    elsewhere (an interrupted run's metrics.json), raised to the checkpoint's own count when one is loaded."""

    def __init__(self, t_start: float, prior_s: float = 0.0):
        self.t_start = t_start
        self.prior_s = float(prior_s)
        self._pending: Optional[dict[str, Any]] = None  # loaded from a checkpoint, not yet put back
        self._epoch_end = False

    # -- wall time ---------------------------------------------------------------------------------
    def this_start_s(self) -> float:
        return time.perf_counter() - self.t_start

    def total_s(self) -> float:
        return self.prior_s + self.this_start_s()

    def wall_times(self) -> dict[str, float]:
        """metrics.json's wall_time_s (all starts) and wall_time_this_start_s, from one clock reading."""
        this = self.this_start_s()
        return {"wall_time_s": self.prior_s + this, "wall_time_this_start_s": this}

    # -- save --------------------------------------------------------------------------------------
    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._epoch_end = False

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        # runs before the checkpoint callbacks (Lightning calls them last): an epoch-end checkpoint follows
        self._epoch_end = True

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        checkpoint[KEY] = {"rng": capture_rng(trainer.strategy.root_device), "should_stop": bool(trainer.should_stop),
                           "elapsed_s": self.total_s(), "csv": self._csv_state(trainer)}

    def _csv_state(self, trainer) -> Optional[dict[str, Any]]:
        """{rows: data rows in metrics.csv now, pending: the row Lightning logs right after this checkpoint}."""
        from allconv_sweep.training.loggers import ResumableCSVLogger

        csv_loggers = [lg for lg in trainer.loggers if isinstance(lg, ResumableCSVLogger)]
        if not csv_loggers or not trainer.is_global_zero:
            return None
        logger = csv_loggers[0]
        logger.save()  # every row logged so far on disk, so that the count below covers them
        return {"rows": logger.experiment.rows_written, "pending": self._pending_row(trainer)}

    def _pending_row(self, trainer) -> Optional[dict[str, Any]]:
        """The epoch's training metrics row (train/loss_epoch, train/acc, ...). Lightning's fit loop logs it
        after the epoch-end hooks in which checkpoints are written (FitLoop.on_advance_end:
        update_train_epoch_metrics), and a resumed start does not log it again: it travels in the checkpoint.
        Built as Lightning builds it (_LoggerConnector.log_metrics); private API, hence the fallback: without
        a row the resume keeps the rows counted, as before."""
        if not self._epoch_end or trainer.state.fn != "fit":
            return None
        try:
            from lightning.fabric.utilities.apply_func import convert_tensors_to_scalars

            metrics = convert_tensors_to_scalars(dict(trainer._logger_connector.metrics["log"]))
            if not metrics:
                return None
            if "step" in metrics:
                step = int(metrics.pop("step"))
            else:
                metrics.setdefault("epoch", trainer.current_epoch)
                step = trainer.fit_loop.epoch_loop._batches_that_stepped - 1  # as the fit loop logs it
            metrics["step"] = step
            return metrics
        except Exception:  # noqa: BLE001 - another Lightning version: no row rather than a failed checkpoint
            return None

    # -- restore -----------------------------------------------------------------------------------
    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        state = checkpoint.get(KEY)
        if not isinstance(state, dict):
            return  # a checkpoint of an earlier version: resumes as before
        self.prior_s = max(self.prior_s, float(state.get("elapsed_s") or 0.0))
        self._pending = state

    def on_train_start(self, trainer, pl_module) -> None:
        self._restore(trainer)

    def on_fit_end(self, trainer, pl_module) -> None:
        self._restore(trainer)  # a fit with nothing left to train never called on_train_start

    def _restore(self, trainer) -> None:
        state, self._pending = self._pending, None
        if state is None:
            return
        if "rng" in state:
            restore_rng(state["rng"], trainer.strategy.root_device)
        if state.get("should_stop"):
            trainer.should_stop = True


def repair_csv(csv_path: Path, ckpt_path: Path) -> None:
    """Before a resumed start logs anything: metrics.csv as it stood when ``ckpt_path`` was written, plus the
    epoch's training row logged right after it; rows of the start that was cut short go. A checkpoint of an
    earlier version (no such record): the rows of the epochs after its epoch go (the old rule)."""
    from allconv_sweep.training.loggers import restore_csv, truncate_csv

    ck = torch.load(ckpt_path, map_location="cpu", weights_only=True, mmap=True)
    state = (ck.get(KEY) or {}).get("csv") if isinstance(ck, dict) else None
    if isinstance(state, dict) and isinstance(state.get("rows"), int):
        restore_csv(csv_path, state["rows"], state.get("pending"))
    else:
        truncate_csv(csv_path, int(ck["epoch"]) + 1)
