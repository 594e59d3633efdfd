"""python -m allconv_sweep.visualize: what a trained network responds to (paper, Section 5; examples in
conf/visualize.yaml). Reads its options, the checkpoint and its images (inputs.py); writes each target's
figures (targets.py, drawn by panels.py) and an index.md listing them into its run folder."""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from allconv_sweep.config import config_dir
from allconv_sweep.errors import command
from allconv_sweep.inspection.inputs import Options, load_images
from allconv_sweep.inspection.panels import NORMALIZATION
from allconv_sweep.inspection.targets import Written, figures_class, figures_filters, figures_units
from allconv_sweep.runs import ensure_writable


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
    """Write the figures ``cfg`` asks for and their index.md, print and return their paths (PNGs, then index.md)."""
    opts = Options.from_config(cfg)
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
    paths = [f.path for f in figs] + [write_index(opts, run_cfg, figs, notes)]
    print(f"wrote {len(figs)} figures and {paths[-1].name}:", *(p.resolve() for p in paths), sep="\n")
    return paths


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="visualize")
def main(cfg: DictConfig) -> None:
    if code := command(visualize, cfg):  # a successful job returns: under -m, Hydra runs the next one
        sys.exit(code)


if __name__ == "__main__":
    main()
