"""The paper's lr schedule as torch's schedulers (MultiStepLR after an optional LinearLR warm-up), stepped per
optimizer step. paper_schedule's name is in every run's recorded _target_, hence in its result key."""

from typing import Sequence

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LinearLR, LRScheduler, MultiStepLR, SequentialLR

from allconv_sweep.errors import UserError


def scaled_milestones(milestones: Sequence[float], of_epochs: int, max_epochs: int) -> list[int]:
    """Milestones on the paper's 350-epoch scale, rescaled so a short run keeps the paper's shape. Milestones
    that rounding makes meet are spread, each at least an epoch after the one before, and one at or after
    the last epoch is dropped (5 epochs: 200, 250, 300 -> 3, 4, not 3, 4, 4); the first stays in proportion."""
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
    """x gamma at each milestone; warm-up: from lr/warmup_steps up to lr in equal steps over warmup_epochs."""
    steps = [m * steps_per_epoch for m in scaled_milestones(milestones, of_epochs, max_epochs)]
    warmup = round(warmup_epochs * steps_per_epoch)
    if warmup <= 0:
        return MultiStepLR(optimizer, milestones=steps, gamma=gamma)
    if steps and warmup > steps[0]:
        raise UserError(f"scheduler.warmup_epochs={warmup_epochs} ends after the first lr drop (epoch "
                        f"{steps[0] // steps_per_epoch} of {max_epochs}): shorten the warm-up")
    ramp = LinearLR(optimizer, start_factor=1.0 / warmup, end_factor=1.0, total_iters=warmup)
    decay = MultiStepLR(optimizer, [s - warmup for s in steps], gamma=gamma)  # counted from SequentialLR's switch
    return SequentialLR(optimizer, [ramp, decay], milestones=[warmup])
