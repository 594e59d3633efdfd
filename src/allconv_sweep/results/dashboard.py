"""python -m allconv_sweep.dashboard <sweep dir>: a W&B workspace comparing the sweep's variants and a W&B Report
(Table 3, the figures), saved with credentials, else written as JSON specs to publish after `wandb sync`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Optional

from allconv_sweep import runs
from allconv_sweep.errors import UserError, command
from allconv_sweep.results.figures import FIGURES
from allconv_sweep.results.tables import read_sweep, table3_section

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
    """The workspace and the report of spec() as wandb-workspaces objects."""
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
