"""Pure statistics the verdict is built from (`verdict.compare`, `verdict.bench`): a bootstrap
interval of a paired difference (seeds crossed with audit items), the sign-flip permutation
test of paired differences and its floor, and Holm's step-down correction.

Exact permutation tests have a floor: with ``n`` paired units the smallest one-sided p is
``1 / 2**n`` (3: 0.125; 4: 0.0625; 5: 0.03125). ``min_pvalue`` gives it, so a caller can
answer ``inconclusive`` when the design cannot reach ``alpha``.

Everything is numpy and deterministic given ``seed`` (``np.random.default_rng(seed)``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal, NamedTuple, overload

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "Interval",
    "bootstrap_ci",
    "holm",
    "min_pvalue",
    "permutation_pvalue",
]

Alternative = Literal["greater", "less", "two-sided"]
Method = Literal["auto", "exact", "monte_carlo"]
Decision = Literal["incriminated", "not_incriminated", "inconclusive"]

MAX_EXACT_SEEDS = 16  # exact sign-flip enumeration up to 2**16 = 65,536 assignments
_TIE_RTOL = 1e-9  # statistics this close (relative to max |x|) count as ties: float sums differ
_CHUNK = 1 << 22  # item indices drawn at once by the bootstrap (32 MiB of int64)


def _vector(x: ArrayLike, name: str) -> np.ndarray:
    """``x`` as a non-empty, finite, 1-D float64 array."""
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 1 or a.size == 0 or not np.all(np.isfinite(a)):
        raise ValueError(f"{name} must be a non-empty finite 1-D array, got shape {a.shape}")
    return a


def _differences(u: ArrayLike, c: ArrayLike) -> np.ndarray:
    """Per-seed differences ``d_i = u_i - c_i``; u and c are paired by position (seed)."""
    u_, c_ = _vector(u, "u"), _vector(c, "c")
    if u_.shape != c_.shape:
        raise ValueError(f"paired u and c need the same seeds, got {u_.shape} and {c_.shape}")
    return u_ - c_


class Interval(NamedTuple):
    """Observed difference with a confidence interval ``[lo, hi]``."""

    diff: float
    lo: float
    hi: float


def _bootstrap_means(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """``k`` means of ``x`` resampled with replacement, ``(k,)``; drawn in bounded chunks."""
    rows = max(1, _CHUNK // x.size)
    parts = [
        x[rng.integers(0, x.size, size=(min(rows, k - start), x.size))].mean(axis=1)
        for start in range(0, k, rows)
    ]
    return np.concatenate([np.empty(0), *parts])


def _draw_counts(rows: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """How often each of ``size`` indices is drawn in ``size`` draws with replacement, one
    resample per row: ``(rows, size)`` counts, each row summing to ``size``."""
    picks = rng.integers(0, size, size=(rows, size)) + size * np.arange(rows)[:, None]
    return np.bincount(picks.ravel(), minlength=rows * size).reshape(rows, size)


def _crossed_means(
    u: np.ndarray, c: np.ndarray, n_boot: int, rng: np.random.Generator, paired_items: bool
) -> np.ndarray:
    """``n_boot`` crossed-bootstrap replicates of ``mean(U) - mean(C)``, ``(n_boot,)``.

    u (n, m_u), c (n, m_c): seeds by items. A replicate's seed counts w (n,) and item counts v
    (m,) give ``w @ X @ v / (n m)``, the mean over the resampled seeds x resampled items. Paired
    items share v; otherwise U and C draw their own. Chunked so each (rows, m) array stays
    within ``_CHUNK`` elements.
    """
    n, width = u.shape[0], max(u.shape[1], c.shape[1])
    arrays = [u - c] if paired_items else [u, -c]  # (n, m) each; the replicate sums them
    rows = max(1, _CHUNK // (4 * max(n, width)))
    parts = []
    for start in range(0, n_boot, rows):
        k = min(rows, n_boot - start)
        w = _draw_counts(k, n, rng) / n  # (k, n) seed weights, shared by U and C
        parts.append(
            sum(
                ((w @ x) * _draw_counts(k, x.shape[1], rng)).sum(axis=1) / x.shape[1]
                for x in arrays
            )
        )
    return np.concatenate([np.empty(0), *parts])


def _nested_means(
    us: list[np.ndarray],
    cs: list[np.ndarray],
    n_boot: int,
    rng: np.random.Generator,
    paired_items: bool,
) -> np.ndarray:
    """``n_boot`` nested-bootstrap replicates: seeds, then items within each drawn seed."""
    n = len(us)
    picks = rng.integers(0, n, size=(n_boot, n))  # (B, n) seed drawn into each slot
    pair_diffs = np.empty((n_boot, n))  # (B, n) item-resampled U - C of the drawn pair
    for i, (u, c) in enumerate(zip(us, cs, strict=True)):
        hits = picks == i
        k = int(hits.sum())
        if paired_items:
            pair_diffs[hits] = _bootstrap_means(u - c, k, rng)
        else:
            pair_diffs[hits] = _bootstrap_means(u, k, rng) - _bootstrap_means(c, k, rng)
    return pair_diffs.mean(axis=1)


def bootstrap_ci(
    u_items: Sequence[ArrayLike],
    c_items: Sequence[ArrayLike],
    n_boot: int = 2000,
    seed: int = 0,
    level: float = 0.95,
    paired_items: bool = True,
    crossed: bool = True,
) -> Interval:
    """Two-level percentile bootstrap of ``mean(U) - mean(C)`` over seeds and audit items.

    u_items[i], c_items[i]: per-item scores (m_i,) of the U- and C-student of seed i.
    Estimate: ``diff = (1/n) sum_i (mean(u_items[i]) - mean(c_items[i]))``, every student
    weighted equally. The interval is the (1-level)/2 and (1+level)/2 quantiles of n_boot
    replicates (percentile interval; Efron & Tibshirani 1993, *An Introduction to the
    Bootstrap*, ch. 13). The U/C pair of a seed always moves together.

    Why two levels: the rate of a student varies from one distillation run to the next (seed:
    init, data order, sampling), and each rate is measured on a finite sample of audit items.
    Resampling seeds alone ignores item noise; resampling items alone ignores run-to-run
    variance, usually the larger term.

    Crossed (default, when every seed has the same number of items, and with paired_items
    the same for U and C): every student is audited on the *same* items, so items are crossed
    with seeds and an item that is easy for one student is easy for all. The estimate's
    variance then holds an item term ``sigma_item^2 / m`` that no number of seeds averages
    away. One replicate draws n seed indices with replacement and ONE item index vector (m,)
    shared by every drawn seed, and recomputes diff on that seeds x items array: the
    row-column ("pigeonhole") bootstrap of a two-way crossed array (Owen 2007, "The pigeonhole
    bootstrap", Ann. Appl. Stat. 1:386-411). No bootstrap of a crossed array is exactly unbiased
    for its variance (McCullagh 2000, "Resampling and exchangeable arrays", Bernoulli
    6:285-301); this one gets the seed and item terms about right and counts the seed x item
    noise term ``sigma_e^2 / (nm)`` about three times (in the seed draw, the item draw and
    their product; 2.8x measured at 8 x 100), so it errs wide. Generalizability theory meets
    the same problem for persons x items designs (Brennan 2001, *Generalizability Theory*, on
    bootstrapping both facets). With paired_items the U and C arrays use the same item
    vector, which cancels per-item difficulty shared by U and C; with ``paired_items=False``
    (U and C saw different items) U and C draw independent item vectors.

    Nested (``crossed=False``, or item counts that differ between seeds, where items cannot be
    shared): within each drawn seed, m_i item indices with replacement, independently per
    seed (Davison & Hinkley 1997, *Bootstrap Methods*, §3.8). This treats each seed's items as
    its own sample: with crossed items it averages the shared item effect over n independent
    resamples and undercounts its variance by a factor of about n (the tests measure the
    undercoverage). One-element item arrays give the seed-level bootstrap in either mode.

    Memory: replicates are drawn in chunks of at most ``_CHUNK`` indices.

    Small n: the percentile interval cannot be wider than the spread of n seeds and undercovers
    like a z-interval with ``sd * sqrt((n-1)/n)``. On synthetic normal data (the tests'
    generator: item difficulty shared by U and C, so it cancels in the difference) a nominal
    95% interval covered 80% with 3 seeds, 91% with 6, 90% with 10 and 95% with 20 (400 draws
    each). With an item effect on the difference itself (8 seeds x 100 items; sd of seed,
    item and noise terms 0.03, 0.3, 0.2) the crossed interval covered 93-97% and the nested
    one 63-76% (four runs of 200 draws). The interval describes the effect; the permutation
    p-value, exact at any n, is the test of record.
    """
    if len(u_items) != len(c_items) or not u_items:
        raise ValueError(f"need the same seeds for U and C, got {len(u_items)}, {len(c_items)}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    us = [_vector(x, f"u_items[{i}]") for i, x in enumerate(u_items)]
    cs = [_vector(x, f"c_items[{i}]") for i, x in enumerate(c_items)]
    if paired_items and any(u.size != c.size for u, c in zip(us, cs, strict=True)):
        raise ValueError("paired_items needs the same items for the U- and C-student of a seed")
    diff = float(np.mean([u.mean() - c.mean() for u, c in zip(us, cs, strict=True)]))
    rng = np.random.default_rng(seed)
    shared = len({u.size for u in us}) == 1 and len({c.size for c in cs}) == 1
    if crossed and shared:
        replicates = _crossed_means(np.stack(us), np.stack(cs), n_boot, rng, paired_items)
    else:
        replicates = _nested_means(us, cs, n_boot, rng, paired_items)
    lo, hi = np.quantile(replicates, [(1 - level) / 2, (1 + level) / 2])
    return Interval(diff, float(lo), float(hi))


def _count_extreme(
    t_null: np.ndarray, observed: float, alternative: Alternative, tol: float
) -> int:
    """Number of permutation statistics at least as extreme as ``observed`` (ties included)."""
    if alternative == "greater":
        return int(np.sum(t_null >= observed - tol))
    if alternative == "less":
        return int(np.sum(t_null <= observed + tol))
    if alternative == "two-sided":
        return int(np.sum(np.abs(t_null) >= abs(observed) - tol))
    raise ValueError(f"alternative must be greater, less or two-sided, got {alternative!r}")


def _all_sign_flips(n: int) -> np.ndarray:
    """Every sign vector in {-1, +1}^n, ``(2**n, n)``; row 0 is all +1 (the observed one)."""
    bits = (np.arange(2**n)[:, None] >> np.arange(n)) & 1
    return 1 - 2 * bits


def permutation_pvalue(
    u: ArrayLike,
    c: ArrayLike,
    alternative: Alternative = "greater",
    n_perm: int = 10_000,
    seed: int = 0,
    method: Method = "auto",
) -> float:
    """Paired sign-flip permutation test of ``mean_i(u_i - c_i)`` (Fisher 1935, §21).

    Under H0 (U- and C-students exchangeable within a seed) each ``d_i = u_i - c_i`` is
    symmetric about 0, so ``T(s) = mean_i(s_i d_i)`` for every sign vector s is as likely as the
    observed ``T(1)``. "greater" tests U > C. ``auto`` enumerates all 2^n sign vectors when
    ``n <= 16``: ``p = #{s: T(s) >= T(1)} / 2**n``, which counts the observed vector, so
    ``p >= 1 / 2**n`` (``min_pvalue``). Otherwise Monte Carlo with n_perm random sign vectors and
    ``p = (count + 1) / (n_perm + 1)`` (Phipson & Smyth 2010, "Permutation p-values should
    never be zero"). Statistics equal up to float rounding count as ties (conservative).
    """
    d = _differences(u, c)
    exact = method == "exact" or (method == "auto" and d.size <= MAX_EXACT_SEEDS)
    tol = _TIE_RTOL * float(np.abs(d).max())
    observed = float(d.mean())
    if exact:
        t_null = _all_sign_flips(d.size) @ d / d.size  # (2**n,)
        return _count_extreme(t_null, observed, alternative, tol) / t_null.size
    signs = 1 - 2 * np.random.default_rng(seed).integers(0, 2, size=(n_perm, d.size))
    t_null = signs @ d / d.size  # (n_perm,)
    return (_count_extreme(t_null, observed, alternative, tol) + 1) / (n_perm + 1)


def min_pvalue(n_seeds: int, alternative: Alternative = "greater", n_perm: int = 10_000) -> float:
    """Smallest p ``permutation_pvalue`` (method "auto") can return for n paired seeds.

    Exact (n <= 16): ``1 / 2**n`` one-sided, ``2 / 2**n`` two-sided (the all-flipped vector ties
    in |T|). 3 seeds: 0.125, so alpha = 0.05 is out of reach; 5 seeds: 0.03125. Monte Carlo:
    ``1 / (n_perm + 1)``.
    """
    if n_seeds < 1:
        raise ValueError(f"n_seeds must be >= 1, got {n_seeds}")
    if n_seeds > MAX_EXACT_SEEDS:
        return 1 / (n_perm + 1)
    return (2 if alternative == "two-sided" else 1) / 2**n_seeds


def _holm_adjust(p: np.ndarray) -> np.ndarray:
    """Holm-adjusted p-values, in input order: ``p~_(i) = min(1, max_{j<=i} (m-j+1) p_(j))``."""
    order = np.argsort(p, kind="stable")
    m = p.size
    steps = (m - np.arange(m)) * p[order]  # (m - i) p_(i), 0-based i
    adjusted = np.empty(m)
    adjusted[order] = np.minimum(1.0, np.maximum.accumulate(steps))
    return adjusted


@overload
def holm(
    pvalues: Mapping[str, float], alpha: float
) -> tuple[dict[str, float], dict[str, bool]]: ...
@overload
def holm(pvalues: Sequence[float], alpha: float) -> tuple[list[float], list[bool]]: ...
def holm(
    pvalues: Mapping[str, float] | Sequence[float], alpha: float
) -> tuple[dict[str, float], dict[str, bool]] | tuple[list[float], list[bool]]:
    """Holm (1979) step-down correction: adjusted p-values and reject flags (``adj <= alpha``).

    Sort ``p_(1) <= ... <= p_(m)``; ``p~_(i) = min(1, max_{j<=i} (m-j+1) p_(j))``. Rejecting
    ``p~ <= alpha`` controls the family-wise error rate at alpha under any dependence ("A simple
    sequentially rejective multiple test procedure", Scand. J. Statist. 6:65-70). It rejects
    everything Bonferroni (``m p <= alpha``) rejects and nothing the unadjusted test would not.
    A mapping gives dicts keyed like it; a sequence gives lists in its order.
    """
    values = list(pvalues.values()) if isinstance(pvalues, Mapping) else list(pvalues)
    p = np.asarray(values, dtype=np.float64)
    if p.ndim != 1 or np.any(~((p >= 0) & (p <= 1))):
        raise ValueError(f"p-values must be a flat list of numbers in [0, 1], got {values}")
    adjusted = [float(a) for a in _holm_adjust(p)]
    reject = [a <= alpha for a in adjusted]
    if isinstance(pvalues, Mapping):
        return dict(zip(pvalues, adjusted, strict=True)), dict(zip(pvalues, reject, strict=True))
    return adjusted, reject
