"""Callbacks: divergence detection (a run that cannot recover is a result, not a crash), throughput, log flushing."""

from __future__ import annotations

import math
import time

import lightning as L
import torch
from lightning.pytorch.callbacks import RichProgressBar, TQDMProgressBar
from omegaconf import OmegaConf

from allconv_sweep.config import config_dir

# callbacks.divergence as conf/callbacks/default.yaml sets it: the one home of the monitor's threshold and
# windows (with their reasons); the defaults of a monitor built without a config (tests, notebooks)
CONFIGURED = OmegaConf.load(config_dir() / "callbacks" / "default.yaml").divergence


class DivergenceMonitor(L.Callback):
    """Stops a run that cannot recover and says why; ``reason`` is None while the run is healthy.
    (A NaN/inf loss is Lightning's EarlyStopping(check_finite=True): conf/callbacks/default.yaml.)

    Windows are counted in training images seen, not epochs: the same setting means the same amount of
    training on the full set (45k images an epoch) and on a 3.6k-image head, where an epoch is 12x
    shorter. The paper-faithful recipe sits on the ln C plateau for ~250k images before it learns (the
    working Caffe reproduction: loss 2.30 -> 2.07 over its first 1,000 steps of 256), so the chance window
    must be longer than that.

    - dead output (only when a ReLU follows the class conv: ImageClassifier.relu_output): fewer than
      ``dead_output_fraction`` of the validation images (training images without a validation split)
      have any class score > 0 at every epoch end over the last ``dead_output_images`` training images.
      No gradient reaches any weight through a dead final ReLU again. ``dead_at_end`` says whether the
      last check was dead (train() records such a run as diverged even when the window did not close);
    - accuracy (validation, else training) still at chance after ``chance_images`` training images.
    """

    def __init__(self, num_classes: int, dead_output_fraction: float = CONFIGURED.dead_output_fraction,
                 dead_output_images: int | None = CONFIGURED.dead_output_images,
                 chance_images: int | None = CONFIGURED.chance_images, chance_margin: float = CONFIGURED.chance_margin):
        self.num_classes = num_classes
        self.dead_output_fraction = dead_output_fraction
        self.dead_output_images = dead_output_images
        self.chance_images = chance_images
        self.chance_margin = chance_margin
        self.reason: str | None = None
        self.images_seen = 0            # training images, all ranks together
        self.dead_since: int | None = None  # images_seen at the last live check before the current dead streak
        self.dead_at_end = False        # the latest epoch-end check found the output dead
        self.live_fraction: float | None = None
        self._checked_at = 0            # images_seen at the latest epoch-end check

    def _stop(self, trainer: L.Trainer, reason: str) -> None:
        if self.reason is None:
            self.reason = reason
        trainer.should_stop = True

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.images_seen += len(batch[1]) * trainer.world_size

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        # Validation has run by now (Lightning >= 2.0 validates before on_train_epoch_end); the epoch
        # metrics are already averaged over DDP ranks (sync_dist), so every rank decides the same.
        m = trainer.callback_metrics
        if getattr(pl_module, "relu_output", True):
            live = m.get("val/live_fraction", m.get("train/live_fraction"))
            if live is not None:
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
        self.reason = state.get("reason")
        self.images_seen = state.get("images_seen", 0)
        self.dead_since = state.get("dead_since")
        self.dead_at_end = state.get("dead_at_end", False)
        self.live_fraction = state.get("live_fraction")
        self._checked_at = state.get("checked_at", self.images_seen)


class Throughput(L.Callback):
    """Training images per second over the training loop only (no validation, no start-up), and the last
    epoch's training accuracy; both kept in checkpoints, so a run resumed after its last epoch (killed
    during its final test, say) still reports them."""

    def __init__(self):
        self.images = 0
        self.seconds = 0.0
        self.train_acc: float | None = None
        self._t0: float | None = None

    def _sync(self, pl_module) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._sync(pl_module)
        self._t0 = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.images += len(batch[1])

    def on_validation_epoch_start(self, trainer, pl_module) -> None:  # validation inside an epoch: pause
        if self._t0 is not None and trainer.training:
            self._sync(pl_module)
            self.seconds += time.perf_counter() - self._t0
            self._t0 = None

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if trainer.training and self._t0 is None:
            self._t0 = time.perf_counter()

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
        self.images, self.seconds = state.get("images", 0), state.get("seconds", 0.0)
        self.train_acc = state.get("train_acc")


class FlushLoggers(L.Callback):
    """Write every logger's buffered rows at each epoch end (the CSV logger flushes every 100 steps only),
    so a run killed after a checkpoint has that epoch in its log too."""

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        for logger in trainer.loggers:
            logger.save()


class _EpochOfN:
    """Progress-bar text: "Epoch k/N" counted from 1, the run's metrics on the bar's own line."""

    def _epoch_text(self, trainer) -> str:
        return f"Epoch {trainer.current_epoch + 1}/{trainer.max_epochs}"


class RichEpochBar(_EpochOfN, RichProgressBar):
    def _get_train_description(self, current_epoch: int) -> str:  # noqa: D102 - Lightning's hook
        return self._epoch_text(self.trainer)


class TqdmEpochBar(_EpochOfN, TQDMProgressBar):
    def on_train_epoch_start(self, trainer, *args) -> None:  # noqa: D102 - Lightning's hook
        super().on_train_epoch_start(trainer, *args)
        self.train_progress_bar.set_description(self._epoch_text(trainer))


def progress_bar() -> L.Callback:
    """A rich bar on a terminal, tqdm (every 50 steps) in logs and pipes."""
    from allconv_sweep.console import console

    return RichEpochBar() if console.is_terminal else TqdmEpochBar(refresh_rate=50)
