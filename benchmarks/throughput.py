#!/usr/bin/env python
"""Training throughput: the framework against a plain PyTorch loop, on this machine's device.

    make bench                                   # the full table (about 5 minutes on a 2-core CPU)
    make bench ARGS="--quick"                    # a smoke test of this script (seconds)
    python benchmarks/throughput.py --models all_cnn_c --batch-sizes 128 --steps 20 --repeats 3

Training rows, for each network x batch size x precision (images/s over ``--steps`` steps after
``--warmup`` steps that are not timed; on a GPU the clock is read after a synchronize):

  plain              a hand-written loop: the same network (same layout), the same data already on the
                     device, the same SGD, the same batched flip + translate; nothing else
  framework/loader   ``train(cfg)`` exactly as ``python -m allconv_sweep`` runs it (Lightning Trainer,
                     callbacks, CSV logger), data through a DataLoader (``data.on_device=false``)
  framework/device   the same with the data resident on the device (``data.on_device=true``)

A last group of rows runs the same three paths with ``probe``, a network with next to no arithmetic
(one 1x1 conv to the classes), at batch 8: its ms/step is what a step costs around the model, and its
framework - plain difference is the framework's own overhead per step, which the big networks' rows
cannot resolve on a CPU (a step there takes seconds).

``vs plain`` is images/s over the plain loop's. FLOP/s counts the executed convolutions and matmuls of a
training step (forward + backward, ``torch.utils.flop_counter``); ``of peak`` divides it by a large
matmul measured in the same run, in the row's precision (TF32 for fp32 on a GPU, as cuDNN's convs use), or
the fp32 one where that is faster (a CPU without bf16 arithmetic, where the bf16 matmul is emulated).
Peak memory: ``torch.cuda.max_memory_allocated`` on a GPU; on a CPU the process's peak resident set
(VmHWM, reset before each row), which includes Python and the libraries.

Data rows: images/s of batching + augmentation alone, with no model: batched on the device (the
framework's device path), the framework's DataLoader path, and torchvision's per-sample transforms in a
DataLoader. Their ``vs plain`` is how many times the fastest training row's images/s they deliver.

Prints one table and writes it as JSON to ``benchmarks/results/<device>.json`` (``--out`` to change).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import re
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "src") not in sys.path:  # runnable from a checkout without the editable install
    sys.path.insert(0, str(ROOT / "src"))

from hydra.utils import instantiate  # noqa: E402

from allconv_sweep.config import compose, to_container  # noqa: E402
from allconv_sweep.console import console  # noqa: E402
from allconv_sweep.data.augment import flip_translate  # noqa: E402
from allconv_sweep.data.loader import TensorBatches  # noqa: E402
from allconv_sweep.runs import versions  # noqa: E402
from allconv_sweep.training import callbacks as callbacks_mod  # noqa: E402
from allconv_sweep.training import train as train_mod  # noqa: E402
from allconv_sweep.training.callbacks import Throughput  # noqa: E402
from allconv_sweep.training.precision import REPORTED_FLAGS, read_cpu  # noqa: E402

PRECISIONS = {"32-true": "fp32", "bf16-mixed": "bf16"}
MAX_SHIFT = 5
# The overhead probe: a network with almost no arithmetic (one 1x1 conv to the classes, then the global
# average), so that its step time is the per-step cost of everything around the model.
PROBE = "probe"
PROBE_LAYERS = "model.layers=[{conv:{out:${data.num_classes},k:1}},{global_avg:{}}]"
PATH_NAMES = {"plain": "plain loop", "loader": "framework, DataLoader", "device": "framework, device-resident"}


# -- the device ------------------------------------------------------------------------------------
def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def device_name(device: torch.device) -> str:
    """The GPU's name, or the CPU's model with its bf16/AVX-512/AMX flags (what decides bf16's speed)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{read_cpu().describe()}, {torch.get_num_threads()} threads"


def device_slug(device: torch.device) -> str:
    if device.type == "cpu":
        return "cpu"
    return re.sub(r"[^a-z0-9]+", "-", torch.cuda.get_device_name(device).lower()).strip("-")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class PeakMemory:
    """Peak memory of one row: CUDA allocator peak, or the process's peak RSS on a CPU."""

    def __init__(self, device: torch.device):
        self.device = device
        self.kind = "cuda max_memory_allocated" if device.type == "cuda" else "process peak RSS (VmHWM)"

    def reset(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            return
        with contextlib.suppress(OSError):
            Path("/proc/self/clear_refs").write_text("5")  # Linux: reset VmHWM to the current RSS

    def read_mib(self) -> float | None:
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device) / 2**20
        try:
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        except OSError:
            pass
        import resource  # not resettable: the peak since the process started
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- what the hardware can do ----------------------------------------------------------------------
def matmul_ceiling(device: torch.device, dtype: torch.dtype, n: int, reps: int) -> float:
    """FLOP/s of the best of ``reps`` n x n x n matmuls (fp32 on CUDA as TF32, like cuDNN's convs)."""
    old = torch.get_float32_matmul_precision()
    if device.type == "cuda" and dtype == torch.float32 and torch.backends.cudnn.allow_tf32:
        torch.set_float32_matmul_precision("high")
    try:
        g = torch.Generator(device=device).manual_seed(0)
        a = torch.randn(n, n, device=device, dtype=dtype, generator=g)
        b = torch.randn(n, n, device=device, dtype=dtype, generator=g)
        for _ in range(2):
            a @ b
        best = math.inf
        for _ in range(reps):
            sync(device)
            t = time.perf_counter()
            a @ b
            sync(device)
            best = min(best, time.perf_counter() - t)
    finally:
        torch.set_float32_matmul_precision(old)
    return 2 * n ** 3 / best


def train_flops_per_image(cfg: dict) -> float:
    """FLOPs of one training step (forward + backward) per image, counted on a batch of 2 on the CPU."""
    from torch.utils.flop_counter import FlopCounterMode

    net = instantiate(cfg["model"]).train()
    x = torch.randn(2, 3, 32, 32)
    y = torch.zeros(2, dtype=torch.long)
    with FlopCounterMode(display=False) as counter:
        F.cross_entropy(net(x), y).backward()
    return counter.get_total_flops() / 2


# -- configs ---------------------------------------------------------------------------------------
def overrides(model: str, batch: int, n_train: int, precision: str, args, on_device: bool | None = None) -> list[str]:
    o = [f"model={'all_cnn_c' if model == PROBE else model}", "data=fake", "preprocess=standardize", "augment=flip_translate",
         f"augment.max_shift={MAX_SHIFT}",
         f"data.train_size={n_train}", "data.val_size=0", "data.test_size=16", "data.eval_batch_size=16",
         f"data.batch_size={batch}", "trainer.max_epochs=1", f"trainer.precision={precision}",
         f"trainer.enable_progress_bar={str(args.progress_bar).lower()}",
         f"trainer.accelerator={'gpu' if args.device.type == 'cuda' else 'cpu'}",
         f"model.channels_last={str(args.channels_last).lower()}", f"model.compile={str(args.compile).lower()}",
         "print_config=false", "resume=false", f"seed={args.seed}"]
    if model == PROBE:
        o += [PROBE_LAYERS, "model.final_relu=false"]
    if on_device is not None:
        o.append(f"data.on_device={str(on_device).lower()}")
    return o


def composed(ov: list[str], out_dir: str) -> Any:
    return compose(ov + [f"paths.output_dir={out_dir}", f"paths.cache_dir={out_dir}/cache"])


# -- the timing clock ------------------------------------------------------------------------------
class Clock:
    """Times steps ``warmup+1 .. warmup+steps``: starts after step ``warmup`` ends, stops after the last."""

    def __init__(self, device: torch.device, warmup: int, steps: int):
        self.device, self.warmup, self.steps = device, warmup, steps
        self.done_steps, self.images = 0, 0
        self.t0: float | None = None
        self.t1: float | None = None

    def step_end(self, batch_images: int) -> None:
        self.done_steps += 1
        if self.done_steps > self.warmup:
            self.images += batch_images
        if self.done_steps == self.warmup:
            sync(self.device)
            self.t0 = time.perf_counter()
        elif self.done_steps == self.warmup + self.steps:
            sync(self.device)
            self.t1 = time.perf_counter()

    @property
    def images_per_s(self) -> float:
        if self.t0 is None or self.t1 is None:
            raise RuntimeError(f"only {self.done_steps} of {self.warmup + self.steps} steps ran")
        return self.images / (self.t1 - self.t0)


class ClockedThroughput(Throughput):
    """The framework's own Throughput callback, also feeding a Clock (replaces it inside train())."""

    def __init__(self, clock: Clock):
        super().__init__()
        self.clock = clock

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        self.clock.step_end(len(batch[1]))


# -- the rows --------------------------------------------------------------------------------------
def run_plain(model: str, batch: int, precision: str, args, warmup: int, steps: int) -> dict:
    """The reference: the loop anyone would write by hand, on the same data the framework gets."""
    from allconv_sweep.training.components import datamodule_from

    dev = args.device
    n_train = batch * (warmup + steps)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = to_container(composed(overrides(model, batch, n_train, precision, args), tmp))
    dm = datamodule_from(cfg)
    dm.setup()
    x, y = (t.to(dev) for t in dm.splits["train"])
    torch.manual_seed(args.seed)
    net = instantiate({**cfg["model"], "channels_last": False, "compile": False}).to(dev)
    if args.channels_last:
        net = net.to(memory_format=torch.channels_last)
    fwd = torch.compile(net) if args.compile else net
    o = cfg["optimizer"]  # the same SGD, written out as anyone would
    opt = torch.optim.SGD(net.parameters(), lr=o["lr"], momentum=o["momentum"], weight_decay=o["weight_decay"],
                          nesterov=bool(o["nesterov"]))
    autocast = (torch.autocast(dev.type, dtype=torch.bfloat16) if precision == "bf16-mixed"
                else contextlib.nullcontext())
    clock = Clock(dev, warmup, steps)
    mem = PeakMemory(dev)
    mem.reset()
    net.train()
    for xb, yb in TensorBatches(x, y, batch, shuffle=True, seed=args.seed):
        xb = flip_translate(xb, MAX_SHIFT, True)
        if args.channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        with autocast:
            loss = F.cross_entropy(fwd(xb).float(), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        clock.step_end(len(yb))
    return {"images_per_s": clock.images_per_s, "peak_mem_mib": mem.read_mib()}


@contextlib.contextmanager
def quiet_framework():
    """No summary tables or Lightning info lines between the benchmark's own output."""
    loggers = [logging.getLogger(n) for n in ("lightning.pytorch", "lightning.fabric", "allconv_sweep")]
    levels = [lg.level for lg in loggers]
    quiet = console.quiet
    console.quiet = True
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        console.quiet = quiet
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def run_framework(model: str, batch: int, precision: str, on_device: bool, args, warmup: int, steps: int) -> dict:
    """``train(cfg)`` as the CLI runs it; only its Throughput callback (callbacks.throughput's _target_,
    allconv_sweep.training.callbacks.Throughput) is swapped for a clocked one."""
    n_train = batch * (warmup + steps)
    clock = Clock(args.device, warmup, steps)
    mem = PeakMemory(args.device)
    original = callbacks_mod.Throughput
    with tempfile.TemporaryDirectory() as tmp, quiet_framework():
        cfg = composed(overrides(model, batch, n_train, precision, args, on_device), tmp)
        if cfg.callbacks.throughput._target_ != "allconv_sweep.training.callbacks.Throughput":
            raise RuntimeError("callbacks.throughput no longer names allconv_sweep.training.callbacks.Throughput: update "
                               "benchmarks/throughput.py:run_framework to time the training steps")
        callbacks_mod.Throughput = lambda: ClockedThroughput(clock)  # what instantiate() looks up
        try:
            mem.reset()
            metrics = train_mod.train(cfg)
        finally:
            callbacks_mod.Throughput = original
    if metrics["status"] == "failed":
        raise RuntimeError(f"framework run failed: {metrics['reason']}")
    return {"images_per_s": clock.images_per_s, "peak_mem_mib": mem.read_mib()}


def data_rates(args, n: int, batch: int) -> list[dict]:
    """Images/s of batching + flip/translate alone: no model, one shuffled epoch of ``n`` images."""
    from torch.utils.data import DataLoader, Dataset, TensorDataset
    from torchvision.transforms import v2

    dev = args.device
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, 32, 32, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)

    def timed(batches: Callable[[], Any], transform: Callable | None) -> float:
        it = iter(batches())
        xb, _ = next(it)                                 # warm-up batch (worker start-up, first kernels)
        seen = 0
        sync(dev)
        t = time.perf_counter()
        for xb, yb in it:
            xb = xb.to(dev, non_blocking=True)
            yb = yb.to(dev, non_blocking=True)
            if transform is not None:
                xb = transform(xb)
            seen += len(yb)
        sync(dev)
        return seen / (time.perf_counter() - t)

    class PerSample(Dataset):
        """torchvision's per-image CIFAR+ transforms: pad 5 + random 32x32 crop, random flip."""

        def __init__(self):
            self.t = v2.Compose([v2.RandomCrop(32, padding=MAX_SHIFT, fill=0), v2.RandomHorizontalFlip(0.5)])

        def __len__(self):
            return n

        def __getitem__(self, i):
            return self.t(x[i]), y[i]

    pin = dev.type == "cuda"
    xd, yd = x.to(dev), y.to(dev)
    batched = lambda b: flip_translate(b, MAX_SHIFT, True)  # noqa: E731
    rows = [
        ("device-resident, batched flip_translate (framework data.on_device=true)",
         lambda: TensorBatches(xd, yd, batch, shuffle=True, seed=0), batched),
        ("DataLoader(TensorDataset), batched flip_translate (framework data.on_device=false)",
         lambda: DataLoader(TensorDataset(x, y), batch_size=batch, shuffle=True, pin_memory=pin), batched),
        (f"torchvision v2 per-sample RandomCrop+Flip, DataLoader(num_workers={args.workers})",
         lambda: DataLoader(PerSample(), batch_size=batch, shuffle=True, num_workers=args.workers, pin_memory=pin,
                            persistent_workers=False), None),
    ]
    return [{"path": name, "batch": batch, "images": n, "images_per_s": timed(make, tf)} for name, make, tf in rows]


# -- the run ---------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny settings: checks the script runs (numbers meaningless)")
    p.add_argument("--device", default="auto", help="auto (cuda when present) | cpu | cuda | cuda:N")
    p.add_argument("--models", nargs="+", default=None, help="default: all_cnn_c model_c")
    p.add_argument("--batch-sizes", nargs="+", type=int, default=None, help="default: 128 256")
    p.add_argument("--precisions", nargs="+", choices=sorted(PRECISIONS), default=None,
                   help="default: 32-true, plus bf16-mixed where bf16 is native (a GPU; a CPU with AMX or AVX512-BF16)")
    p.add_argument("--paths", nargs="+", choices=["plain", "loader", "device"], default=["plain", "loader", "device"])
    p.add_argument("--warmup", type=int, default=None, help="untimed steps per row (default: 1 on CPU, 20 on GPU)")
    p.add_argument("--steps", type=int, default=None, help="timed steps per row (default: 4 on CPU, 100 on GPU)")
    p.add_argument("--repeats", type=int, default=1, help="run every row this many times, interleaved; report the median")
    p.add_argument("--data-images", type=int, default=None, help="images per data-path row (default: 8192 CPU, 45000 GPU)")
    p.add_argument("--workers", type=int, default=0, help="DataLoader workers of the torchvision data row")
    p.add_argument("--matmul-n", type=int, default=None, help="size of the ceiling matmul (default 2048 CPU, 8192 GPU)")
    p.add_argument("--no-channels-last", dest="channels_last", action="store_false")
    p.add_argument("--compile", action="store_true", help="torch.compile the network in every row (slow start)")
    p.add_argument("--progress-bar", action="store_true", help="framework rows with the progress bar on (as the CLI)")
    p.add_argument("--no-data", dest="data", action="store_false", help="skip the data-path rows")
    p.add_argument("--probe-steps", type=int, default=None,
                   help="timed steps of the overhead probe (a 1x1-conv network); 0 skips it (default 200 CPU, 500 GPU)")
    p.add_argument("--probe-batch", type=int, default=8)
    p.add_argument("--cudnn-benchmark", action="store_true",
                   help="torch.backends.cudnn.benchmark=True for every row (the framework: +trainer.benchmark=true)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: torch's choice, one per core); 1 is steadier on a shared machine")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help="JSON path (default benchmarks/results/<device>.json)")
    args = p.parse_args(argv)
    args.device = pick_device(args.device)
    gpu = args.device.type == "cuda"
    if args.quick:
        d = dict(models=["all_cnn_c"], batch_sizes=[8], precisions=["32-true"], warmup=1, steps=1,
                 data_images=256, matmul_n=256, probe_steps=3)
    else:
        d = dict(models=["all_cnn_c", "model_c"], batch_sizes=[128, 256],
                 # bf16 where it is native (a GPU; a CPU with AMX-BF16/AVX512-BF16), not where it is emulated
                 precisions=["32-true", "bf16-mixed"] if gpu or read_cpu().native_bf16 else ["32-true"],
                 warmup=20 if gpu else 1, steps=100 if gpu else 4, data_images=45000 if gpu else 8192,
                 matmul_n=8192 if gpu else 2048, probe_steps=500 if gpu else 200)
    for k, v in d.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    if args.warmup < 1 or args.steps < 1 or args.repeats < 1:
        p.error("--warmup, --steps and --repeats must be >= 1 (the clock starts at the end of a warm-up step)")
    if args.out is None:
        args.out = ROOT / "benchmarks" / "results" / f"{device_slug(args.device)}{'-quick' if args.quick else ''}.json"
    return args


