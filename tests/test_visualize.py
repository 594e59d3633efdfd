"""Backprop, deconvnet and guided backpropagation (paper, Section 5) and the visualize entry point."""

from __future__ import annotations

import copy
import functools
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from matplotlib.image import imread
from omegaconf import OmegaConf
from torch import nn

from allconv_sweep.config import compose, config_dir
from allconv_sweep.errors import UserError
from allconv_sweep.inspection import attribution
from allconv_sweep.inspection.attribution import RULES, activation_layer, forward_to, reconstruct, relu_rule
from allconv_sweep.inspection.panels import GAP_PX, HEADER_PX, LABEL_PX
from allconv_sweep.inspection.targets import _blank_for, crop_box, default_layer
from allconv_sweep.inspection.visualize import visualize
from conftest import make_cfg


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Batches here are a few images: one thread is as fast as two and does not fight the other core."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
CIFAR_NETS = [f"{v}_{f}" for f in "abc" for v in ("model", "strided_cnn", "convpool_cnn", "all_cnn")]


# -- helpers ------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def _resolved(overrides: tuple[str, ...]) -> dict:
    cfg = compose(list(overrides))
    cfg.paths.output_dir = "unused"  # ${hydra:runtime.output_dir} exists only under @hydra.main
    return OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)


def net_for(*overrides: str, seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    net = instantiate(_resolved(overrides)["model"])
    for m in net.modules():  # non-trivial BatchNorm statistics, so eval mode matters
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    return net


def viz_cfg(out: Path, ckpt: Path | str, *overrides: str):
    """conf/visualize.yaml composed as the command line would, writing to ``out``."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return hydra_compose("visualize", overrides=[f"ckpt={ckpt}", f"output_dir={out}", "device=cpu",
                                                     *overrides])


def snapshot(net: nn.Module, x: torch.Tensor) -> dict:
    """Everything visualization could disturb: weights, buffers, grads, modes, flags, hooks, outputs."""
    modes = {n: m.training for n, m in net.named_modules()}
    net.eval()
    with torch.no_grad():
        out = net(x).clone()
    for n, m in net.named_modules():
        m.training = modes[n]
    return {
        "state": {k: v.detach().clone() for k, v in net.state_dict().items()},
        "grads": {n: None if p.grad is None else p.grad.clone() for n, p in net.named_parameters()},
        "requires_grad": {n: p.requires_grad for n, p in net.named_parameters()},
        "modes": modes,
        "hooks": {n: (len(m._forward_hooks), len(m._forward_pre_hooks), len(m._backward_hooks),
                      len(m._backward_pre_hooks)) for n, m in net.named_modules()},
        "out": out,
    }


def assert_same(a: dict, b: dict) -> None:
    assert a["modes"] == b["modes"] and a["requires_grad"] == b["requires_grad"] and a["hooks"] == b["hooks"]
    assert a["state"].keys() == b["state"].keys()
    assert all(torch.equal(a["state"][k], b["state"][k]) for k in a["state"])
    assert all((a["grads"][k] is None and b["grads"][k] is None) or torch.equal(a["grads"][k], b["grads"][k])
               for k in a["grads"])
    assert torch.equal(a["out"], b["out"])


def png_size(path: Path) -> tuple[int, int]:
    h, w = imread(str(path)).shape[:2]
    return w, h


# -- the three rules, by hand -------------------------------------------------------------------------
def _conv1x1(cin: int, weights: list[float]) -> nn.Conv2d:
    conv = nn.Conv2d(cin, len(weights) // cin, 1, bias=False)
    conv.weight.data = torch.tensor(weights, dtype=torch.float32).view(len(weights) // cin, cin, 1, 1)
    return conv


def test_rules_by_hand_on_one_pixel():
    # x -> f = (x, x, -x, -x) -> ReLU -> out = 2a0 - 3a1 + 5a2 - 7a3; so R at the ReLU = (2, -3, 5, -7).
    # x = +1: f > 0 on units 0, 1.  backprop: (2,-3,0,0) -> dx = 2-3 = -1;  deconvnet: (2,0,5,0) -> 2-5 = -3;
    #         guided: (2,0,0,0) -> 2.
    # x = -1: f > 0 on units 2, 3.  backprop: (0,0,5,-7) -> -5+7 = 2;  deconvnet: -3 (ignores f);
    #         guided: (0,0,5,0) -> -5.
    net = nn.Sequential()
    net.add_module("conv1", _conv1x1(1, [1, 1, -1, -1]))
    net.add_module("relu1", nn.ReLU())
    net.add_module("conv2", _conv1x1(4, [2, -3, 5, -7]))
    x = torch.tensor([1.0, -1.0]).view(2, 1, 1, 1)
    expected = {"backprop": [-1, 2], "deconvnet": [-3, -3], "guided_backprop": [2, -5]}
    for rule in RULES:
        rec, value, pos = reconstruct(net, x, "conv2", [0, 0], rule)
        assert rec.flatten().tolist() == expected[rule], rule
        assert value.tolist() == [2 * 1 - 3 * 1, 5 * 1 - 7 * 1]  # the forward pass is the ordinary one
        assert pos.tolist() == [[0, 0], [0, 0]]


def test_rules_by_hand_through_max_pooling_switches():
    # x = (-1, 3, 2, -4) on one row; conv1 gives f0 = x, f1 = -x; ReLU; 1x2 max-pool (switches: channel 0
    # -> pixels 1, 2; channel 1 -> pixels 0, 3); out = p0 - 2 p1. Seed out at column 0:
    # R at the pool = (1, -2) -> to the switches: channel 0 pixel 1 gets 1, channel 1 pixel 0 gets -2.
    # backprop: f0[1] = 3 > 0 keeps 1; f1[0] = 1 > 0 keeps -2 -> dx = 1*(0,1,0,0) - 1*(-2,0,0,0) = (2,1,0,0).
    # deconvnet and guided: -2 is cut -> (0,1,0,0).
    net = nn.Sequential()
    net.add_module("conv1", _conv1x1(1, [1, -1]))
    net.add_module("relu1", nn.ReLU())
    net.add_module("pool1", nn.MaxPool2d((1, 2), (1, 2)))
    net.add_module("conv2", _conv1x1(2, [1, -2]))
    x = torch.tensor([-1.0, 3.0, 2.0, -4.0]).view(1, 1, 1, 4)
    expected = {"backprop": [2, 1, 0, 0], "deconvnet": [0, 1, 0, 0], "guided_backprop": [0, 1, 0, 0]}
    for rule in RULES:
        rec, value, _ = reconstruct(net, x, "conv2", [0], rule, positions=torch.tensor([[0, 0]]))
        assert rec.flatten().tolist() == expected[rule], rule
        assert value.tolist() == [3 - 2 * 1]
    # the second output column routes to the other switches (pixel 2 of channel 0, pixel 3 of channel 1)
    rec, value, _ = reconstruct(net, x, "conv2", [0], "backprop", positions=torch.tensor([[0, 1]]))
    assert rec.flatten().tolist() == [0, 0, 1, 2] and value.tolist() == [2 - 2 * 4]


def test_guided_equals_backprop_where_every_backward_signal_is_positive():
    torch.manual_seed(0)
    net = net_for("model=convpool_cnn_a", "model.batch_norm=true")  # max-pooling and BatchNorm
    x = torch.randn(3, 3, 32, 32)
    layer = activation_layer(net, "conv7")
    signed = {r: reconstruct(net, x, layer, [1, 5, 9], r)[0] for r in RULES}
    assert not torch.equal(signed["guided_backprop"], signed["backprop"])  # the control: they differ here
    with torch.no_grad():  # non-negative weights and BN scales: every R >= 0, so max(R, 0) changes nothing
        for m in net.modules():
            if isinstance(m, (nn.Conv2d, nn.BatchNorm2d)):
                m.weight.abs_()
    pos = {r: reconstruct(net, x, layer, [1, 5, 9], r)[0] for r in RULES}
    assert (pos["backprop"] >= 0).all() and pos["backprop"].abs().sum() > 0
    assert torch.equal(pos["guided_backprop"], pos["backprop"])
    # deconvnet still passes R where f <= 0, which backprop and guided backprop block
    assert (pos["deconvnet"] >= pos["backprop"]).all() and not torch.equal(pos["deconvnet"], pos["backprop"])


def test_deconvnet_needs_max_pooling_switches_to_depend_on_the_image():
    # the paper's point: without max-pooling (All-CNN) the deconvnet ignores the image; guided backprop does not
    x = torch.randn(2, 3, 16, 16)
    at = torch.tensor([[1, 1], [1, 1]])  # the same unit at the same position in both images
    for model, image_dependent in (("all_cnn_c", False), ("model_c", True)):
        net = net_for(f"model={model}").eval()
        with torch.no_grad():  # a unit active in both images there, so guided backprop is not all zero
            unit = int(((forward_to(net, x, "relu5")[:, :, 1, 1] > 0).all(dim=0)).nonzero()[0])
        deconv = reconstruct(net, x, "relu5", [unit, unit], "deconvnet", at)[0]
        guided = reconstruct(net, x, "relu5", [unit, unit], "guided_backprop", at)[0]
        assert torch.equal(deconv[0], deconv[1]) != image_dependent, model
        assert not torch.equal(guided[0], guided[1])


# -- every network the builder makes ------------------------------------------------------------------
NETS = [(("model=" + n,), 16) for n in CIFAR_NETS] + [  # 16 px: every CIFAR net still has a 2x2 top map
    (("model=all_cnn_c", "model.batch_norm=true"), 16),
    (("model=model_b", "model.batch_norm=true", "model.head=fc"), 16),
    (("model=all_cnn_c", "model.head=fc", "model.final_relu=false"), 16),
    (("model=all_cnn_imagenet", "data=imagenet", "data.num_classes=10"), 64),  # 224 in use; >= 59 is valid
]


@pytest.mark.parametrize("overrides,size", NETS, ids=[" ".join(o) for o, _ in NETS])
def test_backprop_rule_is_the_gradient_and_the_net_is_left_as_it_was(overrides, size):
    net = net_for(*overrides)
    reference = copy.deepcopy(net).eval()  # plain autograd: eval mode, no hooks
    net.train()
    x = torch.randn(2, 3, size, size)
    before = snapshot(net, x)
    last = list(dict(net.named_children()))[-1]
    units = [1, 3]
    for layer in (activation_layer(net, default_layer(net, "units")), last):
        rec, values, pos = reconstruct(net, x, layer, units, "backprop")
        xr = x.clone().requires_grad_(True)
        picked = forward_to(reference, xr, layer)[torch.arange(2), units]
        ref_values = picked if picked.dim() == 1 else picked[torch.arange(2), pos[:, 0], pos[:, 1]]
        (ref,) = torch.autograd.grad(ref_values.sum(), xr)
        torch.testing.assert_close(values, ref_values.detach())
        torch.testing.assert_close(rec, ref, rtol=1e-4, atol=1e-6)
    for rule in ("deconvnet", "guided_backprop"):  # through every layer type of this net
        r, v, _ = reconstruct(net, x, last, units, rule)
        assert r.shape == x.shape and torch.isfinite(r).all()
        torch.testing.assert_close(v, values)
    assert_same(before, snapshot(net, x))


def test_model_left_as_it_was_after_a_failure_halfway(monkeypatch):
    net = net_for("model=all_cnn_c", "model.batch_norm=true")
    net.train()
    net.conv1.weight.requires_grad_(False)  # mixed flags must come back exactly
    net.conv2.weight.grad = torch.ones_like(net.conv2.weight)  # and an accumulated grad untouched
    x = torch.randn(2, 3, 32, 32)
    before = snapshot(net, x)
    n_relus = sum(isinstance(m, nn.ReLU) for m in net.modules())

    with relu_rule(net, "guided_backprop"):  # while active: hooked, eval mode, same forward values
        assert sum(len(m._forward_hooks) for m in net.modules() if isinstance(m, nn.ReLU)) == n_relus
        assert not net.training and not any(p.requires_grad for p in net.parameters())
        with torch.no_grad():
            assert torch.equal(net(x), before["out"])
    assert_same(before, snapshot(net, x))

    with pytest.raises(RuntimeError, match="forced"):
        with relu_rule(net, "deconvnet"):
            net(x)
            raise RuntimeError("forced failure inside the block")
    assert_same(before, snapshot(net, x))

    def fail(*args, **kwargs):  # fails after the hooked forward pass, in the middle of reconstruct()
        raise RuntimeError("forced failure in the backward pass")

    monkeypatch.setattr(attribution.torch.autograd, "grad", fail)
    for rule in RULES:
        with pytest.raises(RuntimeError, match="forced"):
            reconstruct(net, x, "relu6", [0, 1], rule)
    monkeypatch.undo()
    assert_same(before, snapshot(net, x))


# -- receptive fields and the unconditioned deconvnet -------------------------------------------------
def test_crop_box_holds_each_units_reconstruction():
    from allconv_sweep.model.nets import receptive_fields

    net = net_for("model=all_cnn_c")
    field = receptive_fields(net)["relu6"]
    assert field[:2] == (19, 4)  # 3x3 convs: 3, 5, 7 (stride 2), 11, 15, 19 (stride 2)
    assert crop_box((0, 0), field, (32, 32), False) == (slice(0, 19), slice(0, 19))  # shifted inside
    assert crop_box((4, 3), field, (32, 32), False) == (slice(7, 26), slice(3, 22))  # centred at 16, 12
    x = torch.randn(3, 3, 32, 32)
    positions = torch.tensor([[0, 0], [4, 3], [7, 7]])
    rec, _, _ = reconstruct(net, x, "relu6", [0, 0, 0], "deconvnet", positions)
    for i, p in enumerate(positions.tolist()):
        rows, cols = crop_box(tuple(p), field, (32, 32), False)
        inside = torch.zeros(32, 32, dtype=torch.bool)
        inside[rows, cols] = True
        assert rec[i].abs().sum() > 0 and (rec[i][:, ~inside] == 0).all()


def test_unconditioned_deconvnet_shows_conv1_filters_and_needs_no_full_image():
    from allconv_sweep.model.nets import receptive_fields

    net = net_for("model=all_cnn_c")
    units = list(range(8))
    centre = torch.tensor([[16, 16]] * len(units))
    rec, _, _ = reconstruct(net, torch.zeros(len(units), 3, 32, 32), "relu1", units, "deconvnet", centre)
    torch.testing.assert_close(rec[:, :, 15:18, 15:18], net.conv1.weight[units].detach())
    # conv3's field is 7x7: the small blank image gives exactly the full-size reconstruction
    field = receptive_fields(net)["relu3"]
    blank, c, box = _blank_for(net, "relu3", field, (3, 32, 32))
    assert blank.shape[-1] < 32
    small, _, _ = reconstruct(net, blank.expand(len(units), -1, -1, -1), "relu3", units, "deconvnet",
                              c.expand(len(units), 2))
    full, _, _ = reconstruct(net, torch.zeros(len(units), 3, 32, 32), "relu3", units, "deconvnet",
                             torch.tensor([[8, 8]] * len(units)))
    fbox = crop_box((8, 8), field, (32, 32), False)
    torch.testing.assert_close(small[:, :, box[0], box[1]], full[:, :, fbox[0], fbox[1]])


# -- figures from a checkpoint ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    """All-CNN-C trained one epoch on the tiny fake data (about 4 s)."""
    from allconv_sweep.training.train import train

    tmp = tmp_path_factory.mktemp("viz_train")
    m = train(make_cfg(tmp))
    assert m["status"] == "ok"
    return tmp / "run" / "checkpoints" / "last.ckpt"


def expected_size(nrows: int, ncols: int, panel: int) -> tuple[int, int]:
    return ncols * panel + (ncols + 1) * GAP_PX, HEADER_PX + nrows * (LABEL_PX + panel + GAP_PX) + GAP_PX


def test_figures_for_a_fake_checkpoint(ckpt, tmp_path):
    panel = 64
    assert expected_size(3, 4, panel) == (276, 340)  # the documented layout, in numbers
    out = tmp_path / "units"
    paths = visualize(viz_cfg(out, ckpt, "layer=conv6", "units=[0,2]", "top_k=3", f"panel_px={panel}"))
    assert [p.name for p in paths] == ["units_conv6_unit000.png", "units_conv6_unit002.png", "index.md"]
    for p in paths[:-1]:
        assert png_size(p) == (276, 340)  # 3 rows x (image + 3 methods)
        img = imread(str(p))[..., :3]
        # the guided-backprop panel of the first row (last column) is a picture, not flat gray
        y0, x0 = HEADER_PX + LABEL_PX, GAP_PX + 3 * (panel + GAP_PX)
        assert img[y0:y0 + panel, x0:x0 + panel].std() > 0.01
    index = (out / "index.md").read_text()
    assert "(units_conv6_unit000.png)" in index and "(units_conv6_unit002.png)" in index
    assert "0.5 + 0.5 * r / max|r|" in index  # the normalization is stated where the figures are

    out = tmp_path / "class"
    paths = visualize(viz_cfg(out, ckpt, "target=class", "top_k=2", "methods=[guided_backprop]", f"panel_px={panel}"))
    assert [p.name for p in paths] == ["class_val.png", "index.md"]
    assert png_size(paths[0]) == expected_size(2, 2, panel)

    out = tmp_path / "filters"
    paths = visualize(viz_cfg(out, ckpt, "target=filters", "layer=conv2", "units=[0,1,2,3,4]", f"panel_px={panel}"))
    assert [p.name for p in paths] == ["filters_conv1_weights.png", "filters_conv1_deconvnet.png",
                                       "filters_conv2_deconvnet.png", "index.md"]
    assert all(png_size(p) == expected_size(2, 3, panel) for p in paths[:-1])  # 5 panels: a 3-wide grid


def test_bad_input_gets_one_line_naming_what_is_valid(ckpt, tmp_path):
    def error(*overrides: str, path=ckpt) -> str:
        with pytest.raises(UserError) as e:
            visualize(viz_cfg(tmp_path / "out", path, *overrides))
        msg = str(e.value)
        assert "\n" not in msg
        return msg

    msg = error("layer=conv12")
    assert msg.startswith("layer=conv12: no such layer in all_cnn_c; valid: ") and "conv6, relu6" in msg
    assert error("layer=conv6", "units=[0,192]") == "units=[0, 192]: conv6 has 192 units; valid: 0..191"
    assert error("target=filters", "units=[96]") == "units=[96]: conv1 has 96 units; valid: 0..95"
    assert "choose one or more of backprop, deconvnet, guided_backprop" in error("methods=[saliency]")
    assert error("target=maps") == "target='maps'; valid: units, class, filters"
    assert "only 32 val images are searched; valid: 1..32" in error("top_k=33")
    bad = tmp_path / "garbage.ckpt"
    bad.write_bytes(b"not a checkpoint\n" * 10)
    msg = error(path=bad)
    assert msg.startswith(f"ckpt={bad}: cannot be read as a checkpoint") and "valid: a last.ckpt or best.ckpt" in msg
    assert error(path=tmp_path / "nope.ckpt").startswith(f"ckpt={tmp_path / 'nope.ckpt'}: no such file; valid:")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").glob("*.png"))


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "allconv_sweep.visualize", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_cli_bad_layer_exits_2_with_one_line(ckpt, tmp_path):
    r = _cli(f"ckpt={ckpt}", "layer=conv12", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: layer=conv12: no such layer in all_cnn_c; valid: conv1")


def test_cli_writes_figures_into_its_run_folder(ckpt, tmp_path):
    run = tmp_path / "run"  # target=filters reads no data: the run is mostly the interpreter's start-up
    r = _cli(f"ckpt={ckpt}", "target=filters", "layer=conv1", "units=[0,1]", "panel_px=32",
             "data.root=/moved/elsewhere", f"hydra.run.dir={run}", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    index = (run / "index.md").read_text()
    for name in ("filters_conv1_weights.png", "filters_conv1_deconvnet.png"):
        assert f"({name})" in index and png_size(run / name) == expected_size(1, 2, 32)


# -- the ImageNet network, from image folders ---------------------------------------------------------
def test_imagenet_checkpoint_figures(tmp_path):
    import lightning as L
    from PIL import Image

    from allconv_sweep.model.module import ImageClassifier

    classes = ["n0001", "n0002"]
    g = torch.Generator().manual_seed(0)
    for split in ("train", "val"):
        for k, wnid in enumerate(classes):
            (tmp_path / "in" / split / wnid).mkdir(parents=True)
            for i in range(3):
                px = (torch.rand(80, 90, 3, generator=g) * 255).to(torch.uint8).numpy()
                Image.fromarray(px).save(tmp_path / "in" / split / wnid / f"{i}.JPEG")
    cfg = dict(_resolved(("model=all_cnn_imagenet", "data=imagenet", f"data.root={tmp_path / 'in'}",
                          "data.num_classes=2", "data.image_size=64", "data.resize=72", "data.num_workers=0")))
    model = ImageClassifier(instantiate(cfg["model"]), 2, config=cfg)
    # what Lightning's checkpoint holds that load_classifier reads (no training needed)
    path = tmp_path / "last.ckpt"
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams),
                "pytorch-lightning_version": L.__version__}, path)
    paths = visualize(viz_cfg(tmp_path / "out", path, "layer=conv6", "units=[5]", "top_k=2", "panel_px=48",
                              "methods=[guided_backprop]"))
    assert [p.name for p in paths] == ["units_conv6_unit005.png", "index.md"]
    assert png_size(paths[0]) == expected_size(2, 2, 48)
    assert "(units_conv6_unit005.png)" in (tmp_path / "out" / "index.md").read_text()
