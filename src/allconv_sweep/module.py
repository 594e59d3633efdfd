"""ImageClassifier: the one LightningModule; wraps whichever network the config builds."""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.trainer.states import TrainerFn
import torch
import torch.nn.functional as F

from allconv_sweep.nets import build_network


def build_from_config(cfg: dict) -> torch.nn.Sequential:
    m = cfg["model"]
    return build_network(m["layers"], in_channels=3, final_relu=bool(m["final_relu"]),
                         batch_norm=bool(m["batch_norm"]), head=str(m["head"]), init=str(m["init"]))


def lr_factor(epoch: float, milestones: list[float], gamma: float, warmup_epochs: float) -> float:
    """The paper's step schedule (x gamma at each milestone), optionally after a linear warm-up."""
    factor = gamma ** sum(epoch >= m for m in milestones)
    if warmup_epochs > 0 and epoch < warmup_epochs:
        factor *= (epoch + 1e-8) / warmup_epochs
    return factor


def scaled_milestones(sched: dict, max_epochs: int) -> list[float]:
    """Milestones given on the paper's 350-epoch scale, rescaled so a short run keeps the paper's shape."""
    return [round(m * max_epochs / sched["of_epochs"]) for m in sched["milestones"]]


class ImageClassifier(L.LightningModule):
    def __init__(self, cfg: dict[str, Any]):
        super().__init__()
        # the whole resolved config travels in the checkpoint: visualize/report need nothing else
        self.save_hyperparameters({"cfg": cfg})
        self.cfg = cfg
        self.net = build_from_config(cfg)
        self.num_classes = int(cfg["data"]["num_classes"])
        self.channels_last = bool(cfg["model"].get("channels_last", True))
        if self.channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        # kept out of the module registry: registering it would store every weight twice in checkpoints
        self.__dict__["_forward_net"] = torch.compile(self.net) if cfg["model"].get("compile") else self.net
        # read by DivergenceMonitor: the share of images with any class score > 0 this epoch (near 0: the
        # final ReLU is dead). Judged on validation (eval mode): in training mode dropout noise lifts a few
        # scores of a dead network just above 0. Counted on the device; read once an epoch.
        self._alive = torch.zeros((), dtype=torch.long)
        self._alive_seen = 0
        self._val_alive = torch.zeros((), dtype=torch.long)
        self._val_alive_seen = 0
        self._train_hits: torch.Tensor | None = None  # this epoch's correct top-1 (and top-5) training predictions
        self._train_seen = 0

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
        self.log(f"{stage}/loss", loss, on_step=on_step, on_epoch=True, prog_bar=stage != "test", batch_size=len(y),
                 sync_dist=True)
        if on_step:  # training accuracy: summed on the device, logged once an epoch (_log_train_accuracy)
            self._sum_train_accuracy(logits, y)
            return loss, logits
        acc = (logits.argmax(dim=1) == y).float().mean()
        self.log(f"{stage}/acc", acc, on_step=False, on_epoch=True, prog_bar=stage != "train", batch_size=len(y),
                 sync_dist=True)
        if self.num_classes > 5:  # top-5 (ImageNet's second number); trivially 1 with 5 classes or fewer
            top5 = (logits.topk(5, dim=1).indices == y[:, None]).any(dim=1).float().mean()
            self.log(f"{stage}/acc_top5", top5, on_step=False, on_epoch=True, batch_size=len(y), sync_dist=True)
        return loss, logits

    def training_step(self, batch, batch_idx):
        loss, logits = self._step(batch, "train")
        self._alive = self._alive.to(logits.device) + (logits.detach() > 0).any(dim=1).sum()
        self._alive_seen += len(logits)
        trainer = self._trainer  # None when called outside a Trainer
        if trainer is not None and batch_idx + 1 == trainer.num_training_batches:  # before epoch-end callbacks read it
            self._log_train_accuracy()
        return loss

    def _sum_train_accuracy(self, logits: torch.Tensor, y: torch.Tensor) -> None:
        """Each self.log call costs about a millisecond of host time (Lightning's bookkeeping), more than a
        GPU step of these networks: train/acc and train/acc_top5 are counted on the device instead and
        logged once, with the epoch's image count as batch size, so Lightning's epoch mean (and its DDP
        sync) is the same value that logging them every step gave."""
        hits = [(logits.argmax(dim=1) == y).sum()]
        if self.num_classes > 5:  # top-5 (ImageNet's second number); trivially 1 with 5 classes or fewer
            hits.append((logits.topk(5, dim=1).indices == y[:, None]).any(dim=1).sum())
        hits = torch.stack(hits)
        self._train_hits = hits if self._train_hits is None else self._train_hits + hits
        self._train_seen += len(y)

    def _log_train_accuracy(self) -> None:
        if self._train_hits is None:
            return
        rates = self._train_hits.float() / self._train_seen
        self.log("train/acc", rates[0], on_step=False, on_epoch=True, batch_size=self._train_seen, sync_dist=True)
        if len(rates) > 1:
            self.log("train/acc_top5", rates[1], on_step=False, on_epoch=True, batch_size=self._train_seen,
                     sync_dist=True)
        self._train_hits, self._train_seen = None, 0

    def alive_fraction(self) -> float:
        """Share of this epoch's validation images (training images if there is no validation split) with
        any class score > 0; 1.0 before any step."""
        if self._val_alive_seen:
            return float(self._val_alive) / self._val_alive_seen
        return float(self._alive) / self._alive_seen if self._alive_seen else 1.0

    def on_train_epoch_start(self) -> None:
        self._alive, self._alive_seen = torch.zeros((), dtype=torch.long), 0
        self._train_hits, self._train_seen = None, 0

    def on_train_epoch_end(self) -> None:
        self._log_train_accuracy()  # an epoch cut short (should_stop) never reached its last batch

    def validation_step(self, batch, batch_idx):
        _, logits = self._step(batch, "val")
        if self.trainer.state.fn == TrainerFn.FITTING:  # validation inside fit, not trainer.validate()
            self._val_alive = self._val_alive.to(logits.device) + (logits > 0).any(dim=1).sum()
            self._val_alive_seen += len(logits)

    def on_validation_epoch_start(self) -> None:
        if self.trainer.state.fn == TrainerFn.FITTING:
            self._val_alive, self._val_alive_seen = torch.zeros((), dtype=torch.long), 0

    def test_step(self, batch, batch_idx):
        self._step(batch, "test")

    def configure_optimizers(self):
        o, s = self.cfg["optimizer"], self.cfg["scheduler"]
        opt = torch.optim.SGD(self.parameters(), lr=o["lr"], momentum=o["momentum"],
                              weight_decay=o["weight_decay"], nesterov=bool(o.get("nesterov", False)))
        max_epochs = int(self.cfg["trainer"]["max_epochs"])
        milestones = scaled_milestones(s, max_epochs)
        steps_per_epoch = max(1, self.trainer.estimated_stepping_batches // max(1, max_epochs))
        warmup = float(o.get("warmup_epochs", 0) or 0)
        gamma = float(s["gamma"])
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda step: lr_factor(step / steps_per_epoch, milestones, gamma, warmup))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
