"""benchmarks/throughput.py runs end to end in --quick mode and writes a complete JSON record.

Speeds are never asserted: only that every row was measured and that the FLOP count is right.
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def load_script(name: str):
    """A benchmarks/ script imported as a module (benchmarks/ is not a package)."""
    spec = importlib.util.spec_from_file_location(f"{name}_bench", ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bench():
    return load_script("throughput")


def positive(v) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v) and v > 0


def test_quick_run_writes_every_row(bench, tmp_path):
    out = tmp_path / "bench.json"
    result = bench.main(["--quick", "--device", "cpu", "--out", str(out)])
    saved = json.loads(out.read_text())
    assert saved["rows"] == json.loads(json.dumps(result["rows"]))
    assert saved["gpu_measured"] is False and saved["device"] == "cpu"

    paths = {"plain loop", "framework, DataLoader", "framework, device-resident"}
    rows = {(r["model"], r["path"]): r for r in saved["rows"]}
    assert set(rows) == {(m, p) for m in ("all_cnn_c", "probe") for p in paths}  # the network + the overhead probe
    for r in saved["rows"]:
        assert (r["batch"], r["precision"]) == (8, "32-true")
        assert positive(r["images_per_s"]) and positive(r["achieved_flops"]) and positive(r["peak_mem_mib"])
        assert positive(r["fraction_of_matmul_peak"]) and positive(r["vs_plain"])
        assert r["ms_per_step"] == pytest.approx(1000 * 8 / r["images_per_s"])
    for m in ("all_cnn_c", "probe"):
        assert rows[m, "plain loop"]["vs_plain"] == 1.0 and rows[m, "plain loop"]["overhead_ms_per_step"] == 0.0
    assert rows["probe", "plain loop"]["train_flops_per_image"] < rows["all_cnn_c", "plain loop"]["train_flops_per_image"] / 1000
    assert positive(saved["matmul_ceiling_flops"]["32-true"])

    assert len(saved["data_path"]) == 3
    for r in saved["data_path"]:
        assert positive(r["images_per_s"]) and positive(r["vs_fastest_training"])
        assert r["images"] == 256


def analytic_train_flops(net: torch.nn.Module) -> float:
    """Per image: forward convs 2*k*k*cin*cout*H_out*W_out each; backward twice that (input and weight
    gradients), except the first conv, whose input (the image) needs no gradient."""
    sizes = []

    def hook(m, inp, out):
        sizes.append((m, out.shape[-2] * out.shape[-1]))

    handles = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    with torch.no_grad():
        net.eval()(torch.zeros(1, 3, 32, 32))
    for h in handles:
        h.remove()
    fwd = [2 * m.kernel_size[0] * m.kernel_size[1] * m.in_channels * m.out_channels * hw for m, hw in sizes]
    return 3 * sum(fwd) - fwd[0]


@pytest.mark.parametrize("model", ["all_cnn_c", "model_c"])
def test_flop_count_matches_the_convolutions(bench, tmp_path, model):
    from hydra.utils import instantiate

    from allconv_sweep.config import to_container

    cfg = to_container(bench.composed([f"model={model}", "data=fake"], str(tmp_path)))
    counted = bench.train_flops_per_image(cfg)
    assert counted == pytest.approx(analytic_train_flops(instantiate(cfg["model"])), rel=1e-6)
    if model == "all_cnn_c":  # the figure: 1.62 GFLOP per training image
        assert counted == pytest.approx(1.62e9, rel=0.01)


def test_clock_excludes_warmup(bench):
    clock = bench.Clock(torch.device("cpu"), warmup=2, steps=3)
    for _ in range(2):
        clock.step_end(10)
    with pytest.raises(RuntimeError, match="of 5 steps"):
        clock.images_per_s
    for _ in range(3):
        clock.step_end(10)
    assert clock.images == 30 and positive(clock.images_per_s)


def test_rejects_a_run_without_warmup(bench):
    with pytest.raises(SystemExit):
        bench.parse_args(["--warmup", "0"])


# -- benchmarks/agreement.py: the accuracy effect of the speed switches ---------------------------------
@pytest.fixture(scope="module")
def agreement():
    return load_script("agreement")


def test_within_noise_verdict(agreement):
    """The verdict: |mean - ref mean| <= 2 sd_ref sqrt(1/n + 1/n_ref), per metric; paired by seed."""
    def run(variant, seed, test, train=0.3):
        return {"variant": variant, "seed": seed, "status": "ok", "test_acc": test, "val_acc": test,
                "train_acc": train, "val_loss": 1.0, "images_per_s": 10.0}
    runs = [run("fp32", s, a, t) for s, (a, t) in enumerate([(0.50, 0.30), (0.52, 0.31), (0.54, 0.32)])]
    runs += [run("contiguous", 0, 0.53, 0.40), run("bf16", 0, 0.60, 0.31),
             {**run("fp16", 0, None, None), "status": "diverged"}]
    s = {r["variant"]: r for r in agreement.summarize(runs)}
    assert s["fp32"]["test_acc"] is None and s["fp32"]["test_acc_mean"] == pytest.approx(0.52)
    test_bound = 2 * 0.02 * math.sqrt(1 + 1 / 3)  # sd 0.02 over the reference's three seeds: 0.046
    c = s["contiguous"]["test_acc"]
    assert c["bound"] == pytest.approx(test_bound) and c["diff"] == pytest.approx(0.01) and c["within_noise"] is True
    assert c["paired"] == pytest.approx([0.03])
    assert s["contiguous"]["train_acc"]["diff"] == pytest.approx(0.09)  # train: sd 0.01, bound 0.023
    assert s["contiguous"]["train_acc"]["within_noise"] is False
    assert s["bf16"]["test_acc"]["diff"] == pytest.approx(0.08) and s["bf16"]["test_acc"]["within_noise"] is False
    assert s["bf16"]["train_acc"]["within_noise"] is True
    assert (s["fp16"]["ok"], s["fp16"]["runs"], s["fp16"]["test_acc"]["within_noise"]) == (0, 1, None)  # no verdict


# /proc/cpuinfo of the two CPU kinds (as in test_precision.py): bf16 emulated, bf16 native
EPYC = "model name\t: AMD EPYC 7B13\nflags\t\t: fpu sse2 avx avx2 fma\n"
AMX = "model name\t: Intel(R) Xeon(R) Processor\nflags\t\t: avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n"


@pytest.mark.parametrize("cpuinfo, bf16_seeds", [(EPYC, {0}), (AMX, {0, 1})], ids=["bf16-emulated", "bf16-native"])
def test_agreement_quick_run(agreement, tmp_path, monkeypatch, cpuinfo, bf16_seeds):
    """--quick trains every variant x seed through train(cfg) and evaluates the reference's network under
    each switch: the layout changes nothing, bf16 autocast really runs (logits move, a little). bf16 trains
    every seed where the CPU does bf16 natively, one (--slow-seeds) where it is emulated."""
    from allconv_sweep.training.precision import read_cpu

    monkeypatch.setattr(agreement, "read_cpu", lambda: read_cpu(cpuinfo))
    result = agreement.main(["--quick", "--out-dir", str(tmp_path)])
    saved = json.loads((tmp_path / "agreement.json").read_text())
    assert saved["variants"] == ["fp32", "contiguous", "bf16"]
    assert saved["hardware"].startswith(read_cpu(cpuinfo).model)
    got = {(r["variant"], r["seed"]): r for r in saved["train_runs"]}
    assert set(got) == {("fp32", 0), ("fp32", 1), ("contiguous", 0), ("contiguous", 1)} | {("bf16", s) for s in bf16_seeds}
    assert all(r["status"] == "ok" and 0 <= r["test_acc"] <= 1 and math.isfinite(r["val_loss"]) for r in got.values())
    assert got["bf16", 0]["precision"] == "bf16-mixed" and got["fp32", 0]["precision"] == "32-true"
    assert [r["variant"] for r in saved["train_summary"]] == ["fp32", "contiguous", "bf16"]

    ev = {(r["split"], r["variant"]): r for r in result["eval"]["rows"]}
    assert set(ev) == {(s, v) for s in ("val", "test") for v in ("fp32", "contiguous", "bf16")}
    for split in ("val", "test"):
        assert ev[split, "fp32"]["max_abs_logit_diff"] == 0 and ev[split, "fp32"]["same_prediction"] == 1
        assert ev[split, "contiguous"]["max_abs_logit_diff"] < 1e-5
        bf16 = ev[split, "bf16"]
        assert 0 < bf16["max_abs_logit_diff"] < 0.05 * max(1.0, bf16["logit_scale"])
    # a re-run reuses the finished runs: nothing is trained again
    again = agreement.main(["--quick", "--out-dir", str(tmp_path), "--checks", "train"])
    assert [r["test_acc"] for r in again["train_runs"]] == [r["test_acc"] for r in saved["train_runs"]]


# -- benchmarks/drift.py: how far a switch moves a trajectory, against rounding alone -------------------

def test_drift_is_zero_for_an_identical_copy_and_grows_from_a_perturbed_one(capsys):
    drift = load_script("drift")
    overrides = ["model.batch_norm=true", "model.final_relu=false"]
    same = drift.drift("model_a", overrides, ["perturbed"], steps=3, batch=8, eps=0.0)
    assert [step for step, _ in same] == [1, 3] and all(d == [0.0] for _, d in same)  # same weights, same batches
    moved = drift.drift("model_a", overrides, ["perturbed"], steps=3, batch=8, eps=1e-3)
    assert all(d[0] > 0 for _, d in moved)
    assert drift.main(["--model", "model_a", "--steps", "1", "--batch", "4", "--switch", "perturbed"]) == 0
    assert "perturbed (eps 1e-06)" in capsys.readouterr().out
