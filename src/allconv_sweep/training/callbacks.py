"""Callbacks: divergence detection (a run that cannot recover is a result, not a crash), throughput, log flushing."""

import math
import time

import lightning as L
import torch
from lightning.pytorch.callbacks import ProgressBar, RichProgressBar
from omegaconf import OmegaConf

from allconv_sweep.config import config_dir
from allconv_sweep.console import console

# the one home of the monitor's settings (and their reasons); the defaults of a monitor built without a config
CONFIGURED = OmegaConf.load(config_dir() / "callbacks" / "default.yaml").divergence


class DivergenceMonitor(L.Callback):
    """Stops a run that cannot recover and says why (``reason``): the final ReLU dead (fewer than
    ``dead_output_fraction`` of the images with any class score > 0) at every epoch end over the last
    ``dead_output_images`` training images, or the accuracy at chance after ``chance_images``; validation
    images, else training ones. conf/callbacks/default.yaml explains the settings."""

    def __init__(self, num_classes: int, dead_output_fraction: float = CONFIGURED.dead_output_fraction,
                 dead_output_images: int | None = CONFIGURED.dead_output_images,
                 chance_images: int | None = CONFIGURED.chance_images, chance_margin: float = CONFIGURED.chance_margin):
        self.num_classes, self.chance_images, self.chance_margin = num_classes, chance_images, chance_margin
        self.dead_output_fraction, self.dead_output_images = dead_output_fraction, dead_output_images
        self.reason, self.images_seen = None, 0  # images_seen: training images, all ranks together
        self.dead_since: int | None = None  # images_seen at the last live check before the current dead streak
        self.dead_at_end = False        # the latest epoch-end check found the output dead
        self.live_fraction: float | None = None
        self._checked_at = 0            # images_seen at the latest epoch-end check

    def _stop(self, trainer: L.Trainer, reason: str) -> None:
        self.reason = self.reason or reason  # the first reason stays
        trainer.should_stop = True

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.images_seen += len(batch[1]) * trainer.world_size

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        # after this epoch's validation (Lightning >= 2.0), on metrics averaged over DDP ranks: all decide alike
        m = trainer.callback_metrics
        live = m.get("val/live_fraction", m.get("train/live_fraction"))
        if getattr(pl_module, "relu_output", True) and live is not None:
            self.live_fraction = float(live)
            self.dead_at_end = self.live_fraction < self.dead_output_fraction
            if not self.dead_at_end:
                self.dead_since = None
            elif self.dead_since is None:
                self.dead_since = self._checked_at
            dead_for = self.images_seen - self.dead_since if self.dead_at_end else 0
            if self.dead_output_images is not None and self.dead_at_end and dead_for >= self.dead_output_images:
                self._stop(trainer, f"final ReLU dead: fewer than {self.dead_output_fraction:.0%} of images had "
                                    f"any class score > 0 over the last {dead_for:,} training images "
                                    f"(epoch {trainer.current_epoch + 1}; loss stuck at ln {self.num_classes} = "
                                    f"{math.log(self.num_classes):.4f})")
        self._checked_at = self.images_seen
        if self.chance_images is not None and self.images_seen >= self.chance_images:
            acc = m.get("val/acc", m.get("train/acc"))
            if acc is not None and float(acc) < 1.0 / self.num_classes + self.chance_margin:
                self._stop(trainer, f"accuracy {float(acc):.3f} still at chance (1/{self.num_classes}) after "
                                    f"{self.images_seen:,} training images (epoch {trainer.current_epoch + 1})")

    def state_dict(self):
        return {"reason": self.reason, "images_seen": self.images_seen, "dead_since": self.dead_since,
                "dead_at_end": self.dead_at_end, "live_fraction": self.live_fraction, "checked_at": self._checked_at}

    def load_state_dict(self, state):
        self.reason, self.images_seen = state.get("reason"), state.get("images_seen", 0)
        self.dead_since, self.dead_at_end = state.get("dead_since"), state.get("dead_at_end", False)
        self.live_fraction, self._checked_at = state.get("live_fraction"), state.get("checked_at", self.images_seen)


class Throughput(L.Callback):
    """Training images/s over the training epochs (their validation included) and the last epoch's training
    accuracy; kept in checkpoints, so a run resumed after its last epoch still reports them."""

    def __init__(self):
        self.images, self.seconds, self.train_acc, self._t0 = 0, 0.0, None, None

    def _sync(self, pl_module) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._sync(pl_module)
        self._t0 = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.images += len(batch[1])

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if self._t0 is not None:
            self._sync(pl_module)
            self.seconds += time.perf_counter() - self._t0
            self._t0 = None
        acc = trainer.callback_metrics.get("train/acc")
        if acc is not None:
            self.train_acc = float(acc)

    @property
    def images_per_s(self) -> float | None:
        return self.images / self.seconds if self.seconds > 0 else None

    def state_dict(self):
        return {"images": self.images, "seconds": self.seconds, "train_acc": self.train_acc}

    def load_state_dict(self, state):
        self.images, self.seconds, self.train_acc = (state.get("images", 0), state.get("seconds", 0.0),
                                                     state.get("train_acc"))


class FlushLoggers(L.Callback):
    """Every logger's rows written at each epoch end (CSVLogger: every 100 steps), as the checkpoint is."""

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        for logger in trainer.loggers:
            logger.save()


EPOCH_METRICS = ("train/loss_epoch", "train/acc", "val/loss", "val/acc")  # an epoch's line, in a pipe or a log


def _epoch_of_n(trainer) -> str:  # the bars' text: "Epoch k/N" counted from 1, the metrics on the bar's line
    return f"Epoch {trainer.current_epoch + 1}/{trainer.max_epochs}"


class RichEpochBar(RichProgressBar):
    def _get_train_description(self, current_epoch: int) -> str:
        return _epoch_of_n(self.trainer)


class EpochLines(ProgressBar):
    """For a pipe or a log: one plain line per epoch, its metrics and time (a bar there is `\r` and ANSI)."""

    enabled, _t0 = True, 0.0

    def disable(self) -> None:
        self.enabled = False

    def enable(self) -> None:
        self.enabled = True

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._t0 = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if self.enabled and trainer.is_global_zero:
            m = trainer.callback_metrics
            shown = [f"{k.removesuffix('_epoch')} {float(m[k]):.4f}" for k in EPOCH_METRICS if k in m]
            print(_epoch_of_n(trainer), *shown, f"({time.perf_counter() - self._t0:.1f} s)", flush=True)


def progress_bar() -> L.Callback:
    """The rich bar on a terminal; one plain line per epoch in a pipe or a log."""
    return RichEpochBar() if console.is_terminal else EpochLines()
