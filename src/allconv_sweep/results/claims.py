"""Verdicts: the paper's claims (paper.CLAIMS), the reproduction's observations (OBSERVATIONS, +sweep=ablations)
and the transfer table (+sweep=transfer), from paired differences over seeds and one rule (verdict)."""

from __future__ import annotations

import math
from typing import Any, Optional

from allconv_sweep.config.identity import override_key
from allconv_sweep.results.paper import CLAIMS, ON_PAR_MARGIN, PAPER_TABLE3, display_name

# The reproduction report's observations, as issue 21 quotes it: (its words, variant, against it, the sign it
# states for variant - against in test error). The variants are sweeps/ablations.yaml's sweep.variants.
OBSERVATIONS = (
    ("an FC head instead of the 1x1 class conv is 0.5-1% worse", "fc_head", "baseline", 1),
    ("batch norm improves accuracy", "batch_norm", "baseline", -1),
    ("Xavier-uniform init beats Kaiming", "xavier_uniform", "caffe_msra", -1),
    ("dropout can reduce accuracy", "no_dropout", "baseline", -1),
)
RULE_MD = ["## How verdicts are made", "",
           "Every comparison is paired: the test error (or accuracy) of one arm minus the other's, seed by seed "
           "(the runs of the same seed; each arm at its chosen lr), given as the mean over seeds with its 95% "
           "t-interval. *supports*: the interval excludes 0 on the side the claim states; *contradicts*: it "
           "excludes 0 on the other side; otherwise *inconclusive at n seeds*. One seed gives no interval and is "
           f"always inconclusive. An \"on par\" claim supports when the whole interval lies within ±{ON_PAR_MARGIN} "
           "points (above Table 3's largest All-CNN vs ConvPool-CNN difference, 0.23, read as on par; below its "
           "smallest Strided-CNN vs base one, 0.45, read as a loss), contradicts when it lies wholly outside, and "
           "is inconclusive otherwise.", ""]
# t quantiles (0.975) for 1..30 degrees of freedom; beyond, the Cornish-Fisher expansion (within 1e-3 there)
T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
        2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def t975(df: int) -> float:
    z = 1.959964
    return T975[df - 1] if df <= len(T975) else z + (z ** 3 + z) / (4 * df) + (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * df ** 2)


def interval(diffs: list[float]) -> tuple[float, Optional[float]]:
    """Mean and the half-width of its 95% t-interval (None for one value)."""
    n, mean = len(diffs), sum(diffs) / len(diffs)
    if n < 2:
        return mean, None
    return mean, t975(n - 1) * math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1) / n)


def verdict(diffs: list[float], sign: int, margin: float = ON_PAR_MARGIN) -> str:
    """sign -1/+1: the claimed sign of the difference; 0: "on par" (within +-margin)."""
    mean, half = interval(diffs)
    if half is None:
        return f"inconclusive at {len(diffs)} seed"
    lo, hi = mean - half, mean + half
    if sign == 0:
        inside, outside = -margin <= lo and hi <= margin, lo > margin or hi < -margin
    else:
        inside, outside = sign * lo > 0 and sign * hi > 0, sign * lo < 0 and sign * hi < 0
    return "supports" if inside else "contradicts" if outside else f"inconclusive at {len(diffs)} seeds"


def _value(c: Any, key: str = "sweep.variant") -> Optional[str]:
    """An override of a choice's runs; sweep.variant: a job's name within a variants sweep."""
    return next((o.split("=", 1)[1] for r in c.rows for o in r.overrides if override_key(o) == key), None)


def _diffs(a: Any, b: Optional[Any]) -> list[float]:
    """a's test error minus b's (points), seed by seed; none without b."""
    va, vb = ({r.seed: r.test_error for r in (c.rows if c else []) if r.test_error is not None} for c in (a, b))
    return [100 * (va[s] - vb[s]) for s in sorted(set(va) & set(vb), key=str)]


def _ours(diffs: list[float]) -> str:
    mean, half = interval(diffs)
    return f"{mean:+.2f}" + ("" if half is None else f" [{mean - half:+.2f}, {mean + half:+.2f}]")


