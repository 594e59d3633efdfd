"""The sweep in its trackers. At the end of a sweep (log_report): one W&B run with Table 3 and the figures (offline
too: it syncs later), chosen_lr flags in each job's W&B summary, and TensorBoard's figures and hparams. And
python -m allconv_sweep.dashboard <sweep dir>: a W&B workspace comparing the sweep's variants and a W&B Report
(Table 3, the figures), saved with credentials, else written as JSON specs to publish after `wandb sync`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Optional

from allconv_sweep import runs
from allconv_sweep.errors import UserError, command
from allconv_sweep.results.figures import FIGURES
from allconv_sweep.results.tables import read_sweep, table3_rows, table3_section

TABLE3_KEY = "table3_comparison"  # the report run's wandb.Table (figure keys: figures.FIGURES)
WORKSPACE_JSON, REPORT_JSON = "wandb_workspace.json", "wandb_report.json"
# the runs' nested config (training/wandb_run.py) and summary, named as wandb-workspaces names them
RUNS_TABLE = [("config", "model.name"), ("config", "model.variant"), ("config", "optimizer.lr"), ("config", "seed"),
              ("summary", "status"), ("summary", "chosen_lr"), ("summary", "val_error"), ("summary", "test_error")]
PARALLEL = [("config", "model.family"), ("config", "model.variant"), ("config", "optimizer.lr"),
            ("summary", "val_error"), ("summary", "test_error")]


def wandb_settings(sweep_dir: Path, rows: list) -> Optional[dict[str, Any]]:
    """{project, entity, group, mode} of the sweep's W&B runs (from a job's config), or None without W&B."""
    from allconv_sweep.config.records import config_values  # a job's config: its values read as data
    from allconv_sweep.training.wandb_run import group_for

    for r in (r for r in rows if r.wandb_run_id):
        cfg = config_values(Path(r.path) / ".hydra" / "config.yaml", {
            "logger.wandb.project": str, "logger.wandb.entity": str, "logger.wandb.mode": str, "tracking.group": str})
        return {"project": cfg["logger.wandb.project"] or "allconv_sweep", "entity": cfg["logger.wandb.entity"],
                "group": str(cfg["tracking.group"] or group_for(sweep_dir)), "mode": cfg["logger.wandb.mode"]}
    return None


def log_report(sweep_dir: Path, result: dict[str, Any]) -> None:
    """The report in whichever tracker the jobs used; failures printed, never raised (the report exists)."""
    rows, choices = result["rows"], result["choices"]
    chosen = {id(r) for c in choices for r in c.rows}  # the runs of the lr chosen
    try:
        settings = wandb_settings(sweep_dir, rows)
        if settings is not None:
            _wandb_report_run(sweep_dir, settings, choices, result.get("figures") or {})
            _wandb_chosen_flags(sweep_dir, settings, rows, chosen)
        if any((Path(r.path) / "tensorboard").is_dir() for r in rows if r.path is not None):
            _tensorboard(sweep_dir, rows, chosen)
    except Exception as e:  # noqa: BLE001 - the report is written; the trackers are a copy of it
        print(f"warning: could not log the report to the trackers ({type(e).__name__}: {e})", file=sys.stderr)


def _wandb_init(sweep: dict, **kwargs: Any):
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


def _wandb_chosen_flags(sweep_dir: Path, settings: dict, rows: list, chosen: set[int]) -> None:
    """chosen_lr in each job's W&B summary, where it changed (each is a resume of its run, ~2 s offline)."""
    import wandb

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


def _tensorboard(sweep_dir: Path, rows: list, chosen: set[int]) -> None:
    import matplotlib.image
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(sweep_dir / "tensorboard"))
    for figure in FIGURES:
        if (sweep_dir / figure.file).is_file():
            writer.add_image(f"report/{figure.key}", matplotlib.image.imread(sweep_dir / figure.file)[..., :3],
                             dataformats="HWC")
    nan = float("nan")
    for r in (r for r in rows if r.status in runs.FINISHED):
        writer.add_hparams({"model": r.model, "variant": r.variant or "", "lr": r.lr, "seed": r.seed,
                            "batch_size": r.batch_size or 0, "chosen_lr": id(r) in chosen, "setting": r.setting},
                           {"hparam/val_error": nan if r.val_error is None else r.val_error,
                            "hparam/test_error": nan if r.test_error is None else r.test_error}, run_name=r.job)
    writer.close()


