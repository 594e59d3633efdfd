"""python -m allconv_sweep [overrides]: one run, or a multirun with -m / a sweep config."""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from allconv_sweep.config import config_dir
from allconv_sweep.errors import UserError


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="config")
def main(cfg: DictConfig) -> float | None:
    from allconv_sweep.train import train  # heavy imports after Hydra has parsed the command line

    try:
        metrics = train(cfg)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    return metrics.get("val_acc")  # what a Hydra sweeper would optimize


if __name__ == "__main__":
    main()