def _section(title: str, intro: str, header: list[str], rows: list[list[str]]) -> list[str]:
    """A report section: its heading, what it shows, and one table row per comparison (none without rows)."""
    table = [f"| {' | '.join(header)} |", "|" + "---|" * len(header), *(f"| {' | '.join(r)} |" for r in rows)]
    return [f"## {title}", "", intro, "", *table, ""] if rows else []


def claims_md(choices: list[Any]) -> list[str]:
    by_arm = {(c.data, c.augment, c.setting, c.model): c for c in choices if c.rows and _value(c) is None}
    rows = []
    for (data, augment, setting, model), c in by_arm.items():
        for a, b, on_par in CLAIMS:
            if model == a and (diffs := _diffs(c, by_arm.get((data, augment, setting, b)))):
                paper = PAPER_TABLE3[a] - PAPER_TABLE3[b]
                sign = 0 if on_par else (1 if paper > 0 else -1)
                what = "on par" if on_par else ("higher" if sign > 0 else "lower") + " error"
                paper_setting = (data, augment) == ("cifar10", "none") and not setting
                where = "" if paper_setting else f" ({data}, {augment}{', ' + setting if setting else ''})"
                rows.append([f"{display_name(a)} vs {display_name(b)}{where}: {what}",
                             f"{PAPER_TABLE3[a]:.2f} − {PAPER_TABLE3[b]:.2f} = {paper:+.2f}", _ours(diffs),
                             str(len(diffs)), verdict(diffs, sign)])
    return _section("The paper's claims", "Table 3's comparisons (test error, points; CIFAR-10 without augmentation "
                    "in the paper): the paper's difference, ours (mean [95% interval] over paired seeds) and the "
                    "verdict.", ["claim", "paper", "ours", "seeds", "verdict"], rows)


def ablations_md(choices: list[Any]) -> list[str]:
    arms = {(c.data, c.augment, c.model, _value(c)): c for c in choices if c.rows}
    rows = []
    for text, variant, against, sign in OBSERVATIONS:
        for (data, augment, model, v), c in arms.items():
            if v == variant and (diffs := _diffs(c, arms.get((data, augment, model, against)))):
                rows.append([f"\"{text}\"", f"{variant} − {against} ({display_name(model)}, {data})", _ours(diffs),
                             str(len(diffs)), verdict(diffs, sign)])
    return _section("Ablations", "The reproduction report's observations (its words as issue 21 quotes them), our "
                    "difference in test error (points, mean [95% interval] over paired seeds) and the verdict.",
                    ["observation", "compared", "ours", "seeds", "verdict"], rows)


def transfer_md(choices: list[Any]) -> list[str]:
    cells: dict[tuple, Any] = {}
    for c in choices:
        subset, _, init = (_value(c) or "").rpartition("-")
        if init in ("pretrained", "scratch") and c.test_errors:
            cells[(subset, _value(c, "model.head") or "conv", init)] = c
    rows = []
    for (subset, head, init), c in sorted(cells.items()):
        acc = [100 * (1 - e) for e in c.test_errors]
        spread = f" ± {100 * c.test_std:.2f}" if c.test_std is not None else ""
        diffs = [-d for d in _diffs(c, cells.get((subset, head, "scratch")))] if init == "pretrained" else []
        gain = f"{_ours(diffs)} ({len(diffs)} seed{'s' * (len(diffs) != 1)})" if diffs else "-"
        rows.append([subset, head, init, f"{sum(acc) / len(acc):.2f}{spread}", str(len(acc)), gain])
    return _section("Transfer", "Test accuracy (%, mean ± std over seeds) per class subset, head and initialisation; "
                    "the gain from pre-training: accuracy fine-tuned minus from scratch, paired by seed (mean [95% "
                    "interval]).", ["subset", "head", "init", "test accuracy %", "seeds",
                                    "gain from pre-training, points"], rows)


def verdicts_md(choices: list[Any]) -> list[str]:
    """The report's sections on claims, ablations and transfer; the rule once, before the first verdict."""
    claims, ablations = claims_md(choices), ablations_md(choices)
    return (RULE_MD if claims or ablations else []) + claims + ablations + transfer_md(choices)
