"""ImageClassifier: the one LightningModule, around the network, optimizer and schedule the config names."""

from pathlib import Path
from typing import Any, Callable, Optional

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn

from allconv_sweep.config import build, to_container
from allconv_sweep.config.records import run_config_from_record
from allconv_sweep.errors import UserError
from allconv_sweep.model.nets import conv_layer_names

COUNTS = ("acc", "live_fraction", "acc_top5")  # what _hits counts, logged as <stage>/<name>


class ImageClassifier(L.LightningModule):
    def __init__(self, net: nn.Module, num_classes: int, optimizer: Optional[Callable] = None,
                 scheduler: Optional[Callable] = None, config: Optional[dict[str, Any]] = None,
                 result_key: Optional[str] = None):
        """optimizer, scheduler: the config's partials (None: evaluation only); config: for load_checkpoint."""
        super().__init__()
        self.save_hyperparameters({"cfg": config or {}, "result_key": result_key}, logger=False)
        self.net, self.num_classes = net, int(num_classes)
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.channels_last = bool(getattr(net, "channels_last", False))
        # kept out of the module registry: registering it would store every weight twice in checkpoints
        self.__dict__["_forward_net"] = torch.compile(net) if getattr(net, "compile_forward", False) else net
        self._train_hits, self._train_seen = None, 0  # this epoch's training counts (_hits) and images
        self.test_prefix = "test"  # train() tests the best-validation checkpoint under another prefix
        self.last_validation: tuple[int, int, dict[str, float]] | None = None  # (epoch, global step, metrics)

    @property
    def config(self) -> dict[str, Any]:
        return self.hparams["cfg"]

    @property
    def relu_output(self) -> bool:
        """Whether a ReLU follows the class conv (the paper's final ReLU): then all-negative scores are dead."""
        convs, names = conv_layer_names(self.net), list(self.net._modules)
        return bool(convs) and any(isinstance(self.net._modules[n], nn.ReLU)
                                   for n in names[names.index(convs[-1]) + 1:])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self._forward_net(x)

    def _step(self, batch, stage: str):
        logits, y = self(batch[0]), batch[1]
        loss = F.cross_entropy(logits.float(), y)
        on_step, n = stage == "train", len(y)
        # sync_dist: values averaged over DDP ranks (a no-op on one device; a scalar all-reduce per step else)
        self.log(f"{stage}/loss", loss, on_step=on_step, on_epoch=True, prog_bar=stage in ("train", "val"),
                 batch_size=n, sync_dist=True)
        if on_step:  # a self.log call costs ~1 ms of host time, more than a GPU step of these networks: the
            # training counts are summed on the device and logged once an epoch (_log_train_counts)
            hits = self._hits(logits.detach(), y)
            self._train_hits = hits if self._train_hits is None else self._train_hits + hits
            self._train_seen += n
        else:
            self._log_rates(stage, self._hits(logits, y), n)
        return loss

    def _log_rates(self, stage: str, hits: torch.Tensor, n: int) -> None:
        for i, name in enumerate(COUNTS[:len(hits)]):
            self.log(f"{stage}/{name}", hits[i] / n, on_step=False, on_epoch=True, prog_bar=stage == "val" and i == 0,
                     batch_size=n, sync_dist=True)

    def _hits(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """[correct top-1, live (any class score > 0: DivergenceMonitor), (correct top-5)], on the device."""
        counts = [(logits.argmax(dim=1) == y).sum(), (logits > 0).any(dim=1).sum()]
        if self.num_classes > 5:  # top-5 (ImageNet's second number); trivially 1 with 5 classes or fewer
            counts.append((logits.topk(5, dim=1).indices == y[:, None]).any(dim=1).sum())
        return torch.stack(counts).float()

    def training_step(self, batch, batch_idx):
        loss = self._step(batch, "train")
        trainer = self._trainer  # None when called outside a Trainer
        if trainer is not None and batch_idx + 1 == trainer.num_training_batches:  # before epoch-end callbacks
            self._log_train_counts()
        return loss

    def _log_train_counts(self) -> None:
        if self._train_hits is not None:  # the epoch's image count as batch size: the same mean as every step's
            self._log_rates("train", self._train_hits, self._train_seen)
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
        # a run resumed after its last epoch reuses it, as the uninterrupted run does (no extra CSV row)
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
        opt, max_epochs = self.optimizer_factory(self.parameters()), int(self.trainer.max_epochs)
        self.steps_per_epoch = max(1, self.trainer.estimated_stepping_batches // max(1, max_epochs))  # recorded
        sched = self.scheduler_factory(opt, max_epochs=max_epochs, steps_per_epoch=self.steps_per_epoch)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step", "name": "lr"}}


def load_checkpoint(ckpt: str | Path, map_location: str | torch.device = "cpu") -> ImageClassifier:
    """A run's ImageClassifier from its checkpoint's config, read as data (config.records), and weights."""
    path = Path(ckpt).expanduser()
    valid = "a last.ckpt or best.ckpt written by python -m allconv_sweep (<run>/checkpoints/)"
    if not path.is_file():
        raise UserError(f"ckpt={ckpt}: no such file; valid: {valid}")

    def unreadable(e: Exception) -> UserError:  # pickle, zip, key and shape errors all mean "not one of ours"
        why = " ".join(str(e).split())[:160]
        return UserError(f"ckpt={ckpt}: cannot be read as a checkpoint ({type(e).__name__}: {why}); valid: {valid}")

    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
        stored, result_key = state["hyper_parameters"]["cfg"], state["hyper_parameters"].get("result_key")
        result_key = result_key if isinstance(result_key, str) else None
    except Exception as e:  # noqa: BLE001
        raise unreadable(e) from None
    run_cfg = run_config_from_record(stored, path)  # its refusal is the whole story: not wrapped below
    try:
        model = ImageClassifier(build(run_cfg.model, _convert_="all"), int(run_cfg.data.num_classes),
                                config=to_container(run_cfg), result_key=result_key)
        model.load_state_dict(state["state_dict"])
    except Exception as e:  # noqa: BLE001
        raise unreadable(e) from None
    return model
