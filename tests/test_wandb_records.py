"""What W&B gets, read back from a real offline sweep's .wandb files (wandb's own Record protobuf, conftest's
reader): every key the dashboard's workspace names resolves in the runs' config, summary or history; the report
run logs Table 3 as a table and each figure under its own key; training runs are job_type "train"; the report's
resume of a job's run keeps its name and group."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from allconv_sweep.results import dashboard
from allconv_sweep.results.figures import FIGURES
from conftest import job_dirs, multirun, wandb_records, wandb_run_records


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("wandb")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WANDB_MODE", "offline")
        mp.setenv("WANDB_SILENT", "true")
        mp.delenv("WANDB_API_KEY", raising=False)
        mp.setenv("NETRC", str(root / "no-netrc"))
        assert multirun(["+sweep=lr_grid", "optimizer.lr=0.1,0.05", "logger=wandb"], root) == 0
        assert dashboard.main([str(root / "lr_grid")]) == 0  # offline: the workspace's spec and W&B's view of it
    return root / "lr_grid"


def _logs(folder: Path) -> list[Path]:
    return sorted(folder.glob("wandb/offline-run-*/run-*.wandb"))


def backend_config(log: Path) -> dict:
    """The run's config as W&B's backend keeps it: each top-level key as {"value": ...}, as wandb's own
    config_util.dict_from_proto_list builds it from the config records."""
    config: dict = {}
    for record in wandb_records(log, "run") + wandb_records(log, "config"):
        for item in (record.config.update if hasattr(record, "config") else record.update):
            assert item.key, f"{log}: a nested config item {list(item.nested_key)}"
            config[item.key] = {"desc": None, "value": json.loads(item.value_json)}
    return config


def keyed(log: Path, kind: str) -> dict:
    return {item.key or "/".join(item.nested_key): json.loads(item.value_json)
            for record in wandb_records(log, kind) for item in (record.item if kind == "history" else record.update)}


def resolve(tree: dict, path: str):
    """A dotted backend path in a nested dict (a key may itself hold dots: a config logged flat); KeyError if none."""
    parts = path.split(".")
    for n in range(len(parts), 0, -1):
        key = ".".join(parts[:n])
        if isinstance(tree, dict) and key in tree:
            return tree[key] if n == len(parts) else resolve(tree[key], ".".join(parts[n:]))
    raise KeyError(path)


def named_keys(view) -> set[tuple[str, str]]:
    """(section, backend key) of every config, summary and history key W&B's view of the workspace names."""
    found: set[tuple[str, str]] = set()

    def walk(node, field: str = "") -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, k)
        elif isinstance(node, list):
            for v in node:
                walk(v, field)
        elif isinstance(node, str) and node:
            for prefix, section in (("config:", "config"), ("summary:", "summary"), ("summary_metrics.", "summary")):
                if node.startswith(prefix):
                    found.add((section, node[len(prefix):]))
                    return
            if field == "groupBy":  # a panel's grouping: a config key in its backend form
                found.add(("config", node))
            elif field in ("xAxis", "metrics"):  # a line plot's axes: logged metrics
                found.add(("history", node))

    walk(view)
    return found


def test_every_key_the_workspace_names_is_in_the_runs_logged_config_or_summary(sweep):
    view = json.loads((sweep / dashboard.WORKSPACE_JSON).read_text())["view"]
    keys = named_keys(view)
    assert ("config", "model.value.name") in keys and ("summary", "test_error") in keys  # the scan finds them
    jobs = job_dirs(sweep)
    for job in jobs:
        logs = _logs(job)  # the training run, then the report's resume of it (chosen_lr): one W&B run
        where = {"config": {k: v for log in logs for k, v in backend_config(log).items()},
                 "summary": {k: v for log in logs for k, v in keyed(log, "summary").items()},
                 "history": {k: v for log in logs for k, v in keyed(log, "history").items()}}
        for section, key in sorted(keys):
            if key == "displayName":
                continue
            try:
                resolve(where[section], key)
            except KeyError:
                pytest.fail(f"the workspace names {section} {key!r}: not in {job.name}'s .wandb records "
                            f"({sorted(where[section])[:12]} ...)")
    # the runs the workspace filters to: the sweep's group
    groups = {r.run_group for job in jobs for log in _logs(job) for r in wandb_run_records(log)}
    assert groups == {json.loads((sweep / dashboard.WORKSPACE_JSON).read_text())["group"]}


def test_the_report_run_logs_table3_as_a_table_and_each_figure_under_its_own_key(sweep):
    (log,) = _logs(sweep)
    (run,) = wandb_run_records(log)
    assert run.job_type == "report"
    logged = keyed(log, "history")
    tables = [k for k, v in logged.items() if k.endswith("/_type") and v == "table-file"]
    assert tables == ["table3_comparison/_type"]  # Table 3's numbers, not overwritten by table3.png
    for figure in FIGURES:
        if (sweep / figure.file).is_file():
            assert logged[f"{figure.key}/_type"] == "image-file", figure.key
    media = next(b for b in json.loads((sweep / dashboard.REPORT_JSON).read_text())["blocks"] if b["type"] == "media")
    assert media["keys"] and all(f"{k}/_type" in logged for k in media["keys"])  # the report's panels find them


def test_training_runs_are_train_jobs_and_the_reports_resume_keeps_name_and_group(sweep):
    for job in job_dirs(sweep):
        first, resumed = (wandb_run_records(log)[0] for log in _logs(job))  # training, then the chosen_lr update
        assert first.job_type == "train" and first.display_name == job.name and first.run_group == "lr_grid"
        assert (resumed.run_id, resumed.display_name, resumed.run_group, resumed.job_type) == \
            (first.run_id, first.display_name, first.run_group, "train")
