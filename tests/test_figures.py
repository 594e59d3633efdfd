"""The report's figures and the W&B dashboards, on a synthetic 48-job pooling ablation (with seeds, diverged
and failed jobs) and on an offline W&B sweep."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from allconv_sweep.results import dashboard
from allconv_sweep.results.report import write_report
from test_report import NETWORKS, job

LRS = (0.25, 0.1, 0.05, 0.01)


def _log(run_dir: Path, val_errors: list[float], drop_at: int | None = None) -> None:
    """A Lightning CSV log: val/acc per epoch, the lr at each epoch's first step (one step an epoch)."""
    rows = ["epoch,step,lr,val/acc,test/acc"]
    for e, err in enumerate(val_errors):
        lr = 0.05 * (0.1 if drop_at is not None and e >= drop_at else 1)
        rows += [f",{e},{lr},,", f"{e},{e},,{1 - err},"]
    (run_dir / "csv").mkdir()
    (run_dir / "csv" / "metrics.csv").write_text("\n".join(rows) + "\n")


@pytest.fixture(scope="module")
def ablation(tmp_path_factory) -> tuple[Path, dict]:
    sweep = tmp_path_factory.mktemp("figs") / "pooling_ablation"
    for i, model in enumerate(NETWORKS):
        for lr in LRS:
            val = 0.12 + i / 100 + abs(lr - 0.05)            # 0.05 is best for every network
            status = "ok"
            if model == "model_a" and lr == 0.25:
                status = "diverged"
            if model == "all_cnn_b" and lr == 0.01:
                status = "failed"
            d = job(sweep, model, lr, status=status, val=None if status == "failed" else val,
                    test=None if status == "failed" else val - 0.01, num_params=1_000_000 + i, val_size=5000)
            _log(d, [0.9, 0.5, val], drop_at=2)  # job() records epochs_run 3
        for seed in (1, 2):  # the seeds sweep at the chosen lr
            job(sweep, model, 0.05, seed=seed, val=0.12 + i / 100, test=0.11 + i / 100 + seed / 1000, val_size=5000)
    return sweep, write_report(sweep, echo=False)


def test_every_figure_is_written_and_shown_in_results_md(ablation):
    sweep, result = ablation
    for name in ("lr_grid.png", "table3.png", "curves.png"):
        assert (sweep / name).stat().st_size > 20_000 and f"]({name})" in result["markdown"]
    assert not (sweep / "results.png").exists()


def test_lr_grid_panel_per_family_line_per_network_chosen_marked(ablation):
    _, result = ablation
    grid = result["figures"]["lr_grid.png"]
    assert sorted(grid) == ["family A", "family B", "family C"]
    for panel, networks in grid.items():
        assert len(networks) == 4  # one line per network of the family
        colors = [n["color"] for n in networks.values()]
        assert len(set(colors)) == len(colors)  # no colour repeats within a panel
        for model, line in networks.items():
            assert sorted(line["lrs"]) == sorted(LRS) and line["chosen"] == 0.05
    # diverged and failed points are marked, not dropped
    assert grid["family A"]["model_a"]["status"][grid["family A"]["model_a"]["lrs"].index(0.25)] == "diverged"
    b = grid["family B"]["all_cnn_b"]
    assert b["status"][b["lrs"].index(0.01)] == "failed" and b["errors"][b["lrs"].index(0.01)] is None


def test_table3_figure_is_ours_beside_the_papers_with_the_seed_spread(ablation):
    _, result = ablation
    bars = result["figures"]["table3.png"]
    assert len(bars) == 12 and bars["all_cnn_c"]["paper"] == 9.08 and bars["all_cnn_c"]["seeds"] == 3
    assert bars["all_cnn_c"]["std"] == pytest.approx(0.1)  # 0.001 apart: 0.1 percentage points
    md = result["markdown"]
    assert md.startswith("# pooling_ablation: CIFAR-10, beside the paper's numbers")
    assert "| All-CNN-C | 22.10 ± 0.10 | 9.08 | 1,000,011 | 1.4M |" in md  # Table 3 with the parameter counts


def test_curves_one_panel_per_family_with_the_lr_drop(ablation):
    _, result = ablation
    curves = result["figures"]["curves.png"]
    assert sorted(curves) == ["family A", "family B", "family C"]
    line = curves["family C"]["all_cnn_c"]
    assert line["epochs"] == [1, 2, 3] and line["lr_drops"] == [3]
    for networks in curves.values():
        colors = [n["color"] for n in networks.values()]
        assert len(set(colors)) == len(colors)


