"""ImageClassifier: the one LightningModule; wraps whichever network the config builds."""

from __future__ import annotations

from typing import Any

import lightning as L
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


def scaled_milestones(sched: dict, max_epochs: int) -> list[int]:
    """Milestones given on the paper's 350-epoch scale, rescaled so a short run keeps the paper's shape.

    Rounding can make two milestones meet on a short schedule (5 epochs: 200, 250, 300 -> 3, 4, 4: two
    drops at once). They are spread instead: each at least an epoch after the one before; one that would
    fall at or after the last epoch (where it never takes effect) is dropped, never stacked (5 epochs:
    3, 4). The first drop stays where the paper's proportion puts it (200/350 of the run at full lr)."""
    out: list[int] = []
    for m in sorted(sched["milestones"]):
        m = max(round(m * max_epochs / sched["of_epochs"]), out[-1] + 1 if out else 1)
        if m >= max_epochs:
            break
        out.append(m)
    return out


class ImageClassifier(L.LightningModule):
    def __init__(self, cfg: dict[str, Any]):
        super().__init__()
        # the whole resolved config travels in the checkpoint: visualize/report need nothing else
        self.save_hyperparameters({"cfg": cfg}, logger=False)  # loggers get the config once, flat (train.py)
        self.cfg = cfg
        self.net = build_from_config(cfg)
        self.num_classes = int(cfg["data"]["num_classes"])
        self.channels_last = bool(cfg["model"].get("channels_last", True))
        if self.channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        # kept out of the module registry: registering it would store every weight twice in checkpoints
        self.__dict__["_forward_net"] = torch.compile(self.net) if cfg["model"].get("compile") else self.net
        # This epoch's training counts, summed on the device and logged once an epoch (no per-step host
        # sync): correct top-1 (and top-5) predictions, and images with a live class score (any score > 0).
        self._train_hits: torch.Tensor | None = None
        self._train_seen = 0
        self.test_prefix = "test"  # train() tests the best-validation checkpoint under another prefix
        # (epoch, global step, val metrics) of the latest validation inside fit: train() reuses it as the
        # final model's validation when no training step came after it
        self.last_validation: tuple[int, int, dict[str, float]] | None = None

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

    def test_step(self, batch, batch_idx):
        self._step(batch, self.test_prefix)

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
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step", "name": "lr"}}
