"""python -m allconv_sweep.visualize: what a trained network responds to (paper, Section 5).

    python -m allconv_sweep.visualize ckpt=<run>/checkpoints/last.ckpt layer=conv6 units=[0,1,2,3] top_k=9
    python -m allconv_sweep.visualize ckpt=... target=class methods=[backprop,deconvnet,guided_backprop]
    python -m allconv_sweep.visualize ckpt=... target=filters layer=conv1

Model, data and preprocessing come from the checkpoint (its saved config); ``conf/visualize.yaml`` only
says what to show. Writes PNGs and an ``index.md`` listing them into ``outputs/visualize/<date>/<time>``.

Display normalization (the one way every reconstruction and filter panel is drawn): a panel ``r`` is
shown as ``0.5 + 0.5 * r / max|r|`` (max over the panel's pixels and colour channels), so zero is mid-gray,
the sign and the colour are kept, and the panel's strongest value reaches black or white. Images are
shown as stored (pixel / 255), not as the network sees them after GCN/ZCA.
"""

from __future__ import annotations

import math
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from torch import nn

from allconv_sweep.config import config_dir
from allconv_sweep.errors import UserError
from allconv_sweep.inspection.attribution import (
    RULES,
    activation_layer,
    evaluating,
    forward_to,
    layer_names,
    reconstruct,
)
from allconv_sweep.inspection.device import device_from
from allconv_sweep.runs import ensure_writable

TARGETS = ("units", "class", "filters")
SPLITS = ("train", "val", "test")
# figure layout in pixels (documented so a figure's size is known in advance)
GAP_PX, LABEL_PX, HEADER_PX, DPI = 4, 28, 48, 100
SCAN_BATCH = 256
NORMALIZATION = ("each reconstruction/filter panel r is drawn as 0.5 + 0.5 * r / max|r| (max over the panel's "
                 "pixels and channels): 0 is mid-gray, sign and colour are kept; images are shown as stored "
                 "(pixel / 255)")


# -- options ---------------------------------------------------------------------------------------
@dataclass
class Options:
    ckpt: str
    target: str
    layer: str | None
    units: list[int] | None
    top_k: int
    methods: list[str]
    split: str
    num_images: int | None
    device: torch.device
    panel_px: int
    data_root: str | None
    cache_dir: str | None
    output_dir: Path


