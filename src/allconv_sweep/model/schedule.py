"""The paper's learning-rate schedule as torch's own schedulers: MultiStepLR (x gamma at each milestone),
after an optional linear warm-up (LinearLR, chained by SequentialLR). Stepped every optimizer step, so the
milestones, given in epochs on the paper's 350-epoch scale, become steps of this run.

scheduler=multistep (conf/scheduler/multistep.yaml, schema MultiStepScheduleConf) names paper_schedule with
_partial_: true (that name stays: it is in every run's recorded _target_, hence in its result key);
ImageClassifier.configure_optimizers binds the optimizer and the run's length:
instantiate(cfg.scheduler)(opt, max_epochs=..., steps_per_epoch=...).
"""

from __future__ import annotations

from typing import Sequence

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LinearLR, LRScheduler, MultiStepLR, SequentialLR

from allconv_sweep.errors import UserError


def scaled_milestones(milestones: Sequence[float], of_epochs: int, max_epochs: int) -> list[int]:
    """Milestones given on the paper's 350-epoch scale, rescaled so a short run keeps the paper's shape.

    Rounding can make two milestones meet on a short schedule (5 epochs: 200, 250, 300 -> 3, 4, 4: two
    drops at once). They are spread instead: each at least an epoch after the one before; one that would
    fall at or after the last epoch (where it never takes effect) is dropped, never stacked (5 epochs:
    3, 4). The first drop stays where the paper's proportion puts it (200/350 of the run at full lr)."""
    out: list[int] = []
    for m in sorted(milestones):
        m = max(round(m * max_epochs / of_epochs), out[-1] + 1 if out else 1)
        if m >= max_epochs:
            break
        out.append(m)
    return out


def drop_epochs(milestones: Sequence[float], of_epochs: int, max_epochs: int, epochs_run: int) -> list[int]:
    """The 1-based epochs of a run that started at a lower lr: each (rescaled) milestone's, as far as it ran."""
    return [m + 1 for m in scaled_milestones(milestones, of_epochs, max_epochs) if m < epochs_run]


def paper_schedule(optimizer: Optimizer, *, milestones: Sequence[float], of_epochs: int, gamma: float,
                   warmup_epochs: float, max_epochs: int, steps_per_epoch: int) -> LRScheduler:
    """x gamma at each (rescaled) milestone, stepped per optimizer step; warm-up: the lr rises in equal
    steps from lr/warmup_steps (step 0) to lr (step warmup_steps) over the first warmup_epochs."""
    steps = [m * steps_per_epoch for m in scaled_milestones(milestones, of_epochs, max_epochs)]
    warmup = round(warmup_epochs * steps_per_epoch)
    if warmup <= 0:
        return MultiStepLR(optimizer, milestones=steps, gamma=gamma)
    if steps and warmup > steps[0]:
        raise UserError(f"scheduler.warmup_epochs={warmup_epochs} ends after the first lr drop (epoch "
                        f"{steps[0] // steps_per_epoch} of {max_epochs}): shorten the warm-up")
    ramp = LinearLR(optimizer, start_factor=1.0 / warmup, end_factor=1.0, total_iters=warmup)
    # SequentialLR restarts the second scheduler's count at the switch: its milestones count from there
    decay = MultiStepLR(optimizer, milestones=[s - warmup for s in steps], gamma=gamma)
    return SequentialLR(optimizer, [ramp, decay], milestones=[warmup])
