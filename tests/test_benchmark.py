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


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("throughput_bench", ROOT / "benchmarks" / "throughput.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
    from allconv_sweep.config import to_container
    from allconv_sweep.module import build_from_config

    cfg = to_container(bench.composed([f"model={model}", "data=fake"], str(tmp_path)))
    counted = bench.train_flops_per_image(cfg)
    assert counted == pytest.approx(analytic_train_flops(build_from_config(cfg)), rel=1e-6)
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