def fmt_flops(v: float | None) -> str:
    if v is None:
        return "-"
    for unit, scale in (("T", 1e12), ("G", 1e9)):
        if v >= scale:
            return f"{v / scale:.2f} {unit}"
    return f"{v / 1e6:.1f} M"


def measure(model: str, batch: int, prec: str, args, warmup: int, steps: int, flops: float,
            ceiling: float | None) -> list[dict]:
    """One row per path; the paths interleaved ``--repeats`` times, so a busy machine slows each alike."""
    samples: dict[str, list[dict]] = {p: [] for p in args.paths}
    for _ in range(args.repeats):
        for path in args.paths:
            if path == "plain":
                r = run_plain(model, batch, prec, args, warmup, steps)
            else:
                r = run_framework(model, batch, prec, path == "device", args, warmup, steps)
            samples[path].append(r)
            console.print(f"  {model} b{batch} {PRECISIONS[prec]} {path}: {r['images_per_s']:.1f} img/s", style="dim")
    plain = statistics.median(s["images_per_s"] for s in samples["plain"]) if samples.get("plain") else None
    rows = []
    for path, runs in samples.items():
        ips = [s["images_per_s"] for s in runs]
        med = statistics.median(ips)
        rows.append({
            "model": model, "batch": batch, "precision": prec, "path": PATH_NAMES[path],
            "warmup_steps": warmup, "timed_steps": steps,
            "images_per_s": med, "images_per_s_runs": ips, "ms_per_step": 1000 * batch / med,
            "vs_plain": None if plain is None else med / plain,
            "overhead_ms_per_step": None if plain is None else 1000 * batch * (1 / med - 1 / plain),
            "train_flops_per_image": flops, "achieved_flops": med * flops,
            "fraction_of_matmul_peak": med * flops / ceiling if ceiling else None,
            "peak_mem_mib": max((s["peak_mem_mib"] or 0) for s in runs) or None,
        })
    return rows


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    dev = args.device
    started = time.perf_counter()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.cudnn_benchmark:  # Lightning's Trainer(benchmark=None) keeps the session's value: every path gets it
        torch.backends.cudnn.benchmark = True
    warnings.filterwarnings("ignore", message=".*Total length of .* across ranks is zero.*")  # no val split
    console.print(f"[bold]throughput[/bold] on {dev} ({device_name(dev)}), torch {torch.__version__}; "
                  f"{args.warmup} warm-up + {args.steps} timed steps per row, {args.repeats} repeat(s)")

    ceilings = {}
    for prec in dict.fromkeys(["32-true", *args.precisions]):  # fp32 always: the fallback ceiling below
        dtype = torch.bfloat16 if prec == "bf16-mixed" else torch.float32
        ceilings[prec] = matmul_ceiling(dev, dtype, args.matmul_n, reps=3 if dev.type == "cpu" else 10)
    # What the device can do for a row is its fastest matmul: on a CPU without bf16 arithmetic (no
    # AVX512-BF16/AMX) the bf16 matmul is emulated and far slower than fp32, so it is no ceiling there.
    row_ceiling = {p: max(ceilings[p], ceilings["32-true"]) for p in ceilings}
    models = args.models + ([PROBE] if args.probe_steps else [])
    with tempfile.TemporaryDirectory() as tmp:
        flops = {m: train_flops_per_image(to_container(composed(overrides(m, 8, 8, "32-true", args), tmp)))
                 for m in models}

    rows = []
    for model in args.models:
        for batch in args.batch_sizes:
            for prec in args.precisions:
                rows += measure(model, batch, prec, args, args.warmup, args.steps, flops[model], row_ceiling[prec])
    if args.probe_steps:  # fixed costs per step: a tiny batch through a network with next to no arithmetic
        threads = torch.get_num_threads()
        if dev.type == "cpu":  # host-side Python is what it measures; 1 thread: no OpenMP waits on a busy machine
            torch.set_num_threads(1)
        try:
            rows += measure(PROBE, args.probe_batch, "32-true", args, max(args.warmup, 5), args.probe_steps,
                            flops[PROBE], ceilings.get("32-true"))
        finally:
            torch.set_num_threads(threads)

    data = []
    if args.data:
        fastest = max((r["images_per_s"] for r in rows if r["model"] != PROBE), default=None)
        for r in data_rates(args, args.data_images, 128):
            r["vs_fastest_training"] = None if not fastest else r["images_per_s"] / fastest
            data.append(r)

    cpu = read_cpu()
    result = {
        "device": str(dev), "device_name": device_name(dev), "gpu_measured": dev.type == "cuda",
        "cpu": {"model": cpu.model, "kind": cpu.kind, "flags": sorted(f for f in REPORTED_FLAGS if f in cpu.flags)},
        "versions": versions(),
        "command": " ".join(["benchmarks/throughput.py", *(argv if argv is not None else sys.argv[1:])]),
        "settings": {k: (str(v) if isinstance(v, (Path, torch.device)) else v) for k, v in vars(args).items()},
        "matmul_ceiling_flops": ceilings, "peak_memory": PeakMemory(dev).kind,
        "rows": rows, "data_path": data, "wall_s": time.perf_counter() - started,
    }
    print_table(result, args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    console.print(f"written: {args.out}  ({result['wall_s']:.0f} s)")
    return result


SHORT_PATHS = {"plain loop": "plain", "framework, DataLoader": "fw loader", "framework, device-resident": "fw device"}


def print_table(result: dict, args) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"Training throughput: {result['device_name']} ({result['device']})", box=box.SIMPLE_HEAD,
              pad_edge=False)
    for col in ("network", "batch", "prec", "path", "img/s", "ms/step", "vs plain", "FLOP/s", "of peak", "peak mem"):
        t.add_column(col, justify="left" if col in ("network", "prec", "path") else "right")
    for r in result["rows"]:
        t.add_row(r["model"], str(r["batch"]), PRECISIONS[r["precision"]], SHORT_PATHS[r["path"]],
                  f"{r['images_per_s']:.1f}", f"{r['ms_per_step']:.1f}",
                  "-" if r["vs_plain"] is None else f"{r['vs_plain']:.3f}", fmt_flops(r["achieved_flops"]),
                  "-" if r["fraction_of_matmul_peak"] is None else f"{100 * r['fraction_of_matmul_peak']:.1f}%",
                  "-" if r["peak_mem_mib"] is None else f"{r['peak_mem_mib']:.0f} MiB")
    if result["data_path"]:
        t.add_section()
        for r, name in zip(result["data_path"], ("data: device batched", "data: loader batched", "data: tv per-sample")):
            t.add_row(name, str(r["batch"]), "fp32", "-", f"{r['images_per_s']:.0f}",
                      f"{1000 * r['batch'] / r['images_per_s']:.1f}",
                      "-" if r["vs_fastest_training"] is None else f"{r['vs_fastest_training']:.0f}x", "", "", "")
    wide = Console(highlight=False, width=max(console.width, 120))  # never squeeze the table into 80 columns
    wide.print(t)
    ceil = ", ".join(f"{PRECISIONS[p]} {fmt_flops(v)}FLOP/s" for p, v in result["matmul_ceiling_flops"].items())
    notes = [
        f"{args.warmup} warm-up + {args.steps} timed steps per row ({args.probe_steps} for the probe), median of "
        f"{args.repeats}; matmul ceiling ({args.matmul_n}^3): {ceil}.",
        "plain: hand-written loop; fw loader / fw device: train(cfg) with data.on_device=false / true.",
        f"probe: one 1x1 conv (next to no arithmetic), batch {args.probe_batch}"
        f"{', 1 CPU thread' if args.device.type == 'cpu' else ''}: its ms/step is the per-step cost around the model; "
        "fw - plain = the framework's overhead per step.",
        "FLOP/s: executed conv FLOPs (forward + backward) x img/s; of peak: / the fastest matmul ceiling usable "
        "by that precision" + ("" if all(v >= result["matmul_ceiling_flops"]["32-true"]
                                         for v in result["matmul_ceiling_flops"].values())
                               else " (bf16 below fp32 here: emulated, so bf16 rows are divided by the fp32 ceiling)") + ".",
        f"peak mem: {result['peak_memory']}.",
        "data rows: batching + flip/translate alone; 'vs plain' there = x the fastest training row's img/s. "
        "device batched = TensorBatches + flip_translate; loader batched = DataLoader(TensorDataset) + "
        f"flip_translate; tv per-sample = torchvision v2 RandomCrop(pad 5)+Flip per image, {args.workers} workers.",
    ]
    for line in notes:
        wide.print(line, style="dim")


if __name__ == "__main__":
    main()
