"""The verdict rule (results/claims.py) on made-up differences, each branch."""

from __future__ import annotations

import pytest

from allconv_sweep.results.claims import interval, t975, verdict


def test_interval_is_the_95_percent_t_interval_of_the_mean():
    mean, half = interval([1.0, 2.0, 3.0])
    assert mean == 2.0 and half == pytest.approx(4.303 * 1.0 / 3 ** 0.5)
    assert interval([5.0]) == (5.0, None)
    assert t975(30) == 2.042 and t975(31) == pytest.approx(2.0395, abs=1e-3) and t975(1000) == pytest.approx(1.962, abs=1e-3)


@pytest.mark.parametrize("diffs, sign, expected", [
    ([-2.0, -2.2, -1.9], -1, "supports"),              # interval below 0, the claimed side
    ([2.0, 2.2, 1.9], 1, "supports"),
    ([2.0, 2.2, 1.9], -1, "contradicts"),              # interval above 0, the other side
    ([-2.0, 1.0, 0.5], -1, "inconclusive at 3 seeds"),  # interval covers 0
    ([-5.0], -1, "inconclusive at 1 seed"),            # one seed: never more
    ([5.0], 0, "inconclusive at 1 seed"),
    ([0.1, -0.1, 0.05, 0.0], 0, "supports"),           # on par: inside +-0.3
    ([1.0, 1.1, 0.9], 0, "contradicts"),               # on par: wholly outside
    ([-1.0, -1.1, -0.9], 0, "contradicts"),
    ([0.1, 0.5, 0.3], 0, "inconclusive at 3 seeds"),   # on par: straddles the margin
])
def test_verdict_branches(diffs, sign, expected):
    assert verdict(diffs, sign) == expected