def _positive_int(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise UserError(f"{key}={value!r}: must be a positive integer")
    return value


def options(cfg: DictConfig | dict) -> Options:
    """Every check that needs neither the checkpoint nor the data."""
    c = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
    if not c.get("ckpt"):
        raise UserError("ckpt is required: ckpt=<run>/checkpoints/last.ckpt (written by python -m allconv_sweep)")
    if c["target"] not in TARGETS:
        raise UserError(f"target={c['target']!r}; valid: {', '.join(TARGETS)}")
    methods = c["methods"]
    methods = [methods] if isinstance(methods, str) else list(methods or [])
    bad = [m for m in methods if m not in RULES]
    if bad or not methods:
        raise UserError(f"methods={methods}: choose one or more of {', '.join(RULES)}")
    if c["split"] not in SPLITS:
        raise UserError(f"split={c['split']!r}; valid: {', '.join(SPLITS)}")
    units = c.get("units")
    if units is not None:
        units = [units] if isinstance(units, int) else list(units)
        if not units or any(isinstance(u, bool) or not isinstance(u, int) for u in units):
            raise UserError(f"units={units}: must be a list of unit indices, e.g. units=[0,1,2,3]")
    num_images = c.get("num_images")
    return Options(
        ckpt=str(c["ckpt"]), target=c["target"], layer=c.get("layer"), units=units,
        top_k=_positive_int(c["top_k"], "top_k"), methods=methods, split=c["split"],
        num_images=None if num_images is None else _positive_int(num_images, "num_images"),
        device=device_from(str(c.get("device", "auto"))), panel_px=_positive_int(c["panel_px"], "panel_px"),
        data_root=(c.get("data") or {}).get("root"), cache_dir=c.get("cache_dir"),
        output_dir=Path(c["output_dir"]),
    )


# -- checkpoint and data ---------------------------------------------------------------------------
@dataclass
class Images:
    x: torch.Tensor          # as the network sees them (preprocessed)
    raw: torch.Tensor        # as stored, in [0, 1], for display
    y: torch.Tensor
    index: torch.Tensor      # position in the split
    class_names: list[str]


def load_images(run_cfg: dict, opts: Options, n: int | None) -> Images:
    """``n`` images of ``opts.split`` (all when None) preprocessed exactly as in training, plus their
    pixels as stored, for display."""
    from allconv_sweep.training.components import datamodule_from

    data = dict(run_cfg["data"])
    if opts.data_root is not None:
        data["root"] = opts.data_root
    paths = {**run_cfg.get("paths", {}), "cache_dir": opts.cache_dir or run_cfg.get("paths", {}).get("cache_dir")}
    cfg = {**run_cfg, "data": data, "paths": paths, "seed": int(run_cfg.get("seed", 0))}
    dm = datamodule_from(cfg)
    dm.prepare_data()
    dm.setup()
    if hasattr(dm, "splits"):  # in-memory sets (cifar10, cifar100, fake): the first n of the split
        x, y = dm.splits[opts.split]
        x, y = x[:n].cpu(), y[:n].cpu()
        if len(y) and run_cfg["preprocess"]["name"] == "none":
            raw = x.clamp(0, 1)
        elif len(y):  # same data config and split seed, no preprocessing: the same images as stored
            plain = datamodule_from({**cfg, "preprocess": {"name": "none"}})
            plain.setup()
            raw = plain.splits[opts.split][0][:n].cpu()
        index = torch.arange(len(y))
    else:  # image folders (imagenet): n images spread evenly over the (class-sorted) split
        x, raw, y, index = _folder_images(dm, opts.split, n)
    if len(y) == 0:
        raise UserError(f"split={opts.split} has no images (the checkpoint's data.val_size="
                        f"{data.get('val_size')}); valid: {', '.join(s for s in SPLITS if s != opts.split)}")
    return Images(x, raw, y, index, list(dm.class_names))


def _folder_images(dm, split: str, n: int | None):
    """uint8 crops from the module's own evaluation transform, normalised by its own on-device step."""
    from torch.utils.data import DataLoader, Subset

    dataset = dm.datasets[split]
    total = len(dataset)
    index = torch.arange(total) if n is None or n >= total else torch.linspace(0, total - 1, n).round().long()
    loader = DataLoader(Subset(dataset, index.tolist()), batch_size=64,
                        num_workers=min(8, int(dm.cfg.get("num_workers", 0))))
    xs, raws, ys = [], [], []
    for u8, y in loader:
        xs.append(dm.on_after_batch_transfer((u8.clone(), y), 0)[0])
        raws.append(u8.float() / 255)
        ys.append(y)
    if not ys:
        return torch.zeros(0), torch.zeros(0), torch.zeros(0, dtype=torch.long), index
    return torch.cat(xs), torch.cat(raws), torch.cat(ys), index


# -- layers and units ------------------------------------------------------------------------------
def default_layer(net: nn.Sequential, target: str) -> str:
    children = dict(net.named_children())
    convs = [n for n, m in children.items() if isinstance(m, nn.Conv2d)]
    has_fc = any(isinstance(m, nn.Linear) for m in children.values())
    below_class = convs if has_fc else convs[:-1]  # the class conv is the last conv unless head=fc
    wanted = "conv6" if target == "units" else "conv3"  # the paper's Figure 3 / Figure 2 layers
    if wanted in children:
        return wanted
    return below_class[-1] if target == "units" else below_class[min(2, len(below_class) - 1)]


def check_layer(net: nn.Sequential, layer: str, valid: list[str], model_name: str) -> None:
    if layer not in valid:
        raise UserError(f"layer={layer}: no such layer in {model_name}; valid: {', '.join(valid)}")


def num_units(net: nn.Sequential, layer: str, image_shape: tuple[int, ...]) -> tuple[int, tuple[int, ...]]:
    """(channels, output shape) of child ``layer`` for one image."""
    p = next(net.parameters())
    with evaluating(net), torch.no_grad():
        out = forward_to(net, torch.zeros(1, *image_shape, device=p.device, dtype=p.dtype), layer)
    return out.shape[1], tuple(out.shape[1:])


def check_units(units: list[int], layer: str, n: int) -> None:
    bad = [u for u in units if not 0 <= u < n]
    if bad:
        raise UserError(f"units={units}: {layer} has {n} units; valid: 0..{n - 1}")


def crop_box(pos: tuple[int, int], rf: tuple[int, int, int], size: tuple[int, int],
             vector: bool) -> tuple[slice, slice]:
    """The receptive field of the unit at ``pos``, shifted to lie inside the image (whole image for a
    vector layer or a field larger than the image)."""
    if vector:
        return slice(0, size[0]), slice(0, size[1])
    field, jump, start = rf
    out = []
    for p, n in zip(pos, size):
        extent = min(field, n)
        lo = start + p * jump - (field - 1) // 2
        lo = max(0, min(lo, n - extent))
        out.append(slice(lo, lo + extent))
    return out[0], out[1]


# -- display ---------------------------------------------------------------------------------------
def signed_display(r: torch.Tensor) -> np.ndarray:
    """(C, h, w) signed values -> (h, w, 3) in [0, 1]: the module docstring's one normalization."""
    r = r.detach().float().cpu()
    m = r.abs().max()
    shown = torch.full_like(r, 0.5) if m == 0 else 0.5 + 0.5 * r / m
    return _hwc(shown)


def image_display(x: torch.Tensor) -> np.ndarray:
    return _hwc(x.detach().float().cpu().clamp(0, 1))


def _hwc(t: torch.Tensor) -> np.ndarray:
    if t.shape[0] == 1:
        t = t.expand(3, -1, -1)
    return t.permute(1, 2, 0).numpy()


def _fit(img: np.ndarray, px: int) -> np.ndarray:
    """Scale to fit a px x px panel (nearest when enlarging: the pixels stay visible), centred on white."""
    h, w = img.shape[:2]
    scale = px / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    t = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].float()
    t = F.interpolate(t, size=(nh, nw), mode="nearest" if scale >= 1 else "area")
    out = np.ones((px, px, 3), dtype=np.float32)
    top, left = (px - nh) // 2, (px - nw) // 2
    out[top:top + nh, left:left + nw] = t[0].permute(1, 2, 0).numpy()
    return out


