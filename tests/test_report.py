"""The sweep report on hand-written metrics.json files: the paper's numbers, the lr choice, seeds, statuses."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from allconv_sweep.results import paper, report
from allconv_sweep.results.figures import epoch_log
from allconv_sweep.results.paper import PAPER, PAPER_TABLE3
from allconv_sweep.results.report import write_report
from allconv_sweep.runs.choose import choose
from allconv_sweep.runs.collect import collect

NETWORKS = {"model_a": ("A", "base"), "strided_cnn_a": ("A", "strided"), "convpool_cnn_a": ("A", "convpool"),
            "all_cnn_a": ("A", "all"), "model_b": ("B", "base"), "strided_cnn_b": ("B", "strided"),
            "convpool_cnn_b": ("B", "convpool"), "all_cnn_b": ("B", "all"), "model_c": ("C", "base"),
            "strided_cnn_c": ("C", "strided"), "convpool_cnn_c": ("C", "convpool"), "all_cnn_c": ("C", "all")}


def job(sweep: Path, model: str, lr: float, seed: int = 0, status: str = "ok", val: float | None = 0.2,
        test: float | None = 0.1, data: str = "cifar10", augment: str = "none", extra: tuple = (), **more) -> Path:
    overrides = [f"model={model}", f"optimizer.lr={lr}", *extra] + ([f"seed={seed}"] if seed else [])
    d = sweep / ",".join(sorted(o for o in overrides))
    d.mkdir(parents=True)
    family, variant = NETWORKS[model]
    (d / "metrics.json").write_text(json.dumps({
        "status": status, "reason": more.pop("reason", None), "model": model, "family": family, "variant": variant,
        "data": data, "augment": augment, "lr": lr, "seed": seed, "val_error": val, "test_error": test,
        "val_acc": None if val is None else 1 - val, "test_acc": None if test is None else 1 - test,
        "epochs_run": 3, "max_epochs": 3, "wall_time_s": 12.0, "overrides": overrides, **more}))
    return d


def rows_csv(sweep: Path) -> list[dict]:
    with open(sweep / "results.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_paper_numbers_are_table_3_of_arxiv_1412_6806():
    assert PAPER_TABLE3 == {
        "model_a": 12.47, "strided_cnn_a": 13.46, "convpool_cnn_a": 10.21, "all_cnn_a": 10.30,
        "model_b": 10.20, "strided_cnn_b": 10.98, "convpool_cnn_b": 9.33, "all_cnn_b": 9.10,
        "model_c": 9.74, "strided_cnn_c": 10.19, "convpool_cnn_c": 9.31, "all_cnn_c": 9.08}
    assert PAPER[("cifar100", "none", "all_cnn_c")] == 33.71
    assert PAPER[("cifar10", "flip_translate", "all_cnn_c")] == 7.25


def test_table3_layout_puts_ours_beside_the_paper(tmp_path):
    sweep = tmp_path / "pooling_ablation"
    for i, model in enumerate(NETWORKS):
        job(sweep, model, 0.1, val=0.30, test=0.50)                     # the worse lr on validation
        job(sweep, model, 0.05, val=0.10, test=0.10 + i / 1000)         # chosen: test error 10.0 + i/10 %
    out = write_report(sweep, echo=False)
    assert out["counts"] == {"ok": 24, "diverged": 0, "failed": 0, "interrupted": 0, "missing": 0}
    assert len(out["choices"]) == 12 and {c.lr for c in out["choices"]} == {0.05}
    md = (sweep / "results.md").read_text()
    table = md.split("### Table 3")[1].split("##")[0]
    assert "| **A** | 10.00 (12.47, -2.47) | 10.10 (13.46, -3.36) | 10.20 (10.21, -0.01) | 10.30 (10.30, +0.00) |" in table
    assert "| **C** | 10.80 (9.74, +1.06) | 10.90 (10.19, +0.71) | 11.00 (9.31, +1.69) | 11.10 (9.08, +2.02) |" in table
    rows = rows_csv(sweep)
    assert len(rows) == 24 and sum(r["chosen"] == "True" for r in rows) == 12
    chosen_c = next(r for r in rows if r["model"] == "all_cnn_c" and r["chosen"] == "True")
    assert chosen_c["paper_test_error_pct"] == "9.08" and chosen_c["lr"] == "0.05"
    assert (sweep / "table3.png").stat().st_size > 20_000


def test_lr_is_chosen_on_the_seeds_every_lr_has_and_test_error_is_mean_std_over_seeds(tmp_path):
    sweep = tmp_path / "s"
    job(sweep, "all_cnn_c", 0.1, val=0.20, test=0.10)
    job(sweep, "all_cnn_c", 0.05, val=0.25, test=0.05)
    # more seeds only at lr 0.1 (the seeds sweep): worse on validation, must not move the choice
    job(sweep, "all_cnn_c", 0.1, seed=1, val=0.40, test=0.12)
    job(sweep, "all_cnn_c", 0.1, seed=2, val=0.40, test=0.14)
    (c,) = choose(collect(sweep))
    assert c.lr == 0.1 and c.chosen_on == "val" and c.candidates == {0.1: 0.20, 0.05: 0.25}
    assert [r.seed for r in c.rows] == [0, 1, 2]
    assert c.test_mean == pytest.approx(0.12) and c.test_std == pytest.approx(0.02)
    md = write_report(sweep, plot=False, echo=False)["markdown"]
    assert "12.00 ± 2.00" in md and "| 3 | lr selection: validation held out | - | 9.08 | +2.92 |" in md


def test_failed_diverged_and_missing_jobs_are_shown_never_dropped(tmp_path):
    sweep = tmp_path / "lr_grid"
    job(sweep, "all_cnn_c", 0.25, status="diverged", val=0.9, test=0.9, reason="accuracy 0.100 still at chance")
    job(sweep, "all_cnn_c", 0.1, status="ok", val=0.9, test=0.88)   # ties the diverged run on validation
    job(sweep, "all_cnn_c", 0.05, status="failed", val=None, test=None, reason="RuntimeError: boom")
    started = sweep / "model=all_cnn_c,optimizer.lr=0.01"
    (started / ".hydra").mkdir(parents=True)
    (started / ".hydra" / "config.yaml").write_text("model: {name: all_cnn_c, family: C, variant: all}\n"
                                                    "data: {name: cifar10}\naugment: {name: none}\n"
                                                    "optimizer: {lr: 0.01}\nseed: 0\n")
    (sweep / "sweep.json").write_text(json.dumps({"name": "lr_grid", "jobs": {
        "model=all_cnn_c,optimizer.lr=0.001": {"model": "all_cnn_c", "family": "C", "variant": "all", "data": "cifar10",
                                               "augment": "none", "lr": 0.001, "seed": 0, "overrides": []}}}))
    out = write_report(sweep, plot=False, echo=False)
    assert out["counts"] == {"ok": 1, "diverged": 1, "failed": 1, "interrupted": 0, "missing": 2}
    by_lr = {r["lr"]: r for r in rows_csv(sweep)}
    assert by_lr["0.01"]["status"] == "missing" and "started but never finished" in by_lr["0.01"]["reason"]
    assert by_lr["0.001"]["status"] == "missing" and "never started" in by_lr["0.001"]["reason"]
    assert by_lr["0.05"]["reason"] == "RuntimeError: boom"
    (c,) = out["choices"]
    assert c.lr == 0.1  # at equal validation error a finished run beats a diverged one
    assert "| diverged |" in out["markdown"] and "| failed |" in out["markdown"]


def test_cifar100_and_augmented_results_sit_beside_the_papers(tmp_path):
    sweep = tmp_path / "mixed"
    job(sweep, "all_cnn_c", 0.05, data="cifar100", test=0.40, extra=("data=cifar100",))
    job(sweep, "all_cnn_c", 0.05, augment="flip_translate", test=0.08, extra=("augment=flip_translate",))
    md = write_report(sweep, plot=False, echo=False)["markdown"]
    assert "| All-CNN-C | cifar100 | none | - | 0.05 |" in md and "| 33.71 | +6.29 |" in md
    assert "| All-CNN-C | cifar10 | flip_translate | - | 0.05 |" in md and "| 7.25 | +0.75 |" in md
    # Table 3's parameter-count column: ours beside the paper's (from metrics.json)


def test_runs_that_differ_in_other_settings_are_not_mixed(tmp_path):
    sweep = tmp_path / "s"
    job(sweep, "all_cnn_c", 0.1, val=0.1, test=0.1, extra=("model_options.batch_norm=true",))
    job(sweep, "all_cnn_c", 0.1, val=0.2, test=0.2, extra=("model_options.batch_norm=false",))
    choices = choose(collect(sweep))
    assert sorted(c.setting for c in choices) == ["model_options.batch_norm=false", "model_options.batch_norm=true"]
    assert all(paper.paper_value(c) is None for c in choices)  # neither is the paper's setting as such


def test_epoch_log_reads_lightning_csv_and_drops_the_final_validate(tmp_path):
    (tmp_path / "csv").mkdir()
    (tmp_path / "csv" / "metrics.csv").write_text(
        "epoch,step,test/acc,train/acc,val/acc,val/loss\n"
        "0,1,,,0.25,2.0\n0,1,,0.2,,\n1,3,,,0.5,1.5\n1,3,,0.4,,\n2,4,,,0.5,1.5\n2,4,0.45,,,\n")
    log = epoch_log(tmp_path, epochs_run=2)
    assert (log["epochs"], log["val_error"]) == ([1, 2], [75.0, 50.0])


def test_report_cli_errors_are_one_line_and_write_nothing(tmp_path, capsys):
    assert report.main([str(tmp_path / "nope")]) == 2
    assert capsys.readouterr().err.strip() == f"error: {tmp_path / 'nope'}: no such folder; give a sweep folder, e.g. outputs/sweeps/pooling_ablation"
    (tmp_path / "empty").mkdir()
    assert report.main([str(tmp_path / "empty")]) == 2
    assert "not a sweep folder" in capsys.readouterr().err
    assert list((tmp_path / "empty").iterdir()) == []
    job(tmp_path / "ok", "model_a", 0.1)
    assert report.main([str(tmp_path / "ok"), "--no-plot"]) == 0
    assert "Model A" in capsys.readouterr().out and not list((tmp_path / "ok").glob("*.png"))


def test_final_runs_on_every_training_image_give_the_reported_number(tmp_path):
    """+sweep=final: the lr is chosen on the selection runs (validation held out); the test error comes from the
    runs retrained at that lr with data.val_size=0, marked as such."""
    sweep = tmp_path / "s"
    job(sweep, "all_cnn_c", 0.1, val=0.20, test=0.15, train_size=45000, val_size=5000, num_params=1369738)
    job(sweep, "all_cnn_c", 0.05, val=0.25, test=0.12, train_size=45000, val_size=5000, num_params=1369738)
    for seed, test in ((0, 0.10), (1, 0.12)):  # at the chosen lr 0.1, on all 50,000
        job(sweep, "all_cnn_c", 0.1, seed=seed, val=None, test=test, extra=("data.val_size=0",),
            train_size=50000, val_size=0, num_params=1369738)
    (c,) = choose(collect(sweep))
    assert c.lr == 0.1 and c.protocol == "final" and [r.seed for r in c.rows] == [0, 1]
    assert c.test_mean == pytest.approx(0.11) and c.num_params == 1369738
    md = write_report(sweep, plot=False, echo=False)["markdown"]
    assert "11.00 ± 1.41 ᶠ (9.08, +1.92)" in md
    assert "final: all training images (50,000 images) | 1,369,738 |" in md
