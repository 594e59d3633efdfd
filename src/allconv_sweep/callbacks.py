"""Callbacks: divergence detection (a run that cannot recover is a result, not a crash) and throughput."""

from __future__ import annotations

import math
import time

import lightning as L
import torch


class DivergenceMonitor(L.Callback):
    """Stops a run that cannot recover and says why; ``reason`` is None while the run is healthy.

    - the training loss is NaN/inf;
    - (almost) every class score was 0 for whole training epochs (the final ReLU is dead: no gradient
      reaches any weight again; the paper-faithful All-CNN-C can end there, loss fixed at ln C);
    - validation accuracy still at chance after ``chance_epochs`` epochs.
    """

    def __init__(self, num_classes: int, check_nonfinite: bool = True, dead_output_epochs: int | None = 1,
                 dead_output_fraction: float = 0.01,
                 chance_epochs: int | None = 10, chance_margin: float = 0.02, check_every: int | None = None):
        self.num_classes = num_classes
        self.check_nonfinite = check_nonfinite
        # on an accelerator (or with check_every set) the loss is read every `check_every` steps (default:
        # trainer.log_every_n_steps, when Lightning reads it anyway) and at each epoch end, not every step:
        # reading a device value makes the host wait for the device. On one CPU process: every step.
        self.check_every = check_every
        self._first_bad: torch.Tensor | None = None  # on the device: the first step with a non-finite loss
        self.dead_output_epochs = dead_output_epochs
        self.dead_output_fraction = dead_output_fraction
        self.chance_epochs = chance_epochs
        self.chance_margin = chance_margin
        self.reason: str | None = None
        self._dead_epochs = 0

    def _stop(self, trainer: L.Trainer, reason: str) -> None:
        if self.reason is None:
            self.reason = reason
        trainer.should_stop = True

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if not self.check_nonfinite or outputs is None:
            return
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if self.check_every is None and loss.device.type == "cpu" and trainer.world_size == 1:  # free: at once
            if not bool(torch.isfinite(loss).all()):
                self._stop(trainer, f"non-finite training loss at epoch {trainer.current_epoch}, step {trainer.global_step}")
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
            self._stop(trainer, f"non-finite training loss at epoch {trainer.current_epoch}, {where}")

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if self.check_nonfinite:
            self._check_first_bad(trainer)
        if self.dead_output_epochs:
            alive = pl_module.alive_fraction() >= self.dead_output_fraction
            if trainer.world_size > 1:  # DDP: one decision for all ranks (alive if any rank saw a score)
                alive = trainer.strategy.reduce_boolean_decision(alive, all=False)
            self._dead_epochs = 0 if alive else self._dead_epochs + 1
            if self._dead_epochs >= self.dead_output_epochs:
                self._stop(trainer, f"fewer than {self.dead_output_fraction:.0%} of images had any class "
                                    f"score > 0 for {self._dead_epochs} epoch(s) in a row by epoch "
                                    f"{trainer.current_epoch + 1}: the final ReLU is dead (loss stuck at "
                                    f"ln {self.num_classes} = {math.log(self.num_classes):.4f})")
        if self.chance_epochs and trainer.current_epoch + 1 >= self.chance_epochs:
            m = trainer.callback_metrics
            acc = m.get("val/acc", m.get("train/acc"))
            if acc is not None and float(acc) < 1.0 / self.num_classes + self.chance_margin:
                self._stop(trainer, f"accuracy {float(acc):.3f} still at chance (1/{self.num_classes}) after "
                                    f"{trainer.current_epoch + 1} epochs")

    def state_dict(self):
        return {"reason": self.reason, "dead_epochs": self._dead_epochs}

    def load_state_dict(self, state):
        self.reason, self._dead_epochs = state.get("reason"), state.get("dead_epochs", 0)


class Throughput(L.Callback):
    """Training images per second over the training loop only (no validation, no start-up)."""

    def __init__(self):
        self.images = 0
        self.seconds = 0.0
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

    @property
    def images_per_s(self) -> float | None:
        return self.images / self.seconds if self.seconds > 0 else None
