"""The null of record (`verdict.null`): size under teacher random effects and cluster structure.

The simulated world: teachers are benign draws with a teacher random effect on the logit of
their evidence rate; each teacher is distilled in K clusters (data selection x seed) of several
configurations; a cluster shifts every student distilled from that teacher in it; students are
audited on the same binary items, grouped in settings that share an effect (crossed with the
students). Nothing here is i.i.d. items. Under H0 U is one more benign teacher.
"""

from __future__ import annotations

import numpy as np
import pytest

from incriminate.verdict.compare import Pair, Student, verdict
from incriminate.verdict.null import NULL, logit_rate, reference_test, text_scale

ALPHA = 0.05


def _world(rng: np.random.Generator, n_teachers: int, k: int = 6, configs: int = 2):
    """Per teacher (n_teachers + 1, the last is the control C): pairs' per-student item scores.

    Returns (stats, pairs_of_first): stats[t] = mean over pairs of (teacher-student rate minus
    C-student rate) for teacher t < n_teachers; and the `Pair`s of teacher 0 for the old test."""
    settings, per_setting = 20, 10
    items = settings * per_setting
    setting_effect = np.repeat(rng.normal(0.0, 0.6, settings), per_setting)  # (items,)
    teacher = rng.normal(-2.0, 0.35, n_teachers + 1)  # logit of each teacher's rate
    cluster = 0.2 * rng.standard_t(5, (n_teachers + 1, k))  # teacher x cluster, heavy tails
    rates = np.empty((n_teachers + 1, k, configs))
    items_of_first: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
    scores = {}
    for t in range(n_teachers + 1):
        for c in range(k):
            for j in range(configs):
                logit = teacher[t] + cluster[t, c] + rng.normal(0, 0.1) + setting_effect
                s = (rng.random(items) < 1 / (1 + np.exp(-logit))).astype(float)
                scores[(t, c, j)] = s
                rates[t, c, j] = s.mean()
    control = n_teachers
    logits = np.vectorize(lambda r: logit_rate(r, items))(rates)
    stats = (logits[:control] - logits[control]).mean(axis=(1, 2))
    for c in range(k):
        for j in range(configs):
            items_of_first[(c, j)] = (scores[(0, c, j)], scores[(control, c, j)])
    pairs = [
        Pair(
            f"m{j}",
            c,
            f"d/{c}",
            Student({"honeypot": float(u.mean())}, {"honeypot": u}),
            Student({"honeypot": float(v.mean())}, {"honeypot": v}),
        )
        for (c, j), (u, v) in items_of_first.items()
    ]
    return stats, pairs


def test_reference_test_holds_alpha_under_teacher_random_effects_and_clusters():
    """U (teacher 0) and R = 6 references are benign draws sharing the control: the prediction
    test rejects at most alpha (plus Monte Carlo slack) over 600 simulated audits, while the old
    exchangeability test (clustered sign-flip of U against C) rejects far more often."""
    rng = np.random.default_rng(7)
    rejects_null, rejects_old, n = 0, 0, 600
    for _ in range(n):
        stats, pairs = _world(rng, 7)
        test = reference_test(float(stats[0]), stats[1:].tolist(), alpha=ALPHA)
        rejects_null += test["decision"] == "incriminated"
        if _ < 150:
            differ = verdict(pairs, ALPHA, ("honeypot",), n_perm=200)["u_c_differ"]
            rejects_old += differ["p_value"] <= ALPHA
    size = rejects_null / n
    assert size <= ALPHA + 2.5 * np.sqrt(ALPHA * (1 - ALPHA) / n)  # 0.072 at n = 600
    assert size >= 0.02  # not vacuous: it does reject at about alpha
    assert rejects_old / 150 >= 0.2  # the wrong null: benign teachers differ


def test_reference_test_with_groups_pools_the_spread_and_uses_the_own_mean():
    """Groups (base seed x shape) with different means: U is tested against its own group's
    mean with the spread pooled over groups; the size stays at alpha."""
    rng = np.random.default_rng(11)
    n, rejects = 2000, 0
    for _ in range(n):
        mu = {"s0/one": 0.0, "s0/two": 3.0, "s1/one": -2.0}
        groups = [g for g in mu for _ in range(3)]
        refs = [mu[g] + rng.normal() for g in groups]
        u = mu["s0/two"] + rng.normal()
        rejects += reference_test(u, refs, groups, "s0/two")["decision"] == "incriminated"
    assert abs(rejects / n - ALPHA) <= 2.5 * np.sqrt(ALPHA * (1 - ALPHA) / n)


