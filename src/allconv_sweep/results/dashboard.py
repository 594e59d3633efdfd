"""W&B dashboards as code (the sweep's report in the trackers: results/trackers.py).

python -m allconv_sweep.dashboard <sweep dir> builds, for the sweep's W&B group, a saved workspace (view)
with wandb-workspaces:
  - bar charts of test_error per network (model.name) and per variant (model.variant);
  - a parallel-coordinates panel model.family -> model.variant -> optimizer.lr -> val_error -> test_error;
  - validation curves (val/acc per epoch) grouped by network;
  - the runs table with each job's lr, seed, status, chosen_lr (the lr the report chose), val and test error;
and a W&B Report: the Table 3 comparison (ours beside the paper's) and the report's figures (the report
run's images). With W&B credentials it saves both and prints their URLs. Without (offline runs), it writes
their specs to <sweep dir>/wandb_workspace.json and wandb_report.json and prints the one command that
publishes them after `wandb sync`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Optional

from allconv_sweep import runs
from allconv_sweep.errors import UserError, command
from allconv_sweep.results.figures import FIGURES
from allconv_sweep.results.tables import read_sweep, table3_section

WORKSPACE_JSON, REPORT_JSON = "wandb_workspace.json", "wandb_report.json"
RUNS_TABLE = ["config:model.name", "config:model.variant", "config:optimizer.lr", "config:seed", "summary:status",
              "summary:chosen_lr", "summary:val_error", "summary:test_error"]
PARALLEL = [("config", "model.family"), ("config", "model.variant"), ("config", "optimizer.lr"),
            ("summary", "val_error"), ("summary", "test_error")]


# --------------------------------------------------------------------------------------------- the sweep

def wandb_settings(sweep_dir: Path, rows: list) -> Optional[dict[str, Any]]:
    """{project, entity, group, mode} of the sweep's W&B runs (from a job's config), or None without W&B."""
    from allconv_sweep.config.records import config_values  # a job's config: its values read as data
    from allconv_sweep.training.wandb_run import group_for

    for r in rows:
        if not r.wandb_run_id:
            continue
        cfg = config_values(Path(r.path) / ".hydra" / "config.yaml", {
            "logger.wandb.project": str, "logger.wandb.entity": str, "logger.wandb.mode": str, "tracking.group": str})
        return {"project": cfg["logger.wandb.project"] or "allconv_sweep", "entity": cfg["logger.wandb.entity"],
                "group": str(cfg["tracking.group"] or group_for(sweep_dir)), "mode": cfg["logger.wandb.mode"]}
    return None


def spec(sweep_dir: Path, settings: dict, entity: Optional[str], choices: list) -> dict[str, Any]:
    """The workspace and the report, declared (the JSON written offline; build_* turns it into objects)."""
    group = settings["group"]
    table = "\n".join(table3_section(choices)).strip()
    figures = [f.key for f in FIGURES if (sweep_dir / f.file).is_file()]
    return {
        "workspace": {
            "entity": entity, "project": settings["project"], "group": group,
            "name": f"{group}: variants compared",
            "panels": [
                {"type": "bar", "title": "test error per network", "metric": "test_error", "groupby": "model.name"},
                {"type": "bar", "title": "test error per variant", "metric": "test_error", "groupby": "model.variant"},
                {"type": "parallel_coordinates", "title": "family -> variant -> lr -> val error -> test error",
                 "columns": [{"kind": k, "name": n} for k, n in PARALLEL]},
                {"type": "line", "title": "validation accuracy per epoch, by network", "x": "epoch",
                 "y": "val/acc", "groupby": "model.name"},
            ],
            "runs_table": RUNS_TABLE,
            "filter": f"Metric('Group') = '{group}'",
        },
        "report": {
            "entity": entity, "project": settings["project"], "group": group,
            "title": f"{group}: Table 3 of Striving for Simplicity, reproduced",
            "blocks": [
                {"type": "h1", "text": "Table 3: ours beside the paper"},
                {"type": "markdown", "text": table or "(no Table 3 comparison in this sweep's report)"},
                {"type": "h2", "text": "The report's figures"},
                {"type": "media", "run_filter": f"Metric('Group') = '{group}' and Metric('JobType') = 'report'",
                 "keys": figures},
            ],
        },
    }


def build_workspace(w: dict):
    import wandb_workspaces.reports.v2 as wr
    import wandb_workspaces.workspaces as ws

    def metric(kind: str, name: str):
        return wr.Config(name) if kind == "config" else wr.SummaryMetric(name)

    panels = []
    for p in w["panels"]:
        if p["type"] == "bar":
            panels.append(wr.BarPlot(title=p["title"], metrics=[wr.SummaryMetric(p["metric"])],
                                     groupby=wr.Config(p["groupby"]), groupby_aggfunc="mean",
                                     groupby_rangefunc="minmax"))
        elif p["type"] == "parallel_coordinates":
            panels.append(wr.ParallelCoordinatesPlot(title=p["title"], columns=[
                wr.ParallelCoordinatesPlotColumn(metric=metric(c["kind"], c["name"])) for c in p["columns"]]))
        elif p["type"] == "line":
            panels.append(wr.LinePlot(title=p["title"], x=p["x"], y=[p["y"]], groupby=wr.Config(p["groupby"])))
    return ws.Workspace(entity=w["entity"], project=w["project"], name=w["name"],
                        sections=[ws.Section(name="variants", panels=panels, is_open=True)],
                        runset_settings=ws.RunsetSettings(filters=w["filter"], pinned_columns=w["runs_table"]))


def build_report(r: dict):
    import wandb_workspaces.reports.v2 as wr

    blocks = []
    for b in r["blocks"]:
        if b["type"] == "h1":
            blocks.append(wr.H1(b["text"]))
        elif b["type"] == "h2":
            blocks.append(wr.H2(b["text"]))
        elif b["type"] == "markdown":
            blocks.append(wr.MarkdownBlock(text=b["text"]))
        elif b["type"] == "media":
            blocks.append(wr.PanelGrid(
                runsets=[wr.Runset(entity=r["entity"], project=r["project"], filters=b["run_filter"])],
                panels=[wr.MediaBrowser(media_keys=b["keys"])]))
    return wr.Report(entity=r["entity"], project=r["project"], title=r["title"], blocks=blocks)


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
    workspace, report = build_workspace(declared["workspace"]), None
    if online:
        report = build_report(declared["report"])
        workspace.save()
        report.save()
        out = {"workspace_url": workspace.url, "report_url": report.url}
        if echo:
            print(f"workspace: {out['workspace_url']}\nreport: {out['report_url']}")
        return out
    declared["workspace"]["view"] = json.loads(workspace._to_model().model_dump_json(by_alias=True))
    runs.write_json(sweep_dir / WORKSPACE_JSON, declared["workspace"])
    runs.write_json(sweep_dir / REPORT_JSON, declared["report"])
    command = (f"wandb sync {sweep_dir}/*/wandb/offline-run-* {sweep_dir}/wandb/offline-run-* && "
               f"python -m allconv_sweep.dashboard {sweep_dir}")
    if echo:
        print(f"no W&B credentials: wrote {sweep_dir / WORKSPACE_JSON} and {sweep_dir / REPORT_JSON}.\n"
              f"Publish the runs and both dashboards, logged in (wandb login), with:\n  {command}")
    return {"workspace_spec": str(sweep_dir / WORKSPACE_JSON), "report_spec": str(sweep_dir / REPORT_JSON),
            "command": command}


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m allconv_sweep.dashboard",
                                     description="a W&B workspace and report comparing a sweep's variants "
                                                 "(saved with credentials, else written as JSON specs)")
    parser.add_argument("sweep_dir", help="a sweep folder whose jobs ran with logger=wandb")
    args = parser.parse_args(argv)
    return command(dashboard, args.sweep_dir)


if __name__ == "__main__":
    sys.exit(main())
