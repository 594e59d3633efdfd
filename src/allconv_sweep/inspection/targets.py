"""What each visualize target shows: units (the top images of each unit and the reconstructions of its
activation, paper Figure 3), class (of the predicted class score) and filters (first-layer weights and the
unconditioned deconvnet, paper Figure 2). Each writes its figures and returns what it wrote."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from allconv_sweep.errors import UserError
from allconv_sweep.inspection.attribution import activation_layer, evaluating, forward_to, layer_names, reconstruct
from allconv_sweep.inspection.inputs import Images, Options
from allconv_sweep.inspection.panels import Panel, draw_grid, image_display, signed_display, square

SCAN_BATCH = 256
SCALED = "0 = gray, each panel scaled by its max |r|"


@dataclass
class Written:
    path: Path
    what: str


def _draw(rows: list[list[Panel]], title: str, name: str, what: str, opts: Options) -> Written:
    return Written(draw_grid(rows, title, opts.output_dir / name, opts.panel_px), what)


def default_layer(net: nn.Sequential, target: str) -> str:
    """The paper's layers (Figure 3: conv6, Figure 2: conv3), else the closest conv below the class conv."""
    children = dict(net.named_children())
    wanted = "conv6" if target == "units" else "conv3"
    if wanted in children:
        return wanted
    convs = [n for n, m in children.items() if isinstance(m, nn.Conv2d)]
    has_fc = any(isinstance(m, nn.Linear) for m in children.values())
    below_class = convs if has_fc else convs[:-1]  # the class conv is the last conv unless head=fc
    return below_class[-1] if target == "units" else below_class[min(2, len(below_class) - 1)]


def check_layer(layer: str, valid: list[str], model_name: str) -> None:
    if layer not in valid:
        raise UserError(f"layer={layer}: no such layer in {model_name}; valid: {', '.join(valid)}")


def _units(net: nn.Sequential, layer: str, image_shape: tuple[int, ...], asked: list[int] | None,
           default: int | None = None) -> tuple[str, list[int], tuple[int, ...]]:
    """``layer``'s activation layer, the units asked for (None: the first ``default``, else all) checked against
    how many it has, and its output shape for one image."""
    act = activation_layer(net, layer)
    n, shape = num_units(net, act, image_shape)
    units = asked if asked is not None else list(range(min(default or n, n)))
    if any(not 0 <= u < n for u in units):
        raise UserError(f"units={units}: {layer} has {n} units; valid: 0..{n - 1}")
    return act, units, shape


