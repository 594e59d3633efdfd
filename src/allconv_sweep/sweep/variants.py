"""Sweeps whose jobs are variants of one network: every job of the grid once per variant, named by
sweep.variant (recorded with the job's overrides: the report finds it there).

- +sweep=ablations: sweep.variants, {name: [overrides]}; `*` in a key stands for every list item that has
  the key (model.layers.*.dropout: every dropout layer of the network);
- +sweep=transfer: per class subset of sweep.subsets, fine-tuned from sweep.from's checkpoint (a run folder,
  or a sweep folder's chosen All-CNN-C run) and from scratch, the source's network either way."""

from __future__ import annotations

import os
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from allconv_sweep import runs
from allconv_sweep.config import records
from allconv_sweep.config.identity import override_key
from allconv_sweep.errors import UserError
from allconv_sweep.runs.choose import choose
from allconv_sweep.runs.collect import collect
from allconv_sweep.sweep.follow_up import _overrides_source

NETWORK_KEYS = ("model", "model_options", "preprocess")  # what a fine-tuned job takes from its source run


def expand(cfg: DictConfig, jobs: list[list[str]]) -> list[list[str]]:
    if OmegaConf.select(cfg, "sweep.subsets") is not None:
        variants = _transfer_variants(cfg)
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


def _transfer_variants(cfg: DictConfig) -> dict[str, list[str]]:
    ckpt, network = source(cfg)
    quoted = str(ckpt).replace("\\", "\\\\").replace("'", "\\'")
    out = {}
    for name, classes in cfg.sweep.subsets.items():
        data = [f"data.classes=[{','.join(str(int(k)) for k in classes)}]", f"data.num_classes={len(classes)}"]
        out[f"{name}-pretrained"] = network + data + [f"finetune_from='{quoted}'"]
        out[f"{name}-scratch"] = network + data
    return out


def source(cfg: DictConfig) -> tuple[Path, list[str]]:
    """sweep.from's checkpoint (last.ckpt: the reported final-epoch model) and its network's overrides."""
    given = OmegaConf.select(cfg, "sweep.from", default=None)
    example = f"e.g. +sweep={cfg.sweep.name} sweep.from=outputs/sweeps/lr_grid"
    if not given:
        raise UserError(f"sweep.from is not set: give a finished CIFAR-10 run folder or sweep folder, {example}")
    path = Path(os.path.abspath(str(given)))
    if (path / runs.METRICS_FILE).is_file():  # one run's folder
        record, where = runs.read_record(path), path / runs.METRICS_FILE
    elif path.is_dir():
        chosen = [c for c in choose(collect(path)) if c.model == "all_cnn_c" and c.rows]
        chosen = [c for c in chosen if not c.setting] or chosen
        if len(chosen) != 1:
            raise UserError(f"sweep.from={given}: {len(chosen) or 'no'} finished All-CNN-C networks there "
                            f"({', '.join(c.setting for c in chosen)}); give the run folder to start from")
        record = chosen[0].rows[0]
        path, where = record.path, _overrides_source(record.path, path)
    else:
        raise UserError(f"sweep.from={given}: no such folder; {example}")
    ckpt = path / "checkpoints" / "last.ckpt"
    if record is None or record.status != "ok" or not ckpt.is_file():
        raise UserError(f"sweep.from={given}: {path} is not a finished run (status "
                        f"{getattr(record, 'status', 'unknown')}, checkpoints/last.ckpt {'present' if ckpt.is_file() else 'missing'})")
    network = [o for o in records.overrides_from_record(record.overrides, where)
               if override_key(o).split(".")[0] in NETWORK_KEYS]
    return ckpt, network
