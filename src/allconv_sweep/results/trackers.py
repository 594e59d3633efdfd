"""The sweep's report in the trackers its jobs used: one W&B run with Table 3 and the figures (offline too:
it syncs later), chosen_lr flags in each job's W&B summary, and TensorBoard's figures and hparams."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from allconv_sweep import runs
from allconv_sweep.results.dashboard import wandb_settings
from allconv_sweep.results.figures import FIGURES
from allconv_sweep.results.tables import table3_rows

TABLE3_KEY = "table3_comparison"  # the report run's wandb.Table (figure keys: figures.FIGURES)


def log_report(sweep_dir: Path, result: dict[str, Any]) -> None:
    """The report in whichever tracker the jobs used; failures printed, never raised (the report exists)."""
    rows, choices = result["rows"], result["choices"]
    try:
        settings = wandb_settings(sweep_dir, rows)
        if settings is not None:
            _wandb_report_run(sweep_dir, settings, choices, result.get("figures") or {})
            _wandb_chosen_flags(sweep_dir, settings, rows, choices)
        if any((Path(r.path) / "tensorboard").is_dir() for r in rows if r.path is not None):
            _tensorboard(sweep_dir, rows, choices)
    except Exception as e:  # noqa: BLE001 - the report is written; the trackers are a copy of it
        print(f"warning: could not log the report to the trackers ({type(e).__name__}: {e})", file=sys.stderr)


def _wandb_init(sweep: dict, **kwargs: Any):
    """A W&B run in the sweep's project and mode (wandb_settings)."""
    import wandb

    from allconv_sweep.training.wandb_run import resolve_mode

    return wandb.init(project=sweep["project"], entity=sweep.get("entity"), reinit="finish_previous",
                      mode=resolve_mode(sweep.get("mode")), **kwargs)


def _wandb_report_run(sweep_dir: Path, settings: dict, choices: list, figures: dict) -> None:
    import wandb

    run = _wandb_init(settings, group=settings["group"], job_type="report", name=f"{settings['group']}: report",
                      dir=str(sweep_dir), config={"sweep_dir": str(sweep_dir), "jobs": len(choices)})
    run.log({TABLE3_KEY: wandb.Table(*table3_rows(choices)),  # beside each figure, under its own key
             **{f.key: wandb.Image(str(sweep_dir / f.file)) for f in FIGURES if f.file in figures}})
    run.finish()


def _wandb_chosen_flags(sweep_dir: Path, settings: dict, rows: list, choices: list) -> None:
    """chosen_lr in each job's W&B summary, where it changed (each is a resume of its run, ~2 s offline)."""
    import wandb

    chosen = {id(r) for c in choices for r in c.rows}
    manifest = runs.read_manifest(sweep_dir)
    done = manifest.get("wandb_chosen_lr", {})
    for r in rows:
        flag = id(r) in chosen
        if r.wandb_run_id and r.status in runs.FINISHED and done.get(r.job) != flag:
            info = runs.read_run_info(r.path) or {}  # the run's name and group, so that the resume keeps them
            run = _wandb_init(settings, id=r.wandb_run_id, resume="allow", dir=str(r.path), job_type="train",
                              name=info.get("wandb_name"), group=info.get("wandb_group") or settings["group"],
                              settings=wandb.Settings(silent=True))  # a flag per job, not a banner per job
            run.summary["chosen_lr"] = done[r.job] = flag
            run.finish()
    manifest["wandb_chosen_lr"] = done
    runs.write_json(sweep_dir / runs.MANIFEST, manifest)


def _tensorboard(sweep_dir: Path, rows: list, choices: list) -> None:
    import matplotlib.image
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(sweep_dir / "tensorboard"))
    for figure in FIGURES:
        if (sweep_dir / figure.file).is_file():
            writer.add_image(f"report/{figure.key}", matplotlib.image.imread(sweep_dir / figure.file)[..., :3],
                             dataformats="HWC")
    chosen = {id(r) for c in choices for r in c.rows}
    nan = float("nan")
    for r in (r for r in rows if r.status in runs.FINISHED):
        writer.add_hparams({"model": r.model, "variant": r.variant or "", "lr": r.lr, "seed": r.seed,
                            "batch_size": r.batch_size or 0, "chosen_lr": id(r) in chosen, "setting": r.setting},
                           {"hparam/val_error": nan if r.val_error is None else r.val_error,
                            "hparam/test_error": nan if r.test_error is None else r.test_error}, run_name=r.job)
    writer.close()
