"""Exact resume: a run killed at any moment and started again with the same command ends with the same
numbers and CSV log as the run never interrupted. ExactResume adds to a checkpoint (as plain data) what
Lightning's leaves out: the random streams (put back in on_train_start, after the resumed start has set
up), trainer.should_stop, the CSV's row count and the training row Lightning logs after the checkpoint
(repair_csv), and the wall time so far."""

import random
import time
from pathlib import Path
from typing import Any, Optional

import lightning as L
import numpy as np
import torch
from lightning.fabric.utilities.apply_func import convert_tensors_to_scalars

from allconv_sweep.training.loggers import ResumableCSVLogger, restore_csv, truncate_csv

KEY = "exact_resume"


def capture_rng(device: Optional[torch.device] = None) -> dict[str, Any]:
    """Every random stream a training step can draw from, as checkpoint-safe values."""
    name, keys, *rest = np.random.get_state()  # the key array as a list: weights_only loads plain data only
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "numpy": [name, keys.tolist(), *rest],
                             "python": random.getstate()}
    if device is not None and device.type == "cuda" and torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def restore_rng(state: dict[str, Any], device: Optional[torch.device] = None) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and device is not None and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)
    if "numpy" in state:
        name, keys, pos, has_gauss, gauss = state["numpy"]
        np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, gauss))
    if "python" in state:
        version, internal, gauss_next = state["python"]
        random.setstate((version, tuple(internal), gauss_next))


class ExactResume(L.Callback):
    """prior_s: earlier starts' wall time (an interrupted run's record), raised to the checkpoint's count."""

    def __init__(self, t_start: float, prior_s: float = 0.0):
        self.t_start, self.prior_s = t_start, float(prior_s)
        self._pending, self._epoch_end = None, False  # _pending: loaded from a checkpoint, not yet put back

    def this_start_s(self) -> float:
        return time.perf_counter() - self.t_start

    def wall_times(self) -> dict[str, float]:
        """metrics.json's wall_time_s (all starts) and wall_time_this_start_s, from one clock reading."""
        this = self.this_start_s()
        return {"wall_time_s": self.prior_s + this, "wall_time_this_start_s": this}

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._epoch_end = False

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._epoch_end = True  # the checkpoint callbacks run after this one (Lightning calls them last)

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        checkpoint[KEY] = {"rng": capture_rng(trainer.strategy.root_device), "should_stop": bool(trainer.should_stop),
                           "elapsed_s": self.prior_s + self.this_start_s(), "csv": self._csv_state(trainer)}

    def _csv_state(self, trainer) -> Optional[dict[str, Any]]:
        """{rows: data rows in metrics.csv now, pending: the row Lightning logs after this checkpoint}."""
        logger = next((lg for lg in trainer.loggers if isinstance(lg, ResumableCSVLogger)), None)
        if logger is None or not trainer.is_global_zero:
            return None
        logger.save()  # every row logged so far on disk, so that the count below covers them
        return {"rows": logger.experiment.rows_written, "pending": self._pending_row(trainer)}

    def _pending_row(self, trainer) -> Optional[dict[str, Any]]:
        """The epoch's training row, logged by FitLoop.on_advance_end after the checkpoint (never by a resumed
        start), built as _LoggerConnector.log_metrics does; private API: None when that fails."""
        if not self._epoch_end or trainer.state.fn != "fit":
            return None
        try:
            metrics = convert_tensors_to_scalars(dict(trainer._logger_connector.metrics["log"]))
            if not metrics:
                return None
            step = metrics.pop("step", None)
            if step is None:
                metrics.setdefault("epoch", trainer.current_epoch)
                step = trainer.fit_loop.epoch_loop._batches_that_stepped - 1  # as the fit loop logs it
            metrics["step"] = int(step)
            return metrics
        except Exception:  # noqa: BLE001 - another Lightning version: no row rather than a failed checkpoint
            return None

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        state = checkpoint.get(KEY)
        if isinstance(state, dict):  # an earlier version's checkpoint has none: it resumes as it did
            self.prior_s, self._pending = max(self.prior_s, float(state.get("elapsed_s") or 0.0)), state

    def on_fit_end(self, trainer, pl_module) -> None:
        self.on_train_start(trainer, pl_module)  # a fit with nothing left to train never called on_train_start

    def on_train_start(self, trainer, pl_module) -> None:
        state, self._pending = self._pending or {}, None
        if "rng" in state:
            restore_rng(state["rng"], trainer.strategy.root_device)
        if state.get("should_stop"):
            trainer.should_stop = True


def repair_csv(csv_path: Path, ckpt_path: Path) -> None:
    """metrics.csv as it stood at ``ckpt_path`` plus the training row logged after it (an older checkpoint:
    the rows of later epochs go), before a resumed start logs anything."""
    ck = torch.load(ckpt_path, map_location="cpu", weights_only=True, mmap=True)
    state = (ck.get(KEY) or {}).get("csv") if isinstance(ck, dict) else None
    if isinstance(state, dict) and isinstance(state.get("rows"), int):
        restore_csv(csv_path, state["rows"], state.get("pending"))
    else:
        truncate_csv(csv_path, int(ck["epoch"]) + 1)
