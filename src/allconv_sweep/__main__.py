"""python -m allconv_sweep [overrides]: one run, or a multirun with -m / a sweep config."""

import logging
import os
import sys

import hydra
from hydra.core.utils import setup_globals
from omegaconf import DictConfig, OmegaConf, open_dict

from allconv_sweep.config import compose, config_dir, register, runtime
from allconv_sweep.errors import RunInterrupted, UserError

register()  # the schema and resolvers: this module is what a sweep's job processes import to run main


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="config")
def main(cfg: DictConfig) -> float | None:
    from allconv_sweep.training.outcome import metrics_stamp, record_failure
    from allconv_sweep.training.train import train  # heavy imports after Hydra has parsed the command line
    before = metrics_stamp(cfg)
    try:
        metrics = train(cfg)
    except (UserError, RunInterrupted) as e:
        print(f"error: {e}", file=sys.stderr)
        if not runtime.in_multirun():
            sys.exit(e.exit_code if isinstance(e, RunInterrupted) else 2)
        if isinstance(e, RunInterrupted):
            raise  # the sweep stops launching, writes its report and exits with the signal's code
        logging.getLogger(__name__).error("error: %s", e)  # one bad job never stops a sweep: its report lists it
        record_failure(cfg, e, before)
        return None
    except Exception:
        if not runtime.in_multirun():
            raise
        # the traceback goes to this job's log and the sweep goes on (Hydra's sweeper would stop here)
        logging.getLogger(__name__).exception("job failed; the sweep goes on with its other jobs")
        record_failure(cfg, sys.exc_info()[1], before)
        return None
    return metrics.get("val_acc")  # what a Hydra sweeper would optimize


def cli() -> None:
    """Check the overrides first (one-line errors), then hand over to Hydra."""
    from allconv_sweep.cli import check_overrides
    # DDP ranks > 0 are this command re-run by Lightning (LOCAL_RANK >= 1): rank 0 has checked the overrides
    if os.environ.get("LOCAL_RANK", "0") == "0" and not any(
            a in ("--help", "-h", "--hydra-help", "--info", "-i", "--cfg", "-c", "--shell-completion", "-sc")
            for a in sys.argv[1:]):
        try:
            check_overrides(sys.argv[1:])
        except UserError as e:
            for line in str(e).splitlines():
                print(f"error: {line}", file=sys.stderr)
            sys.exit(2)
    if not _hydra_cfg_resolved(sys.argv[1:]):
        main()


def _hydra_cfg_resolved(args: list[str]) -> bool:
    """`--cfg hydra --resolve`, resolved within the whole config (Hydra's has no ${sweep.root} to resolve)."""
    cfg_at = [i for i, a in enumerate(args) if a in ("--cfg", "-c")]
    if not cfg_at or cfg_at[0] + 1 >= len(args) or args[cfg_at[0] + 1] != "hydra" or "--resolve" not in args:
        return False
    setup_globals()  # the now: resolver of hydra.run.dir
    overrides = [a for i, a in enumerate(args) if not a.startswith("-") and i != cfg_at[0] + 1]
    cfg = compose(overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = "<set when the job starts>"
        cfg.hydra.job.override_dirname = ",".join(o for o in overrides if not o.startswith("hydra."))
    print(OmegaConf.to_yaml(OmegaConf.create({"hydra": OmegaConf.to_container(cfg.hydra, resolve=True)})))
    return True


if __name__ == "__main__":
    cli()
