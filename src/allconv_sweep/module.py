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
        self.forward_net = torch.compile(self.net) if cfg["model"].get("compile") else self.net
        self.any_nonzero_output = False   # read by DivergenceMonitor: all class scores 0 = dead final ReLU

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.forward_net(x)

    def _step(self, batch, stage: str):
        x, y = batch
        logits = self(x)
        loss = F.cross_entropy(logits.float(), y)
        acc = (logits.argmax(dim=1) == y).float().mean()
        on_step = stage == "train"
        self.log(f"{stage}/loss", loss, on_step=on_step, on_epoch=True, prog_bar=stage != "test", batch_size=len(y))
        self.log(f"{stage}/acc", acc, on_step=False, on_epoch=True, prog_bar=stage != "train", batch_size=len(y))
        return loss, logits

    def training_step(self, batch, batch_idx):
        loss, logits = self._step(batch, "train")
        if not self.any_nonzero_output:
            self.any_nonzero_output = bool((logits.detach() != 0).any())
        return loss

    def on_train_epoch_start(self) -> None:
        self.any_nonzero_output = False

    def validation_step(self, batch, batch_idx):
        self._step(batch, "val")

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
