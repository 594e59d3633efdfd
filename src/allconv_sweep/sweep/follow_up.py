"""Sweeps whose jobs come from elsewhere than a grid. From a finished sweep's chosen runs (sweep.from): more seeds
at the chosen lr (+sweep=seeds), or the final runs on every training image (+sweep=final). Variants of one
network, every job of the grid once per variant, named by sweep.variant (recorded with the job's overrides: the
report finds it there):

- +sweep=ablations: sweep.variants, {name: [overrides]}; `*` in a key stands for every list item that has
  the key (model.layers.*.dropout: every dropout layer of the network);
- +sweep=transfer: per class subset of sweep.subsets, fine-tuned from sweep.from's checkpoint (a run folder,
  or a sweep folder's chosen All-CNN-C run) and from scratch, the source's network either way."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

from omegaconf import DictConfig, OmegaConf

from allconv_sweep import runs
from allconv_sweep.config import records
from allconv_sweep.config.identity import override_key
from allconv_sweep.errors import UserError
from allconv_sweep.runs.choose import choose
from allconv_sweep.runs.collect import collect

NETWORK_KEYS = ("model", "model_options", "preprocess")  # what a fine-tuned job takes from its source run


def seed_jobs(master: DictConfig, arguments: Sequence[str]) -> list[list[str]]:
    """Jobs from another sweep's chosen runs (sweep.from), into that sweep's folder: each network's chosen run's
    overrides with sweep.n_seeds more seeds (sweep.protocol=seeds: the chosen seed + 1, + 2, ...), or with
    data.val_size=0 and seeds from the chosen one on (final: the runs Table 3 takes). Other command-line
    overrides (launcher=..., data.root=...) apply to every job."""
    source = OmegaConf.select(master, "sweep.from", default=None)
    name = OmegaConf.select(master, "sweep.name", default="seeds")
    if not source:
        raise UserError(f"sweep.from is not set: give the folder of a finished sweep, "
                        f"e.g. +sweep={name} sweep.from=outputs/sweeps/pooling_ablation")
    n = OmegaConf.select(master, "sweep.n_seeds", default=None)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise UserError(f"sweep.n_seeds={n!r}: must be a positive integer (how many seeds per network)")
    protocol = OmegaConf.select(master, "sweep.protocol", default="seeds")
    if protocol not in ("seeds", "final"):
        raise UserError(f"sweep.protocol={protocol!r}; valid: seeds, final")
    source_dir = Path(os.path.abspath(str(source)))
    if not source_dir.is_dir():
        raise UserError(f"sweep.from={source}: no such folder; give the folder of a finished sweep, "
                        f"e.g. sweep.from=outputs/sweeps/pooling_ablation")
    # choose among the lr-selection runs only: with final runs (data.val_size=0) in the same folder, choose()
    # reports a network by them, and a re-run would have dropped that network
    selection = [r for r in collect(source_dir) if r.val_size != 0]
    choices = [c for c in choose(selection) if c.rows]
    if not choices:
        raise UserError(f"sweep.from={source}: no finished (ok or diverged) lr-selection job there to start from")
    extra = [a for a in arguments if override_key(a) != "sweep" and not override_key(a).startswith("sweep.")]
    replaced = {override_key(a) for a in extra} | {"seed"} | ({"data.val_size"} if protocol == "final" else set())
    jobs = []
    for c in choices:
        chosen = c.rows[0]
        base = [o for o in _recorded_overrides(chosen, chosen.path, source_dir)
                if override_key(o) not in replaced and override_key(o).split(".")[0] != "launcher"]
        if not any(override_key(o) == "optimizer.lr" for o in base):
            base.append(f"optimizer.lr={chosen.lr}")
        if protocol == "final":
            base.append("data.val_size=0")
        first = (chosen.seed if chosen.seed is not None else 0) + (1 if protocol == "seeds" else 0)
        for s in range(first, first + n):
            jobs.append(base + extra + [f"seed={s}", f"hydra.sweep.dir={_quoted(source_dir)}"])
    return jobs


def _recorded_overrides(record: Any, job_dir: Path, sweep_dir: Path) -> list[str]:
    """A run's recorded overrides, checked before any of them is composed again (the folder's record is data),
    naming the file they came from (in the order runs.collect.collect reads them)."""
    files = (job_dir / runs.METRICS_FILE, sweep_dir / runs.MANIFEST, job_dir / ".hydra" / "overrides.yaml")
    return records.overrides_from_record(record.overrides, next((f for f in files if f.is_file()), job_dir))


def _quoted(path: Path) -> str:
    return "'" + str(path).replace("\\", "\\\\").replace("'", "\\'") + "'"


def expand(cfg: DictConfig, jobs: list[list[str]]) -> list[list[str]]:
    """Every job once per variant (ablations, transfer); the jobs as they are in any other sweep."""
    if OmegaConf.select(cfg, "sweep.subsets") is not None:
        ckpt, network = source(cfg)
        variants = {}
        for name, classes in cfg.sweep.subsets.items():
            data = [f"data.classes=[{','.join(str(int(k)) for k in classes)}]", f"data.num_classes={len(classes)}"]
            variants[f"{name}-pretrained"] = network + data + [f"finetune_from={_quoted(ckpt)}"]
            variants[f"{name}-scratch"] = network + data
    elif OmegaConf.select(cfg, "sweep.variants") is not None:
        variants = {name: [o for ov in ovs for o in _star(cfg, str(ov))] for name, ovs in cfg.sweep.variants.items()}
        models = {o.split("=", 1)[1] for job in jobs for o in job if override_key(o) == "model"} - {cfg.model.name}
        if models:
            raise UserError(f"model={','.join(sorted(models))}: sweep {cfg.sweep.name} runs its variants on one "
                            f"network; give one model=...")
    else:
        return jobs
    out = []
    for job in jobs:
        keys = {override_key(o) for o in job}
        for name, ovs in variants.items():
            out.append([o for o in ovs if override_key(o) not in keys] + list(job) + [f"sweep.variant={name}"])
    return out


def _star(cfg: DictConfig, override: str) -> list[str]:
    key, value = override.split("=", 1)
    if ".*." not in key:
        return [override]
    head, field = key.split(".*.", 1)
    found = [f"{head}.{i}.{field}={value}" for i, item in enumerate(OmegaConf.select(cfg, head) or [])
             if isinstance(item, DictConfig) and field in item]
    if not found:
        raise UserError(f"sweep.variants: {override}: no item of {head} has the key {field}")
    return found


def source(cfg: DictConfig) -> tuple[Path, list[str]]:
    """sweep.from's checkpoint (last.ckpt: the reported final-epoch model) and its network's overrides."""
    given = OmegaConf.select(cfg, "sweep.from", default=None)
    example = f"e.g. +sweep={cfg.sweep.name} sweep.from=outputs/sweeps/lr_grid"
    if not given:
        raise UserError(f"sweep.from is not set: give a finished CIFAR-10 run folder or sweep folder, {example}")
    path = sweep_dir = Path(os.path.abspath(str(given)))
    if (path / runs.METRICS_FILE).is_file():  # one run's folder
        record = runs.read_record(path)
    elif path.is_dir():
        chosen = [c for c in choose(collect(path)) if c.model == "all_cnn_c" and c.rows]
        chosen = [c for c in chosen if not c.setting] or chosen
        if len(chosen) != 1:
            raise UserError(f"sweep.from={given}: {len(chosen) or 'no'} finished All-CNN-C networks there "
                            f"({', '.join(c.setting for c in chosen)}); give the run folder to start from")
        record = chosen[0].rows[0]
        path = record.path
    else:
        raise UserError(f"sweep.from={given}: no such folder; {example}")
    ckpt = path / "checkpoints" / "last.ckpt"
    if record is None or record.status != "ok" or not ckpt.is_file():
        raise UserError(f"sweep.from={given}: {path} is not a finished run (status "
                        f"{getattr(record, 'status', 'unknown')}, checkpoints/last.ckpt {'present' if ckpt.is_file() else 'missing'})")
    network = [o for o in _recorded_overrides(record, path, sweep_dir) if override_key(o).split(".")[0] in NETWORK_KEYS]
    return ckpt, network
