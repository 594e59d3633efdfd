"""python -m allconv_sweep [overrides]: one run, or a multirun with -m / a sweep config."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from allconv_sweep.config import config_dir, register, runtime
from allconv_sweep.errors import RunInterrupted, UserError

register()  # the schema and resolvers: this module is what a sweep's job processes import to run main


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="config")
def main(cfg: DictConfig) -> float | None:
    from allconv_sweep.training.train import train  # heavy imports after Hydra has parsed the command line

    before = _record_stamp(cfg)
    try:
        metrics = train(cfg)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        if runtime.in_multirun():  # one bad job never stops a sweep: the sweep's report lists it as failed
            logging.getLogger(__name__).error("error: %s", e)
            _record_failure(cfg, e, before)
            return None
        sys.exit(2)
    except RunInterrupted as e:
        print(f"error: {e}", file=sys.stderr)
        if runtime.in_multirun():
            raise  # the sweep stops launching, writes its report and exits with the signal's code
        sys.exit(e.exit_code)
    except Exception:
        if not runtime.in_multirun():
            raise
        # train() recorded status failed in metrics.json; the traceback goes to this job's log, and the
        # sweep goes on with its other jobs (Hydra's sweeper would otherwise stop at the first failure)
        logging.getLogger(__name__).exception("job failed; the sweep goes on with its other jobs")
        _record_failure(cfg, sys.exc_info()[1], before)
        return None
    return metrics.get("val_acc")  # what a Hydra sweeper would optimize


def _record_stamp(cfg: DictConfig):
    """What metrics.json is before the job runs (None: absent), to tell whether the job wrote one."""
    try:
        st = (Path(str(cfg.paths.output_dir)) / "metrics.json").stat()
        return (st.st_ino, st.st_mtime_ns, st.st_size)
    except (OSError, ValueError, TypeError, KeyError):
        return None


def _record_failure(cfg: DictConfig, exc: BaseException, before) -> None:
    """A sweep job that failed before train() recorded anything (building a callback, the data, the Trainer)
    gets metrics.json with status failed, so the report counts it failed, as a failure inside fit is: a job
    that left no record at all is indistinguishable from one never started or still running. Never into a
    folder whose run.json or metrics.json is another config's (a refused job), never while another process
    holds the folder's lock, and a record this start already wrote (failed inside fit) stays."""
    from allconv_sweep import config as config_mod
    from allconv_sweep import runs
    from allconv_sweep.config.identity import result_key

    try:
        out = Path(str(cfg.paths.output_dir)).resolve()
        if _record_stamp(cfg) != before:  # train() wrote its own record (a failure inside fit)
            return
        ident = config_mod.validate(cfg)
        key = result_key(ident)
        record = runs.read_record(out)
        if any(k not in (None, key) for k in ((runs.read_run_info(out) or {}).get("result_key"),
                                              record.result_key if record is not None else None)):
            return  # the folder holds another config's run: the job was refused there, nothing of it ran
        lock = runs.lock(out, "run")
    except Exception:  # noqa: BLE001 - cannot tell it is ours: the report shows the job as missing instead
        return
    try:
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        select = lambda path: OmegaConf.select(cfg, path, default=None)  # noqa: E731
        record = runs.RunRecord(
            # a UserError's one line is the whole story; another exception is named by its type
            status="failed", reason=(lines[-1] if lines else "") if isinstance(exc, UserError)
            else f"{type(exc).__name__}: {lines[-1] if lines else ''}".rstrip(": "),
            result_key=key, model=select("model.name"), family=select("model.family"),
            variant=select("model.variant"), data=select("data.name"), preprocess=select("preprocess.name"),
            augment=select("augment.name"), lr=select("optimizer.lr"), seed=select("seed"),
            max_epochs=select("trainer.max_epochs"), output_dir=str(out), overrides=runtime.job_overrides())
        runs.write_record(out, record)
    except Exception:  # noqa: BLE001 - the job's own error is what its log shows
        logging.getLogger(__name__).exception("could not record the failure in metrics.json")
    finally:
        lock.release()


def cli() -> None:
    """Check the overrides first (one-line errors), then hand over to Hydra."""
    from allconv_sweep.cli import check_overrides
    from allconv_sweep.config.files import exit_on_unreadable_path

    exit_on_unreadable_path(sys.argv[1:])

    # DDP ranks > 0 are this command re-run by Lightning (LOCAL_RANK >= 1) with rank 0's argv plus its own
    # hydra.run.dir="<rank 0's folder>" etc.: rank 0 has checked the overrides already
    relaunched_rank = os.environ.get("LOCAL_RANK", "0") != "0"
    if not relaunched_rank and not any(
            a in ("--help", "-h", "--hydra-help", "--info", "-i", "--cfg", "-c", "--shell-completion", "-sc")
            for a in sys.argv[1:]):
        try:
            check_overrides(sys.argv[1:])
        except UserError as e:
            for line in str(e).splitlines():
                print(f"error: {line}", file=sys.stderr)
            sys.exit(2)
    if _hydra_cfg_resolved(sys.argv[1:]):
        return
    main()


def _hydra_cfg_resolved(args: list[str]) -> bool:
    """`--cfg hydra --resolve`: Hydra prints the hydra node alone, where ${sweep.root} and the like have
    nothing to resolve against; print it resolved within the whole config instead."""
    flags = [a for a in args if a.startswith("-")]
    cfg_at = [i for i, a in enumerate(args) if a in ("--cfg", "-c")]
    if not cfg_at or cfg_at[0] + 1 >= len(args) or args[cfg_at[0] + 1] != "hydra" or "--resolve" not in flags:
        return False
    from hydra.core.utils import setup_globals
    from omegaconf import OmegaConf, open_dict

    from allconv_sweep.config import compose

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
