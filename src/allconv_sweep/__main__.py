"""python -m allconv_sweep [overrides]: one run, or a multirun with -m / a sweep config."""

import logging
import os
import sys

import hydra
from omegaconf import DictConfig

from allconv_sweep.config import config_dir, register, runtime
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
    from allconv_sweep.config.checks import exit_on_unreadable_path, offer_enum_choices, shown_config

    exit_on_unreadable_path(sys.argv[1:])

    # DDP ranks > 0 are this command re-run by Lightning (LOCAL_RANK >= 1) with rank 0's argv plus its own
    # hydra.run.dir="<rank 0's folder>" etc.: rank 0 has checked the overrides already
    relaunched_rank = os.environ.get("LOCAL_RANK", "0") != "0"
    try:
        if not relaunched_rank and not any(
                a in ("--help", "-h", "--hydra-help", "--info", "-i", "--cfg", "-c", "--shell-completion", "-sc")
                for a in sys.argv[1:]):
            check_overrides(sys.argv[1:])
        shown = shown_config(sys.argv[1:])  # --cfg: its own checks; with --resolve, the text
    except UserError as e:
        for line in str(e).splitlines():
            print(f"error: {line}", file=sys.stderr)
        sys.exit(2)
    if shown is not None:
        print(shown)
        return
    offer_enum_choices(sys.argv[1:])  # -sc: every choice of an enum key
    main()


if __name__ == "__main__":
    cli()