def num_units(net: nn.Sequential, layer: str, image_shape: tuple[int, ...]) -> tuple[int, tuple[int, ...]]:
    """(channels, output shape) of child ``layer`` for one image."""
    p = next(net.parameters())
    with evaluating(net), torch.no_grad():
        out = forward_to(net, torch.zeros(1, *image_shape, device=p.device, dtype=p.dtype), layer)
    return out.shape[1], tuple(out.shape[1:])


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
        lo = max(0, min(start + p * jump - (field - 1) // 2, n - extent))
        out.append(slice(lo, lo + extent))
    return out[0], out[1]


def _scan(net: nn.Sequential, x: torch.Tensor, layer: str, units: list[int], device: torch.device):
    """Each image's activation of each unit (its max over positions) and where that max is:
    ((N, U) values, (N, U, 2) row/col positions; zeros for a vector layer)."""
    values, positions = [], []
    with evaluating(net), torch.no_grad():
        for i in range(0, len(x), SCAN_BATCH):
            maps = forward_to(net, x[i:i + SCAN_BATCH].to(device), layer)[:, units]
            maps = maps[..., None, None] if maps.dim() == 2 else maps  # a vector layer: one value, at (0, 0)
            (v, idx), w = maps.flatten(2).max(dim=2), maps.shape[-1]
            values.append(v.cpu())
            positions.append(torch.stack([idx // w, idx % w], dim=-1).cpu())
    return torch.cat(values), torch.cat(positions)


def figures_units(net: nn.Sequential, model_name: str, imgs: Images, opts: Options) -> list[Written]:
    from allconv_sweep.model.nets import receptive_fields

    layer = opts.layer or default_layer(net, "units")
    check_layer(layer, layer_names(net), model_name)
    act, units, shape = _units(net, layer, tuple(imgs.x.shape[1:]), opts.units, 4)
    if opts.top_k > len(imgs.y):
        raise UserError(f"top_k={opts.top_k}: only {len(imgs.y)} {opts.split} images are searched; "
                        f"valid: 1..{len(imgs.y)} (or raise num_images)")
    vector = len(shape) == 1
    rf = receptive_fields(net).get(act, (imgs.x.shape[-1], 1, 0))
    values, positions = _scan(net, imgs.x, act, units, opts.device)
    size = tuple(imgs.x.shape[-2:])
    named = act if act == layer else f"{layer} (after {act})"
    crop = [min(rf[0], n) for n in size]
    where = "whole images" if vector else f"patches = receptive field {crop[0]}x{crop[1]} px around the max"
    figs = []
    for j, unit in enumerate(units):
        top = torch.topk(values[:, j], opts.top_k).indices
        x, pos = imgs.x[top].to(opts.device), positions[top, j]
        recs = {m: reconstruct(net, x, act, [unit] * len(top), m, None if vector else pos) for m in opts.methods}
        acts = recs[opts.methods[0]][1]
        rows = []
        for i, k in enumerate(top.tolist()):
            box = crop_box(tuple(pos[i].tolist()), rf, size, vector)
            label = f"#{int(imgs.index[k])} {imgs.class_names[int(imgs.y[k])]}\nact {float(acts[i]):.3g}"
            rows.append([Panel(image_display(imgs.raw[k][:, box[0], box[1]]), label)]
                        + [Panel(signed_display(recs[m][0][i][:, box[0], box[1]]), f"{m}\nunit {unit}")
                           for m in opts.methods])
        title = (f"{model_name} {named}, unit {unit}: top {len(top)} of {len(imgs.y)} {opts.split} images by "
                 f"activation (max over positions); {where}\nreconstructions of that one activation: {SCALED}")
        figs.append(_draw(rows, title, f"units_{layer}_unit{unit:03d}.png",
                          f"{layer} unit {unit}: top {len(top)} {opts.split} images, {', '.join(opts.methods)}", opts))
    return figs


def figures_class(net: nn.Sequential, model_name: str, imgs: Images, opts: Options) -> list[Written]:
    if opts.layer is not None:
        raise UserError(f"layer={opts.layer}: target=class always reconstructs the class score; "
                        f"valid: no layer (drop the layer= override)")
    n = min(opts.top_k, len(imgs.y))
    x = imgs.x[:n].to(opts.device)
    last = list(dict(net.named_children()))[-1]
    with evaluating(net), torch.no_grad():
        pred = forward_to(net, x, last).argmax(dim=1).cpu()
    recs = {m: reconstruct(net, x, last, pred, m) for m in opts.methods}
    scores = recs[opts.methods[0]][1]
    rows = []
    for i in range(n):
        name = imgs.class_names[int(pred[i])]
        label = f"#{int(imgs.index[i])} true {imgs.class_names[int(imgs.y[i])]}\npred {name} {float(scores[i]):.3g}"
        rows.append([Panel(image_display(imgs.raw[i]), label)]
                    + [Panel(signed_display(recs[m][0][i]), f"{m}\nscore of {name}") for m in opts.methods])
    title = (f"{model_name}: reconstruction of the predicted class score (output of {last}) for {n} "
             f"{opts.split} images\n{SCALED}")
    return [_draw(rows, title, f"class_{opts.split}.png",
                  f"predicted class score, {n} {opts.split} images, {', '.join(opts.methods)}", opts)]


def figures_filters(net: nn.Sequential, model_name: str, image_shape: tuple[int, ...],
                    opts: Options) -> tuple[list[Written], list[str]]:
    """The first conv's weights, then the unconditioned deconvnet (one unit at the centre of its map set
    to 1, on a blank image) of each conv up to ``opts.layer``; notes on the convs it cannot show."""
    from allconv_sweep.model.nets import receptive_fields

    children = list(net.named_children())
    convs = [n for n, m in children if isinstance(m, nn.Conv2d)]
    layer = opts.layer or default_layer(net, "filters")
    check_layer(layer, convs, model_name)
    w = dict(children)[convs[0]].weight.detach().float().cpu()
    units = _units(net, convs[0], image_shape, opts.units)[1]
    panels = [Panel(signed_display(w[u]), f"unit {u}") for u in units]  # method and layer are in the title
    k = "x".join(str(s) for s in w.shape[-2:])
    figs = [_draw(square(panels), f"{model_name} {convs[0]}: the {len(units)} filters ({k} weights)\n0 = gray, "
                  f"each panel scaled by its max |w|", f"filters_{convs[0]}_weights.png", f"{convs[0]} weights", opts)]
    notes, fields, pooled = [], receptive_fields(net), False
    for name, m in children:
        pooled = pooled or isinstance(m, nn.MaxPool2d)
        if not isinstance(m, nn.Conv2d):
            continue
        if pooled:
            notes.append(f"{name}: no unconditioned deconvnet (max-pooling below it needs an image's switches; "
                         f"use target=units layer={name})")
        else:
            act, lay_units, _ = _units(net, name, image_shape, opts.units)
            blank, centre, box = _blank_for(net, act, fields[act], image_shape)
            rec, _, _ = reconstruct(net, blank.expand(len(lay_units), -1, -1, -1), act, lay_units, "deconvnet",
                                    centre.expand(len(lay_units), 2))
            size = f"{box[0].stop - box[0].start}x{box[1].stop - box[1].start}"
            panels = [Panel(signed_display(rec[i][:, box[0], box[1]]), f"unit {u}") for i, u in enumerate(lay_units)]
            title = (f"{model_name} {name}: unconditioned deconvnet (one unit at the map's centre set to 1, "
                     f"no image), {size} px receptive field\n{SCALED}")
            figs.append(_draw(square(panels), title, f"filters_{name}_deconvnet.png",
                              f"{name}: unconditioned deconvnet, {len(lay_units)} units", opts))
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
