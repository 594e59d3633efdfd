"""Callbacks: divergence detection (a run that cannot recover is a result, not a crash), throughput, log flushing."""

from __future__ import annotations

import math
import time

import lightning as L
import torch


class DivergenceMonitor(L.Callback):
    """Stops a run that cannot recover and says why; ``reason`` is None while the run is healthy.

    Windows are counted in training images seen, not epochs: the same setting means the same amount of
    training on the full set (45k images an epoch) and on a 3.6k-image head, where an epoch is 12x
    shorter. The paper-faithful recipe sits on the ln C plateau for ~250k images before it learns (the
    working Caffe reproduction: loss 2.30 -> 2.07 over its first 1,000 steps of 256), so the chance window
    must be longer than that.

    - the training loss is NaN/inf: stop at once;
    - dead output (only when a ReLU follows the class conv, ``relu_output``): fewer than
      ``dead_output_fraction`` of the validation images (training images without a validation split)
      have any class score > 0 at every epoch end over the last ``dead_output_images`` training images.
      No gradient reaches any weight through a dead final ReLU again. ``dead_at_end`` says whether the
      last check was dead (train() records such a run as diverged even when the window did not close);
    - accuracy (validation, else training) still at chance after ``chance_images`` training images.
    """

    def __init__(self, num_classes: int, relu_output: bool = True, check_nonfinite: bool = True,
                 dead_output_fraction: float = 0.01, dead_output_images: int | None = 100_000,
                 chance_images: int | None = 500_000, chance_margin: float = 0.02, check_every: int | None = None):
        self.num_classes = num_classes
        self.relu_output = relu_output
        self.check_nonfinite = check_nonfinite
        # on an accelerator (or with check_every set) the loss is read every `check_every` steps (default:
        # trainer.log_every_n_steps, when Lightning reads it anyway) and at each epoch end, not every step:
        # reading a device value makes the host wait for the device. On one CPU process: every step.
        self.check_every = check_every
        self._first_bad: torch.Tensor | None = None  # on the device: the first step with a non-finite loss
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
        if batch is not None:
            self.images_seen += len(batch[1]) * trainer.world_size
        if not self.check_nonfinite or outputs is None:
            return
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if self.check_every is None and loss.device.type == "cpu" and trainer.world_size == 1:  # free: at once
            if not bool(torch.isfinite(loss).all()):
                self._stop(trainer, f"non-finite training loss at epoch {trainer.current_epoch + 1}, step {trainer.global_step}")
            return
        bad = ~torch.isfinite(loss.detach()).all()
        if self._first_bad is None:
            self._first_bad = torch.full((), -1, dtype=torch.long, device=loss.device)
        self._first_bad = torch.where(bad & (self._first_bad < 0), trainer.global_step, self._first_bad)
        if (batch_idx + 1) % (self.check_every or trainer.log_every_n_steps or 1) == 0:
            self._check_first_bad(trainer)

    def _check_first_bad(self, trainer) -> None:
        """One host read of the device-side record (every rank at the same steps under DDP)."""
        if self._first_bad is None or self.reason is not None:
            return
        step = int(self._first_bad)
        bad = step >= 0
        if trainer.world_size > 1:  # DDP: every rank must stop at the same step, or the others hang
            bad = trainer.strategy.reduce_boolean_decision(bad, all=False)
        if bad:
            where = f"step {step}" if step >= 0 else "another rank"
            self._stop(trainer, f"non-finite training loss at epoch {trainer.current_epoch + 1}, {where}")

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        # Validation has run by now (Lightning >= 2.0 validates before on_train_epoch_end); the epoch
        # metrics are already averaged over DDP ranks (sync_dist), so every rank decides the same.
        if self.check_nonfinite:
            self._check_first_bad(trainer)
        m = trainer.callback_metrics
        if self.relu_output:
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
