"""Issue 21 through the real command line on tiny fake data: the paper's claims with verdicts from a
two-network two-seed sweep, +sweep=ablations and +sweep=transfer (from a run folder and from a sweep folder)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import job_dirs, metrics, multirun

TINY = ["data=fake", "preprocess=standardize", "data.train_size=64", "data.val_size=32", "data.test_size=32",
        "data.batch_size=32", "trainer.max_epochs=1", "trainer.enable_progress_bar=false", "print_config=false"]
VERDICT = r"(supports|contradicts|inconclusive at 2 seeds)"


@pytest.fixture(scope="module")
def two_networks(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("claims")
    assert multirun(["+sweep=lr_grid", "model=all_cnn_c,model_c", "seed=0,1", "optimizer.lr=0.05", *TINY], root,
                    tiny=False) == 0
    return root / "lr_grid"


def test_two_networks_two_seeds_give_a_verdict_on_all_cnn_c(two_networks):
    md = (two_networks / "results.md").read_text()
    assert md.count("## How verdicts are made") == 1 and "±0.3 points" in md
    claims = md.split("## The paper's claims")[1].split("\n## ")[0]
    rows = [line for line in claims.splitlines() if line.startswith("| All-CNN-C vs Model C")]
    assert len(rows) == 1 and "9.08 − 9.74 = -0.66" in rows[0] and "| 2 |" in rows[0]
    assert __import__("re").search(VERDICT + r" \|$", rows[0])
    assert "## Ablations" not in md and "## Transfer" not in md  # nothing there for them


def test_ablations_sweep_gives_each_observation_a_verdict(tmp_path):
    assert multirun(["+sweep=ablations", "model=model_a", "seed=0", *TINY], tmp_path, tiny=False) == 0
    sweep = tmp_path / "ablations"
    jobs = {metrics(j)["overrides"][-1]: j for j in job_dirs(sweep)}
    assert sorted(jobs) == sorted(f"sweep.variant={v}" for v in ("baseline", "fc_head", "batch_norm", "xavier_uniform",
                                                                  "caffe_msra", "no_dropout"))
    layers = json.loads((jobs["sweep.variant=no_dropout"] / "run.json").read_text())["identity"]["model.layers"]
    assert [d["dropout"] for d in layers if "dropout" in d] == [0.0, 0.0, 0.0]  # model_a's, by `*`
    section = (sweep / "results.md").read_text().split("## Ablations")[1].split("\n## ")[0]
    rows = [line for line in section.splitlines() if line.startswith('| "')]
    assert len(rows) == 4 and all(r.endswith("| 1 | inconclusive at 1 seed |") for r in rows)
    assert '"Xavier-uniform init beats Kaiming" | xavier_uniform − caffe_msra (Model A, fake)' in section


def test_finetune_replaces_the_class_layer_across_heads(tmp_path):
    from allconv_sweep.model.nets import build_network
    from allconv_sweep.training.train import _finetune

    def classifier(head, classes):
        from allconv_sweep.config import compose
        from allconv_sweep.model.module import ImageClassifier

        layers = compose(["model=model_a"]).model.layers
        return ImageClassifier(build_network(layers, head=head, name="model_a"), classes)

    for src_head, dst_head in (("conv", "fc"), ("fc", "conv")):
        src = classifier(src_head, 10)
        torch.save({"state_dict": src.state_dict()}, tmp_path / "src.ckpt")
        dst = classifier(dst_head, 3)
        _finetune(dst, str(tmp_path / "src.ckpt"))
        assert torch.equal(dst.net.conv1.weight, src.net.conv1.weight)


def test_transfer_from_a_run_folder_runs_every_subset_head_and_init(tmp_path):
    source, tiny = tmp_path / "source", [o for o in TINY if not o.startswith("data.val_size")]  # the sweep's own: 10
    assert multirun(["model=model_a", f"hydra.run.dir={source}", *TINY], tmp_path, tiny=False) == 0
    subsets = ["sweep.subsets.vehicles=[0,1,2]", "sweep.subsets.household=[3,4,5]"]
    assert multirun(["+sweep=transfer", f"sweep.from={source}", *subsets, "seed=0", *tiny], tmp_path, tiny=False) == 0
    records = [metrics(j) for j in job_dirs(tmp_path / "transfer")]
    assert len(records) == 8 and {m["status"] for m in records} == {"ok"} and {m["model"] for m in records} == {"model_a"}
    assert {m["lr"] for m in records} == {0.01} and sum(any(o.startswith("finetune_from=") for o in m["overrides"])
                                                        for m in records) == 4
    section = (tmp_path / "transfer" / "results.md").read_text().split("## Transfer")[1].split("\n## ")[0]
    rows = [line.split(" | ")[:3] for line in section.splitlines() if line.startswith("| household") or line.startswith("| vehicles")]
    assert sorted(rows) == sorted([f"| {s}", h, i] for s in ("household", "vehicles") for h in ("conv", "fc")
                                  for i in ("pretrained", "scratch"))


def test_transfer_from_a_sweep_folder_starts_from_its_all_cnn_c_run(two_networks, tmp_path, capsys):
    assert multirun(["+sweep=transfer", f"sweep.from={two_networks}", "sweep.dry_run=true", *TINY], tmp_path,
                    tiny=False) == 0
    out = capsys.readouterr().out
    assert "16 to run" in out and out.count("-pretrained+") == 8  # sweep.variant:<subset>-pretrained names 8 folders and "model=model_c" not in out
    assert multirun(["+sweep=transfer", f"sweep.from={tmp_path}", "sweep.dry_run=true"], tmp_path, tiny=False) == 2
