"""Verdict statistics against hand-enumerated values and calibration on synthetic draws."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from incriminate.verdict import stats


def _students(rng: np.random.Generator, n_seeds: int, effect: float, n_items: int = 100):
    """Per-item scores of paired U/C students: shared seed effect, run noise, item noise.

    The true difference of expected rates is ``effect``; items are shared by U and C.
    """
    difficulty = rng.normal(0.0, 0.1, size=n_items)  # (m,) shared by every student
    u_items, c_items = [], []
    for _ in range(n_seeds):
        seed_shift = rng.normal(0.0, 0.05)  # both students of a seed share data order etc.
        for arm, out in ((effect, u_items), (0.0, c_items)):
            run = rng.normal(0.0, 0.05)  # distillation run-to-run variance
            out.append(0.4 + arm + seed_shift + run + difficulty + rng.normal(0, 0.1, n_items))
    return u_items, c_items


def _null_pairs(rng: np.random.Generator, n_seeds: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-seed rates with U and C exchangeable within each seed."""
    shift = rng.normal(0.3, 0.1, size=n_seeds)
    return shift + rng.normal(0, 0.05, n_seeds), shift + rng.normal(0, 0.05, n_seeds)


def test_bootstrap_ci_covers_true_difference() -> None:
    # 20 seeds: near-nominal. With 3-10 seeds the percentile interval undercovers (see docstring).
    rng = np.random.default_rng(1)
    covered = 0
    for draw in range(60):
        u_items, c_items = _students(rng, n_seeds=20, effect=0.1)
        diff, lo, hi = stats.bootstrap_ci(u_items, c_items, n_boot=300, seed=draw, level=0.9)
        assert lo <= diff <= hi
        covered += lo <= 0.1 <= hi
    assert covered >= 47  # nominal 90%: 54 of 60


def test_bootstrap_ci_shrinks_with_more_seeds() -> None:
    rng = np.random.default_rng(2)
    widths = {}
    for n_seeds in (4, 16):
        intervals = [
            stats.bootstrap_ci(*_students(rng, n_seeds, effect=0.1), n_boot=300) for _ in range(10)
        ]
        widths[n_seeds] = np.mean([hi - lo for _, lo, hi in intervals])
    assert widths[16] < 0.8 * widths[4]  # ~ sqrt(4 / 16) = 0.5


def test_bootstrap_ci_degenerate_and_deterministic() -> None:
    u_items = [np.full(5, 0.6), np.full(5, 0.6)]
    c_items = [np.full(5, 0.2), np.full(5, 0.2)]
    assert stats.bootstrap_ci(u_items, c_items, n_boot=50) == pytest.approx((0.4, 0.4, 0.4))
    u_items, c_items = _students(np.random.default_rng(3), n_seeds=3, effect=0.0, n_items=20)
    first = stats.bootstrap_ci(u_items, c_items, n_boot=200, seed=7)
    assert stats.bootstrap_ci(u_items, c_items, n_boot=200, seed=7) == first
    assert stats.bootstrap_ci(u_items, c_items, n_boot=200, seed=8) != first
    # Items with shared difficulty: pairing them on the same indices gives a narrower interval.
    unpaired = stats.bootstrap_ci(u_items, c_items, n_boot=200, seed=7, paired_items=False)
    assert unpaired.diff == first.diff
    assert unpaired.hi - unpaired.lo > first.hi - first.lo


@pytest.mark.parametrize(
    ("d", "alternative", "expected"),
    [
        ([0.3, 0.1, 0.2], "greater", 1 / 8),  # only the observed signs reach 0.6
        ([0.3, 0.1, 0.2], "less", 1.0),
        ([0.3, 0.1, 0.2], "two-sided", 2 / 8),  # +++ and ---
        ([0.3, -0.1, 0.2], "greater", 2 / 8),  # sums 0.6, 0.4 of {.6,.4,.2,0,0,-.2,-.4,-.6}
        ([0.3, -0.1, 0.2], "two-sided", 4 / 8),
        ([0.3, -0.1, 0.2], "less", 7 / 8),
        ([0.3, -0.1, -0.2], "greater", 5 / 8),  # observed 0 ties with -0.3+0.1+0.2 in floats
    ],
)
def test_paired_permutation_by_hand(d: list[float], alternative, expected: float) -> None:
    c = np.array([0.5, 0.4, 0.3])
    assert stats.permutation_pvalue(c + np.array(d), c, alternative) == pytest.approx(expected)


