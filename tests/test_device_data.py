"""The device-resident data path and batched augmentation (issue 5), on CPU tensors.

- TensorBatches yields every training image exactly once per epoch, in an order that changes with the
  epoch and the seed and that Lightning pins to the epoch number (set_epoch), so a resume sees it again;
- flip_translate draws flips and translations from the intended distribution (uniform shifts in
  -5..5 per axis, zero fill, flips with p=0.5), the same family as torchvision's per-sample
  RandomCrop(padding=5) + RandomHorizontalFlip, and applies it identically through the datamodule's
  device-resident and DataLoader paths;
- bf16-mixed, 16-mixed, channels_last and torch.compile runs of train() give finite losses, channels_last
  does not change them, and a compiled run's checkpoint has the plain network's keys.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from allconv_sweep.data.augment import flip_translate
from allconv_sweep.data.datamodule import FakeDataModule, ImageDataModule
from allconv_sweep.data.loader import TensorBatches
from conftest import assert_close_to_scale

S = 5          # max shift
H = W = 12     # small coded images: the centre pixel (6, 6) survives every shift of up to 5


# -- coded images: every pixel says which image and which source position it came from ----------------
def coded(n: int, c: int = 1) -> torch.Tensor:
    """x[i, :, r, q] = i * 1000 + r * W + q + 1 (0 is the zero fill); exact in float32 for n < 16000."""
    pos = (torch.arange(H)[:, None] * W + torch.arange(W)[None, :] + 1).float()
    return (torch.arange(n).float()[:, None, None, None] * 1000 + pos).expand(n, c, H, W).contiguous()


def reference(x: torch.Tensor, dy: int, dx: int, flip: bool) -> torch.Tensor:
    """One image moved down by dy and right by dx (zero fill), then mirrored left-right if ``flip``:
    the crop of the zero-padded image at (S - dy, S - dx), as torchvision's RandomCrop(padding=S)."""
    p = torch.nn.functional.pad(x, (S, S, S, S))
    out = p[:, S - dy:S - dy + H, S - dx:S - dx + W]
    return out.flip(-1) if flip else out