def spec(sweep_dir: Path, settings: dict, entity: Optional[str], choices: list) -> dict[str, Any]:
    """The workspace and the report, declared (the JSON written offline; build() turns it into objects)."""
    from allconv_sweep.training.wandb_run import config_path

    group, where = settings["group"], {"entity": entity, "project": settings["project"], "group": settings["group"]}
    panels = [{"type": "bar", "title": "test error per network", "metric": "test_error", "groupby": "model.name"},
              {"type": "bar", "title": "test error per variant", "metric": "test_error", "groupby": "model.variant"},
              {"type": "parallel_coordinates", "title": "family -> variant -> lr -> val error -> test error",
               "columns": [{"kind": k, "name": n} for k, n in PARALLEL]},
              {"type": "line", "title": "validation accuracy per epoch, by network", "x": "epoch", "y": "val/acc",
               "groupby": "model.name"}]
    table = "\n".join(table3_section(choices)).strip() or "(no Table 3 comparison in this sweep's report)"
    blocks = [{"type": "h1", "text": "Table 3: ours beside the paper"}, {"type": "markdown", "text": table},
              {"type": "h2", "text": "The report's figures"},
              {"type": "media", "run_filter": f"Metric('Group') = '{group}' and Metric('JobType') = 'report'",
               "keys": [f.key for f in FIGURES if (sweep_dir / f.file).is_file()]}]
    return {"workspace": {**where, "name": f"{group}: variants compared", "panels": panels,
                          "runs_table": [f"{s}:{config_path(k) if s == 'config' else k}" for s, k in RUNS_TABLE],
                          "filter": f"Metric('Group') = '{group}'"},
            "report": {**where, "title": f"{group}: Table 3 of Striving for Simplicity, reproduced", "blocks": blocks}}


def build(declared: dict):
    import wandb_workspaces.reports.v2 as wr
    import wandb_workspaces.workspaces as ws

    w, r, panels = declared["workspace"], declared["report"], []
    for p in w["panels"]:
        if p["type"] == "bar":
            panels.append(wr.BarPlot(title=p["title"], metrics=[wr.SummaryMetric(p["metric"])], groupby_aggfunc="mean",
                                     groupby=wr.Config(p["groupby"]), groupby_rangefunc="minmax"))
        elif p["type"] == "parallel_coordinates":
            panels.append(wr.ParallelCoordinatesPlot(title=p["title"], columns=[wr.ParallelCoordinatesPlotColumn(
                metric=wr.Config(c["name"]) if c["kind"] == "config" else wr.SummaryMetric(c["name"]))
                for c in p["columns"]]))
        elif p["type"] == "line":
            panels.append(wr.LinePlot(title=p["title"], x=p["x"], y=[p["y"]], groupby=wr.Config(p["groupby"])))
    workspace = ws.Workspace(entity=w["entity"], project=w["project"], name=w["name"],
                             sections=[ws.Section(name="variants", panels=panels, is_open=True)],
                             runset_settings=ws.RunsetSettings(filters=w["filter"], pinned_columns=w["runs_table"]))
    blocks = [wr.PanelGrid(runsets=[wr.Runset(entity=r["entity"], project=r["project"], filters=b["run_filter"])],
                           panels=[wr.MediaBrowser(media_keys=b["keys"])]) if b["type"] == "media" else
              wr.MarkdownBlock(text=b["text"]) if b["type"] == "markdown" else getattr(wr, b["type"].upper())(b["text"])
              for b in r["blocks"]]
    return workspace, wr.Report(entity=r["entity"], project=r["project"], title=r["title"], blocks=blocks)


def dashboard(sweep_dir: str | Path, echo: bool = True) -> dict[str, Any]:
    """Save the workspace and the report (with credentials), else write their specs; returns what it did."""
    from allconv_sweep.training.wandb_run import has_credentials, resolve_mode

    sweep_dir = Path(sweep_dir).resolve()
    rows, choices = read_sweep(sweep_dir)
    settings = wandb_settings(sweep_dir, rows)
    if settings is None:
        raise UserError(f"{sweep_dir}: none of its jobs logged to W&B (run the sweep with logger=wandb)")
    online = has_credentials() and resolve_mode(settings.get("mode")) == "online"
    entity = settings.get("entity")
    if online and not entity:
        import wandb
        entity = wandb.Api().default_entity
    declared = spec(sweep_dir, settings, entity or "<your W&B entity>", choices)
    workspace, report = build(declared)
    if online:
        workspace.save()
        report.save()
        out = {"workspace_url": workspace.url, "report_url": report.url}
        message = f"workspace: {workspace.url}\nreport: {report.url}"
    else:
        declared["workspace"]["view"] = json.loads(workspace._to_model().model_dump_json(by_alias=True))
        runs.write_json(sweep_dir / WORKSPACE_JSON, declared["workspace"])
        runs.write_json(sweep_dir / REPORT_JSON, declared["report"])
        command = (f"wandb sync {sweep_dir}/*/wandb/offline-run-* {sweep_dir}/wandb/offline-run-* && "
                   f"python -m allconv_sweep.dashboard {sweep_dir}")
        out = {"workspace_spec": str(sweep_dir / WORKSPACE_JSON), "report_spec": str(sweep_dir / REPORT_JSON),
               "command": command}
        message = (f"no W&B credentials: wrote {sweep_dir / WORKSPACE_JSON} and {sweep_dir / REPORT_JSON}.\n"
                   f"Publish the runs and both dashboards, logged in (wandb login), with:\n  {command}")
    if echo:
        print(message)
    return out


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m allconv_sweep.dashboard",
                                     description="a W&B workspace and report comparing a sweep's variants "
                                                 "(saved with credentials, else written as JSON specs)")
    parser.add_argument("sweep_dir", help="a sweep folder whose jobs ran with logger=wandb")
    return command(dashboard, parser.parse_args(argv).sweep_dir)