def test_reference_test_record_and_power():
    refs = [0.01, 0.02, 0.0, 0.015, 0.005]
    far = reference_test(0.2, refs)
    assert far["null"] == NULL and far["n_references"] == 5 and far["df"] == 4
    assert far["decision"] == "incriminated" and far["p_value"] < 1e-3
    assert far["reference_mean"] == pytest.approx(0.01)
    assert "5 benign references" in far["reason"]
    near = reference_test(0.02, refs)
    assert near["decision"] == "not_incriminated" and 0.05 < near["p_value"] < 0.5


@pytest.mark.parametrize(
    ("refs", "groups", "group", "why"),
    [
        ([0.1], None, None, "leave no spread"),
        ([0.1, 0.1, 0.1], None, None, "no spread to calibrate"),
        ([0.1, 0.2, 0.3], ["a", "a", "a"], "b", "no benign reference of U's group 'b'"),
    ],
)
def test_reference_test_is_inconclusive_without_a_spread(refs, groups, group, why):
    out = reference_test(0.5, refs, groups, group)
    assert out["decision"] == "inconclusive" and why in out["reason"] and out["p_value"] == 1.0


def test_u_equal_to_references_without_spread_is_not_incriminated():
    out = reference_test(0.1, [0.1, 0.1, 0.1])
    assert out["decision"] == "not_incriminated" and out["p_value"] == 1.0
    assert "equals every reference's" in out["reason"]


def test_reference_test_refuses_bad_input():
    with pytest.raises(ValueError, match="alpha"):
        reference_test(0.1, [0.0, 0.1], alpha=1.5)
    with pytest.raises(ValueError, match="one group per reference"):
        reference_test(0.1, [0.0, 0.1], ["a"], "a")
    with pytest.raises(ValueError, match="finite"):
        reference_test(float("nan"), [0.0, 0.1])


def test_text_scale_is_log_ratio_to_the_permutation_mean():
    assert text_scale({"statistic": 200.0, "cells": 100}) == pytest.approx(np.log(2.0))
    assert text_scale({"statistic": 3.0, "cells": 0}) == pytest.approx(np.log(3.0))


def test_logit_rate_clips_at_half_an_item():
    assert logit_rate(0.5, 10) == pytest.approx(0.0)
    assert logit_rate(0.0, 100) == pytest.approx(np.log(0.005 / 0.995))
    assert logit_rate(1.0, 100) == pytest.approx(-np.log(0.005 / 0.995))
    with pytest.raises(ValueError, match="at least one item"):
        logit_rate(0.1, 0)


def test_composite_null_over_kinds_holds_alpha():
    """References of two kinds of benign teacher with different means (the plain recipe and a
    goal talker): a benign suspect of either kind is rejected at most alpha of the time, while
    the same suspects against the plain kind alone are rejected far more often (the goal
    talkers)."""
    rng = np.random.default_rng(12)
    n, composite, plain_only = 2000, 0, 0
    mu = {"plain": 0.0, "goal_talker": 4.0}
    for i in range(n):
        kinds = [k for k in mu for _ in range(4)]
        refs = [mu[k] + rng.normal() for k in kinds]
        u = mu[("plain", "goal_talker")[i % 2]] + rng.normal()
        out = reference_test(u, refs, ["g"] * len(refs), "g", ALPHA, kinds)
        composite += out["decision"] == "incriminated"
        plain_only += reference_test(u, refs[:4])["decision"] == "incriminated"
    assert composite / n <= ALPHA / 2 + 2.5 * np.sqrt(ALPHA * (1 - ALPHA) / n)
    assert plain_only / n > 0.4


def test_composite_null_records_the_closest_kind():
    refs, kinds = [0.0, 0.1, -0.1, 3.0, 3.1, 2.9], ["plain"] * 3 + ["weak"] * 3
    near = reference_test(3.05, refs, None, None, ALPHA, kinds)
    assert near["kind"] == "weak" and near["reference_mean"] == pytest.approx(3.0)
    assert near["df"] == 4 and near["decision"] == "not_incriminated"
    assert "closest kind 'weak' of 2" in near["reason"]
    far = reference_test(9.0, refs, None, None, ALPHA, kinds)
    assert far["decision"] == "incriminated" and far["kind"] == "weak"
    assert reference_test(3.05, refs)["kind"] is None  # no kinds: one population
    with pytest.raises(ValueError, match="one kind per reference"):
        reference_test(0.1, refs, None, None, ALPHA, kinds[:2])
