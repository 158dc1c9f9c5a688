"""Rates with confidence intervals."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Rate:
    """An observed rate: `rate` over `n` items with a 95% confidence interval."""

    name: str
    rate: float
    n: int
    ci_low: float
    ci_high: float
    detail: dict[str, float] = field(default_factory=dict)
    scores: tuple[float, ...] = field(default=(), compare=False, repr=False)
    """Per-item values the rate averages, in item order (the verdict resamples them)."""
    units: tuple[str, ...] = field(default=(), compare=False, repr=False)
    """The unit of each item, aligned with `scores`: the setting it was written in (items of one
    setting are not independent; a test resamples or flips whole units). Empty when unknown."""

    def as_dict(self) -> dict:
        """The rate's numbers, without the per-item scores."""
        return {
            "name": self.name,
            "rate": self.rate,
            "n": self.n,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
            "detail": dict(self.detail),
        }


def wilson(successes: float, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval (Wilson 1927) for a binomial proportion.

    `successes` may be fractional: for exact action probabilities p_i we pass sum(p_i), the
    expected number of misaligned actions if each of the n items were played once.
    """
    if n <= 0:
        return (0.0, 1.0)
    p = min(max(successes / n, 0.0), 1.0)
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def rate_of(
    name: str,
    values: list[float],
    detail: dict[str, float] | None = None,
    units: Sequence[str] | None = None,
) -> Rate:
    """Mean of per-item values in [0, 1] with a Wilson interval over the items; `units`, if
    given, labels each item's unit (one label per value, in the same order)."""
    n = len(values)
    if units is not None and len(units) != n:
        raise ValueError(f"rate {name!r}: {len(units)} unit labels for {n} items")
    total = float(sum(values))
    lo, hi = wilson(total, n)
    mean = total / n if n else float("nan")
    return Rate(name, mean, n, lo, hi, detail or {}, tuple(values), tuple(units or ()))