def decode(out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(image id, dy, dx, flipped) of each augmented image, read off its centre pixels."""
    # source columns of (6, 6) and (6, 5) are inside the image for every shift of up to 5, flipped or not
    centre, left = out[:, 0, 6, 6], out[:, 0, 6, 5]
    ids = torch.div(centre, 1000, rounding_mode="floor").long()
    pos = (centre - ids * 1000 - 1).long()
    src_r, src_c = pos // W, pos % W
    flipped = (left - centre) > 0
    dy = 6 - src_r
    dx = torch.where(flipped, (W - 1 - 6) - src_c, 6 - src_c)
    return ids, dy, dx, flipped


def check_exact(x: torch.Tensor, out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every output is exactly the reference transform of its source image; returns (dy, dx, flipped)."""
    ids, dy, dx, flipped = decode(out)
    for k in range(len(out)):
        expect = reference(x[ids[k]], int(dy[k]), int(dx[k]), bool(flipped[k]))
        assert torch.equal(out[k], expect), f"image {k}: not a shifted/flipped copy of image {int(ids[k])}"
    return dy, dx, flipped


def chi2_uniform(values: torch.Tensor, support: range) -> float:
    counts = torch.stack([(values == v).sum() for v in support]).double()
    assert int(counts.sum()) == len(values), "values outside the support"
    expected = len(values) / len(support)
    return float(((counts - expected) ** 2 / expected).sum())


# A chi-square with k-1 degrees of freedom has mean k-1 and sd sqrt(2(k-1)); every draw below is
# seeded, so these bounds (p < 1e-4 for a correct sampler) make a deterministic test.
def assert_uniform_shifts_and_flips(dy, dx, flipped) -> None:
    shifts = range(-S, S + 1)
    assert chi2_uniform(dy, shifts) < 35, "vertical shifts not uniform on -5..5"
    assert chi2_uniform(dx, shifts) < 35, "horizontal shifts not uniform on -5..5"
    assert chi2_uniform(flipped.long(), range(2)) < 16, "flips not p=0.5"


# -- TensorBatches -----------------------------------------------------------------------------------
def ids_of_epoch(loader) -> torch.Tensor:
    return torch.cat([xb.flatten() for xb, _ in loader])


def test_each_image_exactly_once_per_epoch_in_a_new_order():
    n, bs = 103, 10  # a partial last batch
    x = torch.arange(n).float()[:, None]
    y = torch.arange(n)
    loader = TensorBatches(x, y, bs, shuffle=True, seed=3)
    assert len(loader) == 11
    epochs = []
    for _ in range(3):
        batches = list(loader)
        assert [len(b[1]) for b in batches] == [10] * 10 + [3]
        for xb, yb in batches:  # images and labels stay paired
            assert torch.equal(xb.flatten().long(), yb)
        ids = ids_of_epoch(batches)
        assert torch.equal(torch.sort(ids).values, x.flatten()), "not every image exactly once"
        epochs.append(ids)
    assert not torch.equal(epochs[0], epochs[1]) and not torch.equal(epochs[1], epochs[2])

    other_seed = ids_of_epoch(TensorBatches(x, y, bs, shuffle=True, seed=4))
    same_seed = ids_of_epoch(TensorBatches(x, y, bs, shuffle=True, seed=3))
    assert not torch.equal(other_seed, epochs[0])
    assert torch.equal(same_seed, epochs[0])


def test_set_epoch_gives_the_order_of_that_epoch():
    x, y = torch.arange(50).float()[:, None], torch.arange(50)
    run = TensorBatches(x, y, 8, shuffle=True, seed=0)
    orders = [ids_of_epoch(run) for _ in range(3)]
    resumed = TensorBatches(x, y, 8, shuffle=True, seed=0)
    resumed.set_epoch(2)
    assert torch.equal(ids_of_epoch(resumed), orders[2])
    assert torch.equal(orders[1], x.flatten()[run.order(1)])


def test_unshuffled_and_drop_last():
    x, y = torch.arange(25).float()[:, None], torch.arange(25)
    assert torch.equal(ids_of_epoch(TensorBatches(x, y, 10, shuffle=False)), x.flatten())
    dropped = TensorBatches(x, y, 10, shuffle=True, drop_last=True)
    assert len(dropped) == 2
    ids = ids_of_epoch(dropped)
    assert len(ids) == 20 and len(set(ids.tolist())) == 20


class _Recorder(L.LightningModule):
    """Records the image ids of every training batch; one parameter so the optimizer has work."""

    def __init__(self, loader):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.loader = loader
        self.seen: list[torch.Tensor] = []

    def train_dataloader(self):
        return self.loader

    def training_step(self, batch, batch_idx):
        self.seen.append(batch[0].flatten().clone())
        return (self.w * batch[0].float().mean()).sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


def test_lightning_pins_the_order_to_the_epoch_number():
    """Lightning calls set_epoch(e) before epoch e (as for a DataLoader's sampler): a loader whose own
    counter is off (say, rebuilt at a resume) still gives epoch e the order of epoch e."""
    n, bs = 40, 8
    x, y = torch.arange(n).float()[:, None], torch.arange(n)
    loader = TensorBatches(x, y, bs, shuffle=True, seed=1)
    loader.epoch = 7
    module = _Recorder(loader)
    L.Trainer(max_epochs=2, accelerator="cpu", logger=False, enable_checkpointing=False,
              enable_progress_bar=False, enable_model_summary=False).fit(module)
    seen = torch.cat(module.seen).long()
    assert len(seen) == 2 * n
    for e in range(2):
        assert torch.equal(seen[e * n:(e + 1) * n], loader.order(e)), f"epoch {e} not in the order of epoch {e}"


# -- flip_translate ----------------------------------------------------------------------------------
def test_flip_translate_is_an_exact_shift_and_flip_with_the_intended_distribution():
    n = 2200
    x = coded(n, c=2)
    out = flip_translate(x, max_shift=S, flip=True, generator=torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == x.dtype
    dy, dx, flipped = check_exact(x, out)
    assert torch.equal(decode(out)[0], torch.arange(n)), "images were mixed up"
    assert_uniform_shifts_and_flips(dy, dx, flipped)
    joint = ((dy + S) * (2 * S + 1) + (dx + S)) * 2 + flipped.long()  # independence: the 242 joint cells
    assert chi2_uniform(joint, range(2 * (2 * S + 1) ** 2)) < 241 + 6 * math.sqrt(2 * 241)


def test_flip_translate_switches():
    x = coded(400)
    g = torch.Generator().manual_seed(1)
    dy, dx, flipped = check_exact(x, flip_translate(x, max_shift=S, flip=False, generator=g))
    assert not flipped.any() and dy.abs().max() == S and dx.abs().max() == S
    dy, dx, _ = check_exact(x, flip_translate(x, max_shift=2, flip=True, generator=g))
    assert dy.abs().max() == 2 and dx.abs().max() == 2
    assert torch.equal(flip_translate(x, max_shift=0, flip=False), x)


def test_torchvision_per_sample_transforms_draw_from_the_same_distribution():
    """The per-sample CIFAR+ recipe (pad 5, random crop, random flip) lands in the same 242 cells with
    the same uniform weights: flip_translate is that recipe on whole batches."""
    from torchvision.transforms import v2

    torch.manual_seed(0)
    t = v2.Compose([v2.RandomCrop(H, padding=S, fill=0), v2.RandomHorizontalFlip(0.5)])
    x = coded(1100)
    out = torch.stack([t(img) for img in x])
    dy, dx, flipped = check_exact(x, out)
    assert_uniform_shifts_and_flips(dy, dx, flipped)


# -- the datamodule: both paths, same augmentation ------------------------------------------------------
def coded_datamodule(on_device: bool, n: int) -> ImageDataModule:
    dm = FakeDataModule(name="fake", num_classes=10, batch_size=100, eval_batch_size=100, val_size=0,
                        on_device=on_device, num_workers=0, preprocess={"name": "none"},
                        augment={"name": "flip_translate", "max_shift": S, "flip": True}, seed=0)
    x = coded(n)
    dm.splits = {"train": (x, torch.arange(n) % 10), "val": (x[:0], torch.zeros(0, dtype=torch.long)),
                 "test": (x[:100], torch.arange(100) % 10)}
    dm.trainer = SimpleNamespace(training=True, world_size=1)  # what the hooks read of a Trainer
    return dm


@pytest.mark.parametrize("on_device", [True, False], ids=["device-resident", "dataloader"])
def test_datamodule_paths_give_each_image_once_with_the_same_augmentation(on_device):
    n = 1100
    dm = coded_datamodule(on_device, n)
    dm.use_device(torch.device("cpu"))
    loader = dm.train_dataloader()
    assert isinstance(loader, TensorBatches if on_device else DataLoader)
    torch.manual_seed(0)
    epochs = []
    for _ in range(2):
        outs = [dm.on_after_batch_transfer(batch, 0)[0] for batch in loader]
        out = torch.cat(outs)
        ids = decode(out)[0]
        assert torch.equal(torch.sort(ids).values, torch.arange(n)), "not every image exactly once"
        dy, dx, flipped = check_exact(dm.splits["train"][0], out)
        assert_uniform_shifts_and_flips(dy, dx, flipped)
        epochs.append(ids)
    assert not torch.equal(epochs[0], epochs[1])

    dm.trainer = SimpleNamespace(training=False, world_size=1)  # evaluation: never augmented
    xb, yb = next(iter(dm.test_dataloader()))
    assert torch.equal(dm.on_after_batch_transfer((xb, yb), 0)[0], xb)


def test_the_same_draws_give_the_same_images_on_both_paths():
    """Same generator state, same batch: the hook does the same thing whichever loader made the batch."""
    a, b = coded_datamodule(True, 200), coded_datamodule(False, 200)
    batch = (a.splits["train"][0][:100], a.splits["train"][1][:100])
    torch.manual_seed(5)
    out_a = a.on_after_batch_transfer(batch, 0)[0]
    torch.manual_seed(5)
    out_b = b.on_after_batch_transfer(batch, 0)[0]
    assert torch.equal(out_a, out_b) and not torch.equal(out_a, batch[0])


# -- precision and memory layout: finite losses on data=fake ---------------------------------------------
def epoch_losses(run_dir: Path) -> list[float]:
    rows = list(csv.DictReader(open(run_dir / "csv" / "metrics.csv")))
    return [float(r["train/loss_epoch"]) for r in rows if r.get("train/loss_epoch")]


FAST = ["data.train_size=16", "data.val_size=0", "data.test_size=8", "data.batch_size=8",
        "data.eval_batch_size=8", "model.final_relu=false", "augment=flip_translate"]  # bf16 on a CPU is slow


@pytest.mark.parametrize("overrides", [
    ["trainer.precision=bf16-mixed"],
    ["model.channels_last=true"],
    ["model.channels_last=false"],
    ["trainer.precision=16-mixed"],
    ["model.compile=true"],
], ids=["bf16-mixed", "channels_last", "contiguous", "16-mixed", "compile"])
def test_precision_and_layout_runs_have_finite_losses(cfg_factory, overrides, capsys):
    from allconv_sweep.training.train import train

    cfg = cfg_factory(FAST + overrides)
    m = train(cfg)
    assert m["status"] == "ok", m["reason"]
    losses = epoch_losses(Path(cfg.paths.output_dir))
    assert losses and all(math.isfinite(v) for v in losses)
    assert m["test_acc"] is not None and math.isfinite(m["test_acc"])
    from allconv_sweep.training.precision import resolve

    asked = next((o.split("=")[1] for o in overrides if o.startswith("trainer.precision")), "auto")  # the default
    assert m["precision_requested"] == asked
    # metrics.json records what ran: auto as this machine resolves it; Lightning has no fp16 autocast on a
    # CPU and runs 16-mixed as bf16-mixed
    chosen = resolve(asked, "cpu").precision
    ran = "bf16-mixed" if chosen == "16-mixed" and not torch.cuda.is_available() else chosen
    assert m["precision"] == ran
    assert ("runs as bf16-mixed" in capsys.readouterr().out) == (ran != chosen)  # said once, only when it differs
    if "model.compile=true" in overrides:  # the compiled graph is kept out of the checkpoint: plain keys
        from allconv_sweep.model.module import load_checkpoint
        ckpt = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
        state = torch.load(ckpt, weights_only=True)["state_dict"]
        assert state and all(k.startswith("net.") and "_orig_mod" not in k for k in state)
        assert load_checkpoint(str(ckpt)).net.conv1.weight.shape[0] == 96


def test_channels_last_is_layout_only(cfg_factory):
    """The network is stored channels_last when asked, and computes the same function and gradients
    either way (dropout off: its masks are drawn in memory order, so they differ between layouts)."""
    from hydra.utils import instantiate

    from allconv_sweep.config import to_container
    from allconv_sweep.model.module import ImageClassifier

    cfg = to_container(cfg_factory(["model.final_relu=false"]))
    models = {}
    for flag in (True, False):
        cfg["model"]["channels_last"] = flag
        torch.manual_seed(0)
        models[flag] = ImageClassifier(instantiate(cfg["model"]), 10, config=cfg).eval()
        assert models[flag].net.conv1.weight.is_contiguous(memory_format=torch.channels_last) == flag
        models[flag].double()  # float64: see below
        if flag:
            models[flag].net.to(memory_format=torch.channels_last)
    x = torch.randn(4, 3, 32, 32, dtype=torch.float64)
    y = torch.arange(4)
    out = {}
    for flag, model in models.items():
        logits = model(x)
        torch.nn.functional.cross_entropy(logits, y).backward()
        out[flag] = (logits.detach(), model.net.conv1.weight.grad)
    # In float32 the two layouts sum in different orders, and on some CPUs (AVX-512/AMX kernels) that
    # rounding flips a few ReLUs near 0 and moves conv1's gradient by ~0.6% after nine layers. In float64
    # the function itself is compared: a layout bug (channels permuted) differs by order 1, rounding by 1e-12.
    assert_close_to_scale(out[True][0], out[False][0], 1e-9, "logits")
    assert_close_to_scale(out[True][1], out[False][1], 1e-9, "conv1 gradient")


# -- no host syncs per step ------------------------------------------------------------------------------
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU: host syncs exist only there")
def test_device_path_steps_never_wait_for_the_gpu():
    """Batches, augmentation and the divergence monitor's per-step work enqueue work without a host sync
    (torch.cuda.set_sync_debug_mode raises on any synchronizing call). A NaN loss is caught at the epoch's
    end by EarlyStopping(check_finite=True), which reads the epoch's logged loss once."""
    from allconv_sweep.training.callbacks import DivergenceMonitor

    dev = torch.device("cuda")
    x, y = torch.randn(512, 3, 32, 32, device=dev), torch.arange(512, device=dev) % 10
    mon = DivergenceMonitor(10)
    trainer = SimpleNamespace(global_step=0, world_size=1, current_epoch=0, should_stop=False, log_every_n_steps=50)
    loader = TensorBatches(x, y, 128, shuffle=True, seed=0)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for i, (xb, yb) in enumerate(loader):
            out = flip_translate(xb, S, True)
            loss = out.float().mean() + yb.float().mean()
            mon.on_train_batch_end(trainer, None, loss, (xb, yb), i)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert out.device.type == "cuda" and not trainer.should_stop


def test_compiled_training_step_matches_eager():
    """model.compile=true computes the same training step: loss, gradients and batch-norm running
    statistics equal eager mode's to float rounding (dropout off: compiled graphs draw other masks)."""
    import copy

    from test_nets import net_for

    torch.manual_seed(0)
    eager = net_for("all_cnn_c", "model.final_relu=false", "model.batch_norm=true").train()
    for m in eager.modules():
        if isinstance(m, torch.nn.Dropout):
            m.eval()
    eager = eager.to(memory_format=torch.channels_last)
    compiled_net = copy.deepcopy(eager)
    compiled = torch.compile(compiled_net)
    # batch norm's backward magnifies rounding where a channel's batch variance is small, and how much depends on
    # the summation order, hence on the thread count (seed 0, this test's net, AMD EPYC: batch 16 gives 2.2e-6
    # relative at 2 threads but 4.5e-3 at 1 thread, batch 32 2.9e-3 at 2); a wrong compiled gradient is off by
    # order 1, so 2e-2 still catches it on any machine and any number of pytest workers
    x = torch.randn(16, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    y = torch.arange(16) % 10
    losses = []
    for fn in (eager, compiled):
        loss = torch.nn.functional.cross_entropy(fn(x), y)
        loss.backward()
        losses.append(loss.item())
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)
    g_eager, g_comp = eager.conv1.weight.grad, compiled_net.conv1.weight.grad
    assert ((g_eager - g_comp).norm() / g_eager.norm()).item() < 2e-2
    bns = [[m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)] for net in (eager, compiled_net)]
    assert bns[0] and all(torch.allclose(a.running_var, b.running_var, rtol=1e-5) and int(b.num_batches_tracked) == 1
                          for a, b in zip(*bns))