def test_a_single_job_has_no_grid_and_fake_data_no_paper_table(tmp_path):
    sweep = tmp_path / "one"
    job(sweep, "all_cnn_c", 0.05, data="fake")
    result = write_report(sweep, echo=False)
    assert "lr_grid.png" not in result["figures"] and not (sweep / "lr_grid.png").exists()
    md = result["markdown"]
    assert md.startswith("# one: synthetic data (data=fake)\n") and "Table 3: test error" not in md
    assert result["figures"]["table3.png"]["all_cnn_c"]["paper"] is None


def test_dashboard_spec_offline_names_the_group_the_lr_and_test_error(ablation, monkeypatch):
    sweep, result = ablation
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(sweep / "no-netrc"))
    for d in sweep.iterdir():  # as if the jobs had logged to W&B
        if (d / "metrics.json").is_file():
            m = json.loads((d / "metrics.json").read_text())
            (d / "metrics.json").write_text(json.dumps({**m, "wandb_run_id": "abc"}))
    out = dashboard.dashboard(sweep, echo=False)
    assert out["command"].startswith("wandb sync ") and "python -m allconv_sweep.dashboard" in out["command"]
    ws = json.loads((sweep / dashboard.WORKSPACE_JSON).read_text())
    assert ws["group"] == "pooling_ablation" and ws["filter"] == "Metric('Group') = 'pooling_ablation'"
    names = json.dumps(ws["panels"])
    assert "optimizer.lr" in names and "test_error" in names and "model.variant" in names
    assert [c["name"] for c in next(p for p in ws["panels"] if p["type"] == "parallel_coordinates")["columns"]] == \
        ["model.family", "model.variant", "optimizer.lr", "val_error", "test_error"]
    assert "summary:chosen_lr" in ws["runs_table"] and ws["view"]["spec"]  # W&B's own view model, too
    report = json.loads((sweep / dashboard.REPORT_JSON).read_text())
    assert "9.08" in json.dumps(report["blocks"])  # the Table 3 comparison
    assert next(b for b in report["blocks"] if b["type"] == "media")["keys"] == ["table3", "lr_grid", "curves"]
    # credentials but WANDB_MODE=offline: still the offline specs, never a call to the W&B server
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert dashboard.dashboard(sweep, echo=False)["command"].startswith("wandb sync ")


def test_offline_wandb_sweep_gets_a_report_run_and_chosen_lr_flags(tmp_path, monkeypatch):
    from conftest import job_dirs, metrics, multirun, wandb_records, wandb_run_records, wandb_summary

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    assert multirun(["+sweep=lr_grid", "optimizer.lr=0.1,0.05", "logger=wandb"], tmp_path) == 0
    sweep = tmp_path / "lr_grid"
    (report_log,) = list((sweep / "wandb").glob("offline-run-*/run-*.wandb"))
    (run,) = wandb_run_records(report_log)
    assert run.run_group == "lr_grid" and run.job_type == "report"
    logged = {item.key or "/".join(item.nested_key) for h in wandb_records(report_log, "history") for item in h.item}
    assert {"table3", "lr_grid", "curves"} <= {k.split("/")[0] for k in logged}  # media are nested (table3/_type, ...)
    flags = {}
    for job_dir in job_dirs(sweep):
        logs = sorted((job_dir / "wandb").glob("offline-run-*/run-*.wandb"))
        assert len(logs) == 2  # the job's run, then its resume by the report
        assert {r.run_id for log in logs for r in wandb_run_records(log)} == {metrics(job_dir)["wandb_run_id"]}
        flags[metrics(job_dir)["lr"]] = wandb_summary(logs[-1])["chosen_lr"]
    assert sorted(flags.values()) == [False, True]
    # the dashboard from these offline runs: specs written, no network needed
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    assert dashboard.main([str(sweep)]) == 0 and (sweep / dashboard.WORKSPACE_JSON).is_file()


def test_tensorboard_users_get_the_figures_and_every_jobs_hparams(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from conftest import job_dirs, multirun

    assert multirun(["+sweep=lr_grid", "optimizer.lr=0.1,0.05", "logger=tensorboard"], tmp_path) == 0
    board = tmp_path / "lr_grid" / "tensorboard"
    acc = EventAccumulator(str(board))
    acc.Reload()
    assert {"report/table3", "report/lr_grid", "report/curves"} <= set(acc.Tags()["images"])
    hparam_runs = {p.name for p in board.iterdir() if p.is_dir()}
    assert hparam_runs == {j.name for j in job_dirs(tmp_path / "lr_grid")}  # one hparams entry per job
