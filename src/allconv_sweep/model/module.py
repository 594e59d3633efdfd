"""ImageClassifier: the one LightningModule. It wraps the network, the optimizer and the schedule that the
config names (instantiate(cfg.model), instantiate(cfg.optimizer), instantiate(cfg.scheduler): train.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn

from allconv_sweep.model.nets import conv_layer_names


class ImageClassifier(L.LightningModule):
    def __init__(self, net: nn.Module, num_classes: int, optimizer: Optional[Callable] = None,
                 scheduler: Optional[Callable] = None, config: Optional[dict[str, Any]] = None,
                 result_key: Optional[str] = None):
        """net: the network (nets.build_network); optimizer: params -> Optimizer and scheduler:
        (optimizer, max_epochs=, steps_per_epoch=) -> LRScheduler, both partials from the config (None to
        evaluate only); config and result_key: the run's resolved config and key, saved in every checkpoint
        (load_checkpoint, visualize and evaluate rebuild the run from them)."""
        super().__init__()
        # loggers get the config once, flat (train.py), not this nested copy
        self.save_hyperparameters({"cfg": config or {}, "result_key": result_key}, logger=False)
        self.net = net
        self.num_classes = int(num_classes)
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.channels_last = bool(getattr(net, "channels_last", False))
        # kept out of the module registry: registering it would store every weight twice in checkpoints
        self.__dict__["_forward_net"] = torch.compile(net) if getattr(net, "compile_forward", False) else net
        # This epoch's training counts, summed on the device and logged once an epoch (no per-step host
        # sync): correct top-1 (and top-5) predictions, and images with a live class score (any score > 0).
        self._train_hits: torch.Tensor | None = None
        self._train_seen = 0
        self.test_prefix = "test"  # train() tests the best-validation checkpoint under another prefix
        # (epoch, global step, val metrics) of the latest validation inside fit: train() reuses it as the
        # final model's validation when no training step came after it
        self.last_validation: tuple[int, int, dict[str, float]] | None = None

    @property
    def config(self) -> dict[str, Any]:
        return self.hparams["cfg"]

    @property
    def relu_output(self) -> bool:
        """Whether a ReLU follows the class conv (the paper's final ReLU): then all-negative scores are dead."""
        convs = conv_layer_names(self.net)
        names = list(self.net._modules)
        return bool(convs) and any(isinstance(self.net._modules[n], nn.ReLU) for n in names[names.index(convs[-1]) + 1:])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self._forward_net(x)

    def _step(self, batch, stage: str):
        x, y = batch
        logits = self(x)
        loss = F.cross_entropy(logits.float(), y)
        on_step = stage == "train"
        # sync_dist: values averaged over DDP ranks (a no-op on one device; a scalar all-reduce per step else)
        self.log(f"{stage}/loss", loss, on_step=on_step, on_epoch=True, prog_bar=stage in ("train", "val"), batch_size=len(y),
                 sync_dist=True)
        if on_step:  # training accuracy: summed on the device, logged once an epoch (_log_train_counts)
            self._sum_train_counts(logits.detach(), y)
            return loss, logits
        hits = self._hits(logits, y)
        n = len(y)
        self.log(f"{stage}/acc", hits[0] / n, on_step=False, on_epoch=True, prog_bar=stage == "val", batch_size=n,
                 sync_dist=True)
        self.log(f"{stage}/live_fraction", hits[1] / n, on_step=False, on_epoch=True, batch_size=n, sync_dist=True)
        if len(hits) > 2:
            self.log(f"{stage}/acc_top5", hits[2] / n, on_step=False, on_epoch=True, batch_size=n, sync_dist=True)
        return loss, logits

    def _hits(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Counts over the batch, as floats on the device: [correct top-1, live, (correct top-5)].

        live: images with any class score > 0. With the paper's ReLU after the class conv, an image whose
        scores are all <= 0 gets no gradient through them; when (almost) no image is live the network is
        dead for good (loss stuck at ln C). Logged as <stage>/live_fraction; DivergenceMonitor reads
        val/live_fraction (eval mode: in training mode dropout noise lifts a few dead scores above 0)."""
        counts = [(logits.argmax(dim=1) == y).sum(), (logits > 0).any(dim=1).sum()]
        if self.num_classes > 5:  # top-5 (ImageNet's second number); trivially 1 with 5 classes or fewer
            counts.append((logits.topk(5, dim=1).indices == y[:, None]).any(dim=1).sum())
        return torch.stack(counts).float()

    def training_step(self, batch, batch_idx):
        loss, logits = self._step(batch, "train")
        trainer = self._trainer  # None when called outside a Trainer
        if trainer is not None and batch_idx + 1 == trainer.num_training_batches:  # before epoch-end callbacks read it
            self._log_train_counts()
        return loss

    def _sum_train_counts(self, logits: torch.Tensor, y: torch.Tensor) -> None:
        """Each self.log call costs about a millisecond of host time (Lightning's bookkeeping), more than a
        GPU step of these networks: the training counts are summed on the device instead and logged once,
        with the epoch's image count as batch size, so Lightning's epoch mean (and its DDP sync) is the
        same value that logging them every step gave."""
        hits = self._hits(logits, y)
        self._train_hits = hits if self._train_hits is None else self._train_hits + hits
        self._train_seen += len(y)

    def _log_train_counts(self) -> None:
        if self._train_hits is None:
            return
        rates = self._train_hits / self._train_seen
        for i, name in enumerate(("train/acc", "train/live_fraction", "train/acc_top5")[: len(rates)]):
            self.log(name, rates[i], on_step=False, on_epoch=True, batch_size=self._train_seen, sync_dist=True)
        self._train_hits, self._train_seen = None, 0

    def on_train_epoch_start(self) -> None:
        self._train_hits, self._train_seen = None, 0

    def on_train_epoch_end(self) -> None:
        self._log_train_counts()  # an epoch cut short (should_stop) never reached its last batch

    def validation_step(self, batch, batch_idx):
        self._step(batch, "val")

    def on_validation_end(self) -> None:
        trainer = self.trainer
        if trainer.state.fn == "fit" and not trainer.sanity_checking:
            self.last_validation = (trainer.current_epoch, trainer.global_step,
                                    {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")})

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # a run resumed after its last epoch (killed in its final test) reuses it, as the uninterrupted
        # run does, instead of validating again (another row in the CSV log)
        checkpoint["last_validation"] = self.last_validation

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        last = checkpoint.get("last_validation")
        if isinstance(last, (list, tuple)) and len(last) == 3:
            self.last_validation = (int(last[0]), int(last[1]), {k: float(v) for k, v in dict(last[2]).items()})

    def test_step(self, batch, batch_idx):
        self._step(batch, self.test_prefix)

    def configure_optimizers(self):
        if self.optimizer_factory is None or self.scheduler_factory is None:
            raise RuntimeError("this ImageClassifier was built for evaluation only (no optimizer or scheduler)")
        opt = self.optimizer_factory(self.parameters())
        max_epochs = int(self.trainer.max_epochs)
        self.steps_per_epoch = max(1, self.trainer.estimated_stepping_batches // max(1, max_epochs))  # recorded
        sched = self.scheduler_factory(opt, max_epochs=max_epochs, steps_per_epoch=self.steps_per_epoch)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step", "name": "lr"}}


def load_checkpoint(ckpt: str | Path, map_location: str | torch.device = "cpu") -> ImageClassifier:
    """The ImageClassifier of a training run, rebuilt from the config its checkpoint carries; weights only
    (torch.load(weights_only=True): a checkpoint is data, never code). The stored config is read through
    allconv_sweep.config.records: the network is built from OUR composed model node with the stored values, and
    the model's config (model.config) is that rebuilt run config. One-line UserError for a missing file,
    one that is not such a checkpoint, or a stored config that names anything else to build."""
    from allconv_sweep.config import build, to_container
    from allconv_sweep.config.records import run_config_from_record
    from allconv_sweep.errors import UserError

    path = Path(ckpt).expanduser()
    valid = "a last.ckpt or best.ckpt written by python -m allconv_sweep (<run>/checkpoints/)"
    if not path.is_file():
        raise UserError(f"ckpt={ckpt}: no such file; valid: {valid}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
        stored, result_key = state["hyper_parameters"]["cfg"], state["hyper_parameters"].get("result_key")
        result_key = result_key if isinstance(result_key, str) else None
    except Exception as e:  # noqa: BLE001 - pickle, zip and key errors all mean "not one of ours"
        why = " ".join(str(e).split())[:160]
        raise UserError(f"ckpt={ckpt}: cannot be read as a checkpoint ({type(e).__name__}: {why}); "
                        f"valid: {valid}") from None
    run_cfg = run_config_from_record(stored, path)  # its refusal is the whole story: not wrapped below
    try:
        model = ImageClassifier(build(run_cfg.model, _convert_="all"), int(run_cfg.data.num_classes),
                                config=to_container(run_cfg), result_key=result_key)
        model.load_state_dict(state["state_dict"])
    except Exception as e:  # noqa: BLE001 - key and shape errors all mean "not one of ours"
        why = " ".join(str(e).split())[:160]
        raise UserError(f"ckpt={ckpt}: cannot be read as a checkpoint ({type(e).__name__}: {why}); "
                        f"valid: {valid}") from None
    return model
