"""Test-only: SIGKILL this process at the moment KILL_AT names (imported before the CLI runs).

KILL_AT=<where>:<epoch>[:<batch>] with <where> one of
  train_step   the training step of (epoch, batch) starts
  val_step     the validation step of (epoch, batch) starts
  after_save   right after last.ckpt of <epoch> is written (before anything else of that epoch end runs)
  before_save  right before last.ckpt of <epoch> is written (best.ckpt of it already is)
  test         the first test step after training (the final model's test)
Epochs count from 0. KILL_SIGNAL=TERM sends SIGTERM instead (once; Lightning stops at the next batch and
the run records itself interrupted). No product code knows about this module: it patches classes from outside.
"""

from __future__ import annotations

import os
import signal

_spec = os.environ.get("KILL_AT", "")
_where, _, _rest = _spec.partition(":")
_args = [int(v) for v in _rest.split(":") if v]


_sent = []


def _die() -> None:
    if os.environ.get("KILL_SIGNAL") == "TERM":
        if not _sent:
            _sent.append(True)
            os.kill(os.getpid(), signal.SIGTERM)
        return
    os.kill(os.getpid(), signal.SIGKILL)


def _patch() -> None:
    from lightning.pytorch.callbacks import ModelCheckpoint

    from allconv_sweep.model.module import ImageClassifier

    epoch = _args[0] if _args else 0
    batch = _args[1] if len(_args) > 1 else 0
    if _where in ("train_step", "val_step", "test"):
        name = {"train_step": "training_step", "val_step": "validation_step", "test": "test_step"}[_where]
        original = getattr(ImageClassifier, name)

        def step(self, batch_, batch_idx, *a, **k):
            if _where == "test" or (self.current_epoch == epoch and batch_idx == batch):
                _die()
            return original(self, batch_, batch_idx, *a, **k)

        setattr(ImageClassifier, name, step)
    elif _where in ("after_save", "before_save"):
        original_save = ModelCheckpoint._save_checkpoint

        def save(self, trainer, filepath):
            last = os.path.basename(filepath) == "last.ckpt" and trainer.current_epoch == epoch
            if last and _where == "before_save":
                _die()
            original_save(self, trainer, filepath)
            if last and _where == "after_save":
                _die()

        ModelCheckpoint._save_checkpoint = save
    elif _where:
        raise SystemExit(f"KILL_AT={_spec}: unknown moment")


_patch()
