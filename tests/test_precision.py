"""trainer.precision=auto: bf16-mixed where the hardware runs bf16 natively, fp32 elsewhere; what ran is recorded."""

from __future__ import annotations

import pytest

from allconv_sweep.training import precision
from allconv_sweep.training.precision import read_cpu, resolve

# /proc/cpuinfo lines of the two CPU kinds this project's machines come in
AMX = ("model name\t: Intel(R) Xeon(R) Processor\nflags\t\t: fpu sse2 avx avx2 fma avx512f avx512dq avx512_bf16 "
       "avx512_vnni amx_bf16 avx512_fp16 amx_tile amx_int8\n")
EPYC = "model name\t: AMD EPYC 7B13\nflags\t\t: fpu sse2 avx avx2 fma bmi2 sha_ni\n"


def test_the_cpu_kinds_are_told_apart():
    amx, epyc = read_cpu(AMX), read_cpu(EPYC)
    assert (amx.model, amx.kind, amx.native_bf16) == ("Intel(R) Xeon(R) Processor", "AMX-BF16", "amx_bf16")
    assert (epyc.kind, epyc.native_bf16) == ("AVX2 (no AVX-512)", None)
    assert "amx_bf16" in amx.describe() and "avx512_bf16" in amx.describe() and "AMD EPYC 7B13" in epyc.describe()


def test_auto_is_bf16_on_a_cpu_with_native_bf16_and_fp32_elsewhere():
    assert resolve("auto", "cpu", cpu=read_cpu(AMX)).precision == "bf16-mixed"
    assert resolve("auto", "cpu", cpu=read_cpu(EPYC)).precision == "32-true"
    assert "emulated" in resolve("auto", "cpu", cpu=read_cpu(EPYC)).reason
    assert resolve("auto", "gpu", cuda_bf16=True).precision == "bf16-mixed"
    assert resolve("auto", "gpu", cuda_bf16=False).precision == "32-true"
    assert resolve("16-mixed", "cpu", cpu=read_cpu(EPYC)).precision == "16-mixed"  # anything else: as asked


@pytest.mark.parametrize("cpuinfo,expected", [(AMX, "bf16-mixed"), (EPYC, "32-true")], ids=["amx", "epyc"])
def test_a_smoke_run_with_auto_records_what_ran_and_why(cfg_factory, monkeypatch, capsys, cpuinfo, expected):
    from allconv_sweep.training.train import train

    monkeypatch.setattr(precision, "read_cpu", lambda text=None: read_cpu(cpuinfo))
    m = train(cfg_factory(["experiment=smoke", "trainer.precision=auto", "trainer.max_epochs=1", "data.train_size=96",
                           "data.val_size=32", "data.test_size=32", "data.batch_size=32"]))
    assert m["status"] == "ok" and m["precision"] == expected and m["precision_requested"] == "auto"
    assert m["precision_reason"] and m["cpu"].startswith(read_cpu(cpuinfo).model)
    assert f"trainer.precision=auto: {expected}" in capsys.readouterr().out


def test_auto_is_the_default_and_32_true_pins_fp32(cfg_factory):
    """The default precision is auto (bf16 agreed with fp32 within seed noise on the default recipe); the
    stability map stays fp32 on every machine, as its README table was measured."""
    from allconv_sweep.config import compose

    assert compose([]).trainer.precision == "auto"
    assert compose(["+sweep=stability"]).trainer.precision == "32-true"