@dataclass
class Panel:
    image: np.ndarray   # (h, w, 3) in [0, 1]
    label: str


def figure_size(nrows: int, ncols: int, panel_px: int) -> tuple[int, int]:
    """(width, height) in pixels of a grid figure: a header, then rows of label strip + panel."""
    return (ncols * panel_px + (ncols + 1) * GAP_PX,
            HEADER_PX + nrows * (LABEL_PX + panel_px + GAP_PX) + GAP_PX)


def draw_grid(rows: list[list[Panel]], title: str, path: Path, panel_px: int) -> Path:
    """One PNG: the panels pasted into one canvas (one figimage, fast) with matplotlib text labels."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    ncols = max(len(r) for r in rows)
    width, height = figure_size(len(rows), ncols, panel_px)
    canvas = np.ones((height, width, 3), dtype=np.float32)
    fig = Figure(figsize=(width / DPI, height / DPI), dpi=DPI)
    FigureCanvasAgg(fig)
    font = min(8.0, max(5.0, panel_px / 14))
    for r, row in enumerate(rows):
        y0 = HEADER_PX + r * (LABEL_PX + panel_px + GAP_PX) + LABEL_PX
        for c, panel in enumerate(row):
            x0 = GAP_PX + c * (panel_px + GAP_PX)
            canvas[y0:y0 + panel_px, x0:x0 + panel_px] = _fit(panel.image, panel_px)
            fig.text((x0 + panel_px / 2) / width, 1 - (y0 - 2) / height, panel.label, ha="center", va="bottom",
                     fontsize=font, linespacing=1.0)
    fig.figimage(canvas, 0, 0, origin="upper")
    chars = max(20, int(width / (7 * 0.6 * DPI / 72)))
    lines = [ln for part in title.split("\n") for ln in textwrap.wrap(part, chars)][:3]
    fig.text(0.5, 1 - 4 / height, "\n".join(lines), ha="center", va="top", fontsize=7, linespacing=1.1)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    return path


def _grid(panels: list[Panel]) -> list[list[Panel]]:
    cols = math.ceil(math.sqrt(len(panels)))
    return [panels[i:i + cols] for i in range(0, len(panels), cols)]


# -- the three targets -----------------------------------------------------------------------------
@dataclass
class Written:
    path: Path
    what: str


def _scan(net: nn.Sequential, x: torch.Tensor, layer: str, units: list[int], device: torch.device):
    """Each image's activation of each unit (its max over positions) and where that max is:
    ((N, U) values, (N, U, 2) row/col positions; zeros for a vector layer)."""
    values, positions = [], []
    with evaluating(net), torch.no_grad():
        for i in range(0, len(x), SCAN_BATCH):
            maps = forward_to(net, x[i:i + SCAN_BATCH].to(device), layer)[:, units]
            if maps.dim() == 2:
                values.append(maps.cpu())
                positions.append(torch.zeros(*maps.shape, 2, dtype=torch.long))
                continue
            v, idx = maps.flatten(2).max(dim=2)
            w = maps.shape[-1]
            values.append(v.cpu())
            positions.append(torch.stack([idx // w, idx % w], dim=-1).cpu())
    return torch.cat(values), torch.cat(positions)


def figures_units(net, model_name: str, imgs: Images, opts: Options) -> list[Written]:
    from allconv_sweep.model.nets import receptive_fields

    layer = opts.layer or default_layer(net, "units")
    check_layer(net, layer, layer_names(net), model_name)
    act = activation_layer(net, layer)
    n_units, shape = num_units(net, act, tuple(imgs.x.shape[1:]))
    units = opts.units if opts.units is not None else list(range(min(4, n_units)))
    check_units(units, layer, n_units)
    if opts.top_k > len(imgs.y):
        raise UserError(f"top_k={opts.top_k}: only {len(imgs.y)} {opts.split} images are searched; "
                        f"valid: 1..{len(imgs.y)} (or raise num_images)")
    vector = len(shape) == 1
    rf = receptive_fields(net).get(act, (imgs.x.shape[-1], 1, 0))
    values, positions = _scan(net, imgs.x, act, units, opts.device)
    size = tuple(imgs.x.shape[-2:])
    named = act if act == layer else f"{layer} (after {act})"
    figs = []
    for j, unit in enumerate(units):
        top = torch.topk(values[:, j], opts.top_k).indices
        x = imgs.x[top].to(opts.device)
        pos = positions[top, j]
        recs = {}
        for method in opts.methods:
            recs[method], acts, _ = reconstruct(net, x, act, [unit] * len(top), method, None if vector else pos)
        rows = []
        for i, k in enumerate(top.tolist()):
            box = crop_box(tuple(pos[i].tolist()), rf, size, vector)
            label = f"#{int(imgs.index[k])} {imgs.class_names[int(imgs.y[k])]}\nact {float(acts[i]):.3g}"
            row = [Panel(image_display(imgs.raw[k][:, box[0], box[1]]), label)]
            row += [Panel(signed_display(recs[m][i][:, box[0], box[1]]), f"{m}\nunit {unit}") for m in opts.methods]
            rows.append(row)
        crop = [min(rf[0], n) for n in size]
        where = "whole images" if vector else f"patches = receptive field {crop[0]}x{crop[1]} px around the max"
        title = (f"{model_name} {named}, unit {unit}: top {len(top)} of {len(imgs.y)} {opts.split} images by "
                 f"activation (max over positions); {where}\nreconstructions of that one activation: "
                 f"0 = gray, each panel scaled by its max |r|")
        path = draw_grid(rows, title, opts.output_dir / f"units_{layer}_unit{unit:03d}.png", opts.panel_px)
        figs.append(Written(path, f"{layer} unit {unit}: top {len(top)} {opts.split} images, "
                                  f"{', '.join(opts.methods)}"))
    return figs


def figures_class(net, model_name: str, imgs: Images, opts: Options) -> list[Written]:
    if opts.layer is not None:
        raise UserError(f"layer={opts.layer}: target=class always reconstructs the class score; "
                        f"valid: no layer (drop the layer= override)")
    n = min(opts.top_k, len(imgs.y))
    x = imgs.x[:n].to(opts.device)
    last = list(dict(net.named_children()))[-1]
    with evaluating(net), torch.no_grad():
        pred = forward_to(net, x, last).argmax(dim=1).cpu()
    recs = {}
    for method in opts.methods:
        recs[method], scores, _ = reconstruct(net, x, last, pred, method)
    rows = []
    for i in range(n):
        name = imgs.class_names[int(pred[i])]
        label = f"#{int(imgs.index[i])} true {imgs.class_names[int(imgs.y[i])]}\npred {name} {float(scores[i]):.3g}"
        row = [Panel(image_display(imgs.raw[i]), label)]
        row += [Panel(signed_display(recs[m][i]), f"{m}\nscore of {name}") for m in opts.methods]
        rows.append(row)
    title = (f"{model_name}: reconstruction of the predicted class score (output of {last}) for {n} "
             f"{opts.split} images\n0 = gray, each panel scaled by its max |r|")
    path = draw_grid(rows, title, opts.output_dir / f"class_{opts.split}.png", opts.panel_px)
    return [Written(path, f"predicted class score, {n} {opts.split} images, {', '.join(opts.methods)}")]


def figures_filters(net, model_name: str, image_shape: tuple[int, ...],
                    opts: Options) -> tuple[list[Written], list[str]]:
    from allconv_sweep.model.nets import receptive_fields

    children = list(net.named_children())
    convs = [n for n, m in children if isinstance(m, nn.Conv2d)]
    layer = opts.layer or default_layer(net, "filters")
    check_layer(net, layer, convs, model_name)
    first = dict(children)[convs[0]]
    # weights of the first layer, as images
    w = first.weight.detach().float().cpu()
    units = opts.units if opts.units is not None else list(range(w.shape[0]))
    check_units(units, convs[0], w.shape[0])
    panels = [Panel(signed_display(w[u]), f"unit {u}") for u in units]  # method and layer are in the title
    k = "x".join(str(s) for s in w.shape[-2:])
    figs = [Written(draw_grid(_grid(panels), f"{model_name} {convs[0]}: the {len(units)} filters ({k} weights)\n"
                                             f"0 = gray, each panel scaled by its max |w|",
                              opts.output_dir / f"filters_{convs[0]}_weights.png", opts.panel_px),
                    f"{convs[0]} weights")]
    # the unconditioned deconvnet: one unit at the centre of its map set to 1, on a blank image
    notes = []
    fields = receptive_fields(net)
    pooled = False
    for name, m in children:
        pooled = pooled or isinstance(m, nn.MaxPool2d)
        if not isinstance(m, nn.Conv2d):
            continue
        if pooled:
            notes.append(f"{name}: no unconditioned deconvnet (max-pooling below it needs an image's switches; "
                         f"use target=units layer={name})")
        else:
            act = activation_layer(net, name)
            n_units, _ = num_units(net, act, image_shape)
            lay_units = opts.units if opts.units is not None else list(range(n_units))
            check_units(lay_units, name, n_units)
            blank, centre, box = _blank_for(net, act, fields[act], image_shape)
            rec, _, _ = reconstruct(net, blank.expand(len(lay_units), -1, -1, -1), act, lay_units, "deconvnet",
                                    centre.expand(len(lay_units), 2))
            size = f"{box[0].stop - box[0].start}x{box[1].stop - box[1].start}"
            panels = [Panel(signed_display(rec[i][:, box[0], box[1]]), f"unit {u}") for i, u in enumerate(lay_units)]
            title = (f"{model_name} {name}: unconditioned deconvnet (one unit at the map's centre set to 1, "
                     f"no image), {size} px receptive field\n0 = gray, each panel scaled by its max |r|")
            figs.append(Written(draw_grid(_grid(panels), title, opts.output_dir / f"filters_{name}_deconvnet.png",
                                          opts.panel_px), f"{name}: unconditioned deconvnet, {len(lay_units)} units"))
        if name == layer:
            break
    return figs, notes


def _blank_for(net: nn.Sequential, layer: str, field: tuple[int, int, int], image_shape: tuple[int, ...]):
    """A blank image just large enough for the receptive field of ``layer``'s centre unit, that unit's
    position and its field's crop box. Without max-pooling the deconvnet does not depend on the image,
    and the convolutions are translation-equivariant, so a small image gives the same reconstruction as
    a full one (far faster for 224-px inputs); falls back to the full size when the field does not fit."""
    rf, jump, _ = field
    p = next(net.parameters())
    for side in (min(image_shape[-1], rf + 4 * jump), image_shape[-1]):
        shape = (image_shape[0], side, side)
        try:
            _, out = num_units(net, layer, shape)
        except RuntimeError:  # too small for some layer's kernel: try the full size
            continue
        if len(out) != 3:
            continue
        centre = torch.tensor([[out[1] // 2, out[2] // 2]])
        lo = field[2] + centre[0] * jump - (rf - 1) // 2
        if side == image_shape[-1] or (lo.min() >= 0 and (lo + rf).max() <= side):
            box = crop_box(tuple(centre[0].tolist()), field, (side, side), False)
            return torch.zeros(1, *shape, device=p.device, dtype=p.dtype), centre, box
    raise UserError(f"layer={layer} has no spatial map to set a unit in")


# -- the run ---------------------------------------------------------------------------------------
def write_index(opts: Options, run_cfg: dict, figs: list[Written], notes: list[str]) -> Path:
    lines = [f"# {run_cfg['model']['name']} on {run_cfg['data']['name']}: {opts.target}", "",
             f"- checkpoint: `{opts.ckpt}`",
             f"- target={opts.target}, layer={opts.layer or '(default)'}, units={opts.units or '(default)'}, "
             f"top_k={opts.top_k}, methods={opts.methods}, split={opts.split}, num_images={opts.num_images}",
             "- rules at each ReLU (f: its forward input, R: the signal from above): backprop R*(f>0); "
             "deconvnet max(R,0); guided_backprop max(R,0)*(f>0); max-pooling routes R to the argmax",
             f"- display: {NORMALIZATION}",
             "- labels: #n is the image's position in the split; act is the unit's activation at the position "
             "reconstructed (its maximum over the map); a units patch is that unit's receptive field",
             "", "| figure | shows |", "|---|---|"]
    lines += [f"| [{f.path.name}]({f.path.name}) | {f.what} |" for f in figs]
    if notes:
        lines += ["", "Notes:", *[f"- {n}" for n in notes]]
    path = opts.output_dir / "index.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def visualize(cfg: DictConfig | dict) -> list[Path]:
    """Write the figures ``cfg`` asks for and their index.md; return the paths (PNGs, then index.md)."""
    opts = options(cfg)
    from allconv_sweep.model.module import load_checkpoint  # lightning: imported only when there is a file to read

    model = load_checkpoint(opts.ckpt)
    run_cfg = model.hparams["cfg"]
    net = model.net.to(opts.device)
    name = run_cfg["model"]["name"]
    ensure_writable(opts.output_dir)
    notes: list[str] = []
    if opts.target == "filters":
        size = int(run_cfg["data"].get("image_size", 32))
        figs, notes = figures_filters(net, name, (3, size, size), opts)
    else:
        imgs = load_images(run_cfg, opts, opts.num_images if opts.target == "units" else opts.top_k)
        figs = (figures_units if opts.target == "units" else figures_class)(net, name, imgs, opts)
    index = write_index(opts, run_cfg, figs, notes)
    return [f.path for f in figs] + [index]


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="visualize")
def main(cfg: DictConfig) -> None:
    try:
        paths = visualize(cfg)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    print(f"wrote {len(paths) - 1} figures; see {paths[-1]}")


if __name__ == "__main__":
    main()
