"""trainer.precision=auto: bf16-mixed where bf16 is native (CUDA from Ampere on; a CPU with amx_bf16 or
avx512_bf16, which oneDNN uses), else 32-true: emulated bf16 is ~10x slower (AMD EPYC: 3.8 vs 36.9 img/s)."""

import platform
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")
REPORTED_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8", "avx512_fp16")


@dataclass
class CPU:
    model: str
    flags: frozenset[str]

    @property
    def native_bf16(self) -> Optional[str]:  # the flag that makes bf16 native on this CPU
        return next((f for f in BF16_CPU_FLAGS if f in self.flags), None)

    @property
    def kind(self) -> str:  # for tables: which of the speed-relevant instruction sets it has
        return ("AMX-BF16" if "amx_bf16" in self.flags else "AVX512-BF16" if "avx512_bf16" in self.flags
                else "AVX-512 (no bf16)" if "avx512f" in self.flags else "AVX2 (no AVX-512)")

    def describe(self) -> str:
        shown = [f for f in REPORTED_FLAGS if f in self.flags]
        return f"{self.model} ({self.kind}; flags: {', '.join(shown) or 'none of ' + ', '.join(REPORTED_FLAGS)})"


def read_cpu(cpuinfo: str | None = None) -> CPU:
    """The CPU's model name and flags from /proc/cpuinfo (or the given text)."""
    if cpuinfo is None:
        with suppress(OSError):
            cpuinfo = Path("/proc/cpuinfo").read_text()
    model, flags = platform.processor() or platform.machine(), frozenset()
    for line in (cpuinfo or "").splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and value.strip():
            model = value.strip()
        elif key.strip() in ("flags", "Features") and not flags:
            flags = frozenset(value.split())
    return CPU(model, flags)


@dataclass
class ResolvedPrecision:
    precision: str   # what to ask Lightning for
    reason: str      # one line: why


def resolve(requested: str, accelerator: str, cpu: Optional[CPU] = None,
            cuda_bf16: Optional[bool] = None) -> ResolvedPrecision:
    """trainer.precision as Lightning should get it. Anything but auto passes through unchanged."""
    if str(requested) != "auto":
        return ResolvedPrecision(str(requested), "as requested")
    import torch  # here: read_cpu's users (benchmarks, tests) need no torch
    if accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available()):
        supported = torch.cuda.is_bf16_supported() if cuda_bf16 is None else cuda_bf16
        name = torch.cuda.get_device_name() if cuda_bf16 is None and torch.cuda.is_available() else "the GPU"
        return (ResolvedPrecision("bf16-mixed", f"{name} runs bf16 natively") if supported else
                ResolvedPrecision("32-true", f"{name} has no native bf16 (before Ampere): fp32"))
    cpu = cpu or read_cpu()
    if cpu.native_bf16:
        return ResolvedPrecision("bf16-mixed", f"the CPU has {cpu.native_bf16} ({cpu.model}): bf16 is native")
    return ResolvedPrecision("32-true", f"the CPU has neither amx_bf16 nor avx512_bf16 ({cpu.model}): "
                                        "bf16 would be emulated, fp32")
