"""The stability map (python -m allconv_sweep.stability) on hand-written run folders, and the sweep file."""

from __future__ import annotations

import json
from pathlib import Path

from allconv_sweep.config import compose
from allconv_sweep.results import stability


def _run(sweep: Path, init: str, batch: int, lr: float, seed: int, live: list[float], loss: list[float],
         test_acc: float, status: str = "ok") -> None:
    d = sweep / f"model.init={init},data.batch_size={batch},optimizer.lr={lr},seed={seed}"
    d.mkdir(parents=True)  # what a run writes: run.json (its identity) and metrics.json (its record)
    (d / "run.json").write_text(json.dumps({"identity": {
        "model.init": init, "data.batch_size": batch, "optimizer.lr": lr, "seed": seed,
        "callbacks.divergence.dead_output_fraction": 0.01}}))
    (d / "metrics.json").write_text(json.dumps({"status": status, "epochs_run": len(live), "test_acc": test_acc,
                                                "train_size": 3653, "lr": lr, "seed": seed, "batch_size": batch}))
    (d / "csv").mkdir()
    rows = ["epoch,step,train/loss_epoch,val/acc,val/live_fraction,test/acc"]
    for e, (f, x) in enumerate(zip(live, loss)):
        rows += [f"{e},{e},,0.1,{f},", f"{e},{e},{x},,,"]
    rows.append(f"{len(live)},{len(live)},,,,{test_acc}")  # the final test row is not an epoch
    (d / "csv" / "metrics.csv").write_text("\n".join(rows) + "\n")


def test_map_counts_alive_seeds_and_the_epoch_each_dead_run_died(tmp_path):
    sweep = tmp_path / "stability"
    _run(sweep, "caffe_xavier", 256, 0.05, 0, [1, 1, 1, 1], [2.30, 2.29, 2.25, 2.20], 0.18)
    _run(sweep, "caffe_xavier", 256, 0.05, 1, [1, 0.6, 0.8, 0.9], [2.30, 2.30, 2.28, 2.26], 0.16)
    _run(sweep, "xavier_uniform", 128, 0.05, 0, [1, 0.5, 0.0, 0.0], [2.30, 2.30, 2.3026, 2.3026], 0.10,
         status="diverged")
    # a dip under 1% that recovers is not a death
    _run(sweep, "xavier_uniform", 128, 0.05, 1, [1, 0.0, 0.3, 0.5], [2.30, 2.30, 2.29, 2.28], 0.12)
    runs = stability.write(sweep, echo=False)
    died = {(r.init, r.seed): r.died_epoch for r in runs}
    assert died == {("caffe_xavier", 0): None, ("caffe_xavier", 1): None, ("xavier_uniform", 0): 3,
                    ("xavier_uniform", 1): None}
    md = (sweep / "stability.md").read_text()
    assert "| caffe_xavier | 256 | 0.05 | 2/2 | 2/2 | - | 2.200, 2.260 | 100.0%, 90.0% | 17.0%; 18.0%, 16.0% |" in md
    assert "| xavier_uniform | 128 | 0.05 | 1/2 | 1/2 | 3 |" in md  # the survivor left the plateau (2.28)
    assert (sweep / "stability.png").stat().st_size > 20_000


def test_stability_sweep_is_the_faithful_recipe_over_init_batch_and_lr():
    cfg = compose(["+sweep=stability"], return_hydra_config=True)
    assert cfg.model.name == "all_cnn_c" and cfg.model.final_relu and not cfg.model.batch_norm
    assert cfg.preprocess.name == "gcn_zca" and cfg.augment.name == "none"
    params = cfg.hydra.sweeper.params
    assert set(params["model.init"].split(",")) == {"caffe_xavier", "xavier_uniform", "normal_0.05"}
    assert set(params["data.batch_size"].split(",")) == {"128", "256"}
    assert cfg.hydra.callbacks.report._target_ == "allconv_sweep.results.stability.StabilityReport"
