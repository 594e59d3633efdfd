"""Follow-up sweeps built from a finished sweep's chosen runs (sweep.from): more seeds at the chosen lr
(+sweep=seeds), or the final runs on every training image (+sweep=final)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from omegaconf import DictConfig, OmegaConf

from allconv_sweep import runs
from allconv_sweep.config import records
from allconv_sweep.config.identity import override_key
from allconv_sweep.errors import UserError
from allconv_sweep.runs.choose import choose
from allconv_sweep.runs.collect import collect


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
    quoted = str(source_dir).replace("\\", "\\\\").replace("'", "\\'")
    for c in choices:
        chosen = c.rows[0]
        # the folder's record is data: its overrides are checked before any of them is composed again
        recorded = records.overrides_from_record(chosen.overrides, _overrides_source(chosen.path, source_dir))
        base = [o for o in recorded
                if override_key(o) not in replaced and override_key(o).split(".")[0] != "launcher"]
        if not any(override_key(o) == "optimizer.lr" for o in base):
            base.append(f"optimizer.lr={chosen.lr}")
        if protocol == "final":
            base.append("data.val_size=0")
        first = (chosen.seed if chosen.seed is not None else 0) + (1 if protocol == "seeds" else 0)
        for s in range(first, first + n):
            jobs.append(base + extra + [f"seed={s}", f"hydra.sweep.dir='{quoted}'"])
    return jobs


def _overrides_source(job_dir: Path, sweep_dir: Path) -> Path:
    """The file a job's recorded overrides came from (runs.collect.collect reads them in this order)."""
    for path in (job_dir / runs.METRICS_FILE, sweep_dir / runs.MANIFEST, job_dir / ".hydra" / "overrides.yaml"):
        if path.is_file():
            return path
    return job_dir
