"""Our rule for the learning rate (the paper reports the best lr, not how it was chosen): per network, the lr with
the lowest validation error."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any, Optional

from allconv_sweep.runs.record import FINISHED


@dataclass
class LrChoice:
    """Per network (and setting): the learning rate chosen on validation error, and its test error. `rows`:
    the runs reported, the final runs at the chosen lr (+sweep=final) if any, else the selection runs at it."""
    model: str
    family: Optional[str]
    variant: Optional[str]
    data: Optional[str]
    augment: Optional[str]
    setting: str                       # what sets these runs apart from the folder's others ("" if nothing)
    lr: Optional[float]
    chosen_on: str                     # "val" (our rule: validation error), "test" (no validation split) or "none"
    rows: list[Any]                    # records of the runs reported (see above)
    candidates: dict[float, float]     # lr -> the score it was chosen on (mean error, common seeds)
    protocol: str = "select"           # "final": rows were trained on every training image; "select": on
                                       # the training split left after holding out the validation images
    num_params: Optional[int] = None

    @property
    def test_errors(self) -> list[float]:
        return [r.test_error for r in self.rows if r.test_error is not None]

    @property
    def test_mean(self) -> Optional[float]:
        e = self.test_errors
        return sum(e) / len(e) if e else None

    @property
    def test_std(self) -> Optional[float]:
        return statistics.stdev(self.test_errors) if len(self.test_errors) > 1 else None

    @property
    def val_mean(self) -> Optional[float]:
        return self.candidates.get(self.lr) if self.chosen_on == "val" and self.lr is not None else None

    @property
    def statuses(self) -> set[str]:
        return {r.status for r in self.rows}


def choose(rows: list[Any]) -> list[LrChoice]:
    """Per group of runs that differ only in lr, seed and protocol (`row.group`): the lr with the lowest
    validation error, averaged over the seeds that every lr has (extra seeds at the chosen lr never tilt
    the choice); ties go to a non-diverged run, then the larger lr. No validation split at all: chosen on
    test error (flagged). Rows need: group, model, family, variant, data, augment, setting, lr, seed,
    status, val_error, test_error, val_size, num_params."""
    groups: dict[tuple, list[Any]] = {}
    for r in rows:
        if r.model is not None:
            groups.setdefault(r.group, []).append(r)
    choices = []
    for members in groups.values():
        first = members[0]
        done = [r for r in members if r.status in FINISHED and r.lr is not None]
        final = [r for r in done if r.val_size == 0]          # trained on every training image (+sweep=final)
        select = [r for r in done if r.val_size != 0] or final
        metric = "val_error" if any(r.val_error is not None for r in select) else "test_error"
        by_lr: dict[float, list[Any]] = {}
        for r in select:
            if getattr(r, metric) is not None:
                by_lr.setdefault(r.lr, []).append(r)
        params = next((r.num_params for r in members if r.num_params), None)
        base = dict(model=first.model, family=first.family, variant=first.variant, data=first.data,
                    augment=first.augment, setting=first.setting, num_params=params)
        if not by_lr:
            choices.append(LrChoice(**base, lr=None, chosen_on="none", rows=[], candidates={}))
            continue
        common = set.intersection(*({r.seed for r in rs} for rs in by_lr.values()))
        scores = {}
        for lr, rs in by_lr.items():
            use = [r for r in rs if r.seed in common] or rs
            scores[lr] = sum(getattr(r, metric) for r in use) / len(use)
        diverged = {lr: any(r.status == "diverged" for r in rs) for lr, rs in by_lr.items()}
        lr = min(scores, key=lambda k: (scores[k], diverged[k], -k))
        final_at = [r for r in final if r.lr == lr]
        reported = final_at if final_at and select is not final else [r for r in select if r.lr == lr]
        reported = sorted(reported, key=lambda r: (r.seed is None, r.seed))
        choices.append(LrChoice(**base, lr=lr, chosen_on="val" if metric == "val_error" else "test", rows=reported,
                              candidates=scores, protocol="final" if reported and reported[0].val_size == 0 else "select"))
    return choices