def test_paired_permutation_matches_brute_force_and_monte_carlo() -> None:
    rng = np.random.default_rng(4)
    u, c = rng.normal(0.1, 0.2, 10), rng.normal(0.0, 0.2, 10)
    d = u - c
    flips = [np.mean(np.array(s) * d) for s in itertools.product((-1, 1), repeat=d.size)]
    brute = np.mean(np.array(flips) >= d.mean() - 1e-12)
    assert stats.permutation_pvalue(u, c) == pytest.approx(brute)
    mc = stats.permutation_pvalue(u, c, n_perm=20_000, method="monte_carlo")
    assert mc == pytest.approx(brute, abs=0.01)
    # n > 16 goes Monte Carlo: a clear effect lands on the floor 1 / (n_perm + 1).
    assert stats.permutation_pvalue(np.ones(20), np.zeros(20), n_perm=999) == 1 / 1000


def test_min_pvalue() -> None:
    assert stats.min_pvalue(3) == 0.125
    assert stats.min_pvalue(4) > 0.05 >= stats.min_pvalue(5) == 1 / 32
    assert stats.min_pvalue(5, "two-sided") > 0.05 >= stats.min_pvalue(6, "two-sided")
    assert stats.min_pvalue(20, n_perm=999) == 1 / 1000
    assert stats.permutation_pvalue(np.ones(5), np.zeros(5)) == stats.min_pvalue(5)


@pytest.mark.parametrize("alternative", ["greater", "two-sided"])
def test_paired_pvalues_uniform_under_null(alternative) -> None:
    rng = np.random.default_rng(6)
    p = np.array([stats.permutation_pvalue(*_null_pairs(rng, 8), alternative) for _ in range(500)])
    assert 0.02 <= np.mean(p <= 0.05) <= 0.08
    # KS-type: empirical CDF at the decile edges stays within the 5% KS band 1.36 / sqrt(500).
    edges = np.linspace(0.1, 0.9, 9)
    ecdf = np.array([np.mean(p <= t) for t in edges])
    assert np.max(np.abs(ecdf - edges)) < 1.36 / math.sqrt(500)


def test_planted_effect_is_detected() -> None:
    rng = np.random.default_rng(8)
    paired = []
    for _ in range(200):
        u, c = _null_pairs(rng, 8)
        paired.append(stats.permutation_pvalue(u + 0.1, c) <= 0.05)  # d_z ~ 1.4
    assert np.mean(paired) > 0.8


def test_holm_by_hand() -> None:
    # sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04 -> running max
    adjusted, reject = stats.holm([0.01, 0.04, 0.03, 0.005], alpha=0.05)
    assert adjusted == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert reject == [True, False, False, True]
    assert stats.holm([0.4, 0.9], 0.05)[0] == pytest.approx([0.8, 0.9])
    assert stats.holm([0.6, 0.7], 0.05)[0] == [1.0, 1.0]
    named, flags = stats.holm({"kd": 0.001, "gkd": 0.2}, alpha=0.05)
    assert named == pytest.approx({"kd": 0.002, "gkd": 0.2})
    assert flags == {"kd": True, "gkd": False}
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        stats.holm([0.1, 1.5], 0.05)


def test_holm_between_bonferroni_and_unadjusted() -> None:
    rng = np.random.default_rng(9)
    alpha = 0.05
    for _ in range(300):
        m = int(rng.integers(1, 12))
        p = np.round(rng.uniform(0, 0.1, m) ** rng.uniform(0.5, 2), 3)  # rounding makes ties
        adjusted, reject = stats.holm(list(p), alpha)
        assert np.all(np.array(adjusted) >= p)
        assert np.all(np.array(reject) <= (p <= alpha))  # never more than unadjusted
        assert np.all(np.array(reject) >= (m * p <= alpha))  # never fewer than Bonferroni


def _config_pvalue(rng: np.random.Generator, n_seeds: int, effect: float) -> float:
    u, c = _null_pairs(rng, n_seeds)
    return stats.permutation_pvalue(u + effect, c)
