"""Drawing visualize's figures: a grid of labelled image panels in one PNG, each panel drawn by NORMALIZATION
(the one display rule; every index.md states it too)."""

from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

# figure layout in pixels (documented so a figure's size is known in advance)
GAP_PX, LABEL_PX, HEADER_PX, DPI = 4, 28, 48, 100
NORMALIZATION = ("each reconstruction/filter panel r is drawn as 0.5 + 0.5 * r / max|r| (max over the panel's "
                 "pixels and channels): 0 is mid-gray, sign and colour are kept; images are shown as stored "
                 "(pixel / 255)")


@dataclass
class Panel:
    image: torch.Tensor  # (C, h, w) in [0, 1]
    label: str


def signed_display(r: torch.Tensor) -> torch.Tensor:
    """(C, h, w) signed values -> [0, 1] by NORMALIZATION."""
    r = r.detach().float().cpu()
    m = r.abs().max()
    return torch.full_like(r, 0.5) if m == 0 else 0.5 + 0.5 * r / m


def image_display(x: torch.Tensor) -> torch.Tensor:
    return x.detach().float().cpu().clamp(0, 1)


def _fit(img: torch.Tensor, px: int) -> np.ndarray:
    """(h, w, 3) pixels of a px x px panel: ``img`` scaled to fit (nearest when enlarging: the pixels stay
    visible), centred on white."""
    h, w = img.shape[-2:]
    scale = px / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    t = F.interpolate(img.expand(3, -1, -1)[None], size=(nh, nw), mode="nearest" if scale >= 1 else "area")
    out = np.ones((px, px, 3), dtype=np.float32)
    top, left = (px - nh) // 2, (px - nw) // 2
    out[top:top + nh, left:left + nw] = t[0].permute(1, 2, 0).numpy()
    return out


def square(panels: list[Panel]) -> list[list[Panel]]:
    """Panels in rows of ceil(sqrt(n))."""
    cols = math.ceil(math.sqrt(len(panels)))
    return [panels[i:i + cols] for i in range(0, len(panels), cols)]


def draw_grid(rows: list[list[Panel]], title: str, path: Path, panel_px: int) -> Path:
    """One PNG of width ncols * panel_px + (ncols + 1) * GAP_PX and height HEADER_PX + nrows * (LABEL_PX +
    panel_px + GAP_PX) + GAP_PX: the panels pasted into one canvas (one figimage, fast), matplotlib labels."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    ncols = max(len(r) for r in rows)
    width = ncols * panel_px + (ncols + 1) * GAP_PX
    height = HEADER_PX + len(rows) * (LABEL_PX + panel_px + GAP_PX) + GAP_PX
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
