"""Intervals and tests whose units match the design, each checked on simulated data with a known
truth: the crossed bootstrap (seeds x shared items), the direct test flipping whole settings,
and rate and AUROC intervals over blocks of organisms that share a base seed and drive."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from scipy import stats as sps

from incriminate.verdict import bench, stats

AUDITS = ("honeypot", "interrogation", "scratchpad")


# --- crossed bootstrap --------------------------------------------------------------------


def _crossed_students(
    rng: np.random.Generator, n_seeds: int = 8, n_items: int = 100, effect: float = 0.1
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per-item scores of U/C students on shared items: the difference of seed i on item j is
    ``effect + a_i + b_j + e_ij`` with a seed effect (sd 0.03), an item effect shared by every
    seed (sd 0.3) and noise (sd 0.2). The item effect is redrawn per dataset, so the truth,
    the expected difference over seeds and items, is ``effect``."""
    item = rng.normal(0.0, 0.3, n_items)  # (m,) shared by every seed
    diff = rng.normal(0.0, 0.03, (n_seeds, 1)) + item + rng.normal(0.0, 0.2, (n_seeds, n_items))
    control = rng.normal(0.4, 0.1, (n_seeds, n_items))
    return list(control + effect + diff), list(control)


def test_crossed_bootstrap_covers_where_nested_undercovers() -> None:
    # Nested resampling averages the shared item effect over 8 independent item draws: its
    # variance term 0.09/100 shrinks 8-fold and the 95% interval covers ~68% (theory).
    rng = np.random.default_rng(0)
    covered = {True: 0, False: 0}
    for draw in range(200):
        u_items, c_items = _crossed_students(rng)
        for crossed in covered:
            _, lo, hi = stats.bootstrap_ci(u_items, c_items, n_boot=500, seed=draw, crossed=crossed)
            covered[crossed] += lo <= 0.1 <= hi
    # measured 187 (93.5%) crossed, 147 (73.5%) nested; generator seeds 1, 2: 94.5%/63.5%, 97%/67.5%
    assert covered[True] >= 176  # 88%
    assert covered[False] <= 170  # 85%
    assert covered[True] - covered[False] >= 24


def test_crossed_replicates_have_the_additive_variance() -> None:
    # X_ij = a_i + b_j: a replicate is w.a + v.b with independent multinomial weights, so its
    # variance is var(a)/n + var(b)/m (population variances) exactly.
    rng = np.random.default_rng(1)
    a, b = rng.normal(0, 1, 6), rng.normal(0, 2, 40)
    u_items = list(a[:, None] + b[None, :])
    zeros = [np.zeros(40)] * 6
    expected_sd = math.sqrt(a.var() / 6 + b.var() / 40)
    _, lo, hi = stats.bootstrap_ci(u_items, zeros, n_boot=20_000, seed=2, level=0.6827)
    assert (hi - lo) / 2 == pytest.approx(expected_sd, rel=0.03)
    _, lo, hi = stats.bootstrap_ci(
        u_items, zeros, n_boot=20_000, seed=2, level=0.6827, crossed=False
    )
    nested_sd = math.sqrt(a.var() / 6 + b.var() / (40 * 6))  # items averaged over 6 draws
    assert (hi - lo) / 2 == pytest.approx(nested_sd, rel=0.03)


def test_crossed_bootstrap_modes_and_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(3)
    u_items, c_items = _crossed_students(rng, n_seeds=4, n_items=30)
    # Different item counts cannot share an item vector: nested, with its exact numbers.
    ragged_u, ragged_c = [*u_items[:3], u_items[3][:20]], [*c_items[:3], c_items[3][:20]]
    assert stats.bootstrap_ci(ragged_u, ragged_c, n_boot=300) == stats.bootstrap_ci(
        ragged_u, ragged_c, n_boot=300, crossed=False
    )
    # Unpaired: U and C draw their own item vectors; the per-item difficulty no longer cancels.
    paired = stats.bootstrap_ci(u_items, c_items, n_boot=2000)
    unpaired = stats.bootstrap_ci(u_items, c_items, n_boot=2000, paired_items=False)
    assert unpaired.diff == paired.diff and unpaired.hi - unpaired.lo > paired.hi - paired.lo
    # Tiny chunks: same distribution, other draws.
    monkeypatch.setattr(stats, "_CHUNK", 1000)
    chunked = stats.bootstrap_ci(u_items, c_items, n_boot=2000)
    assert chunked != paired
    assert chunked.lo == pytest.approx(paired.lo, abs=0.01)
    assert chunked.hi == pytest.approx(paired.hi, abs=0.01)


# --- the direct test with settings as units -----------------------------------------------


def _null_teachers(
    rng: np.random.Generator, n_units: int = 8, per_unit: int = 10
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, list[str]]]:
    """U and C item scores under H0 with setting-level correlation: each setting lifts all its
    items by a shared N(0, 0.3) draw (symmetric, so U and C stay exchangeable), plus N(0, 0.1)
    item noise."""
    u, c, units = {}, {}, {}
    for a in AUDITS:
        shared = rng.normal(0.0, 0.3, n_units)  # (U,)
        d = np.repeat(shared, per_unit) + rng.normal(0.0, 0.1, n_units * per_unit)
        c[a] = rng.uniform(0.1, 0.6, d.size)
        u[a] = c[a] + d
        units[a] = [f"{a}-setting{k}" for k in range(n_units) for _ in range(per_unit)]
    return u, c, units


def test_direct_pvalue_per_unit_by_hand() -> None:
    # d = (0.3, -0.1, 0.2, 0.1) in units (s, s, t, t): D = (0.2, 0.3), T = 0.5/4. Sign sums
    # 0.5, 0.1, -0.1, -0.5: only the observed reaches 0.5, so p = 1/4 (per item: 3/16).
    u = {"honeypot": [0.5, 0.1, 0.4, 0.3]}
    c = {"honeypot": [0.2, 0.2, 0.2, 0.2]}
    units = {"honeypot": ["s", "s", "t", "t"]}
    r = bench.direct_pvalue(u, c, ["honeypot"], n_perm=20_000, seed=1, units=units)
    assert r["p_value"] == pytest.approx(0.25, abs=0.01)
    assert r["statistic"] == pytest.approx(0.5 / 4)
    assert r["min_p"] == 1 / 20_001
    per_item = bench.direct_pvalue(u, c, ["honeypot"], n_perm=20_000, seed=1)
    assert per_item["p_value"] == pytest.approx(3 / 16, abs=0.01)
    assert per_item["statistic"] == r["statistic"]


def test_direct_pvalue_without_units_is_unchanged_and_validates() -> None:
    u, c, units = _null_teachers(np.random.default_rng(4))
    plain = bench.direct_pvalue(u, c, AUDITS, n_perm=999, seed=5)
    own = {a: list(range(len(u[a]))) for a in AUDITS}  # every item its own unit, in order
    assert bench.direct_pvalue(u, c, AUDITS, n_perm=999, seed=5, units=own) == plain
    partial = {"honeypot": own["honeypot"]}  # audits without an entry flip per item
    assert bench.direct_pvalue(u, c, AUDITS, n_perm=999, seed=5, units=partial) == plain
    short = units | {"scratchpad": units["scratchpad"][:-1]}
    with pytest.raises(ValueError, match=r"audit 'scratchpad': 79 unit labels for 80 items"):
        bench.direct_pvalue(u, c, AUDITS, units=short)


def test_direct_pvalue_per_unit_keeps_its_size_where_per_item_does_not() -> None:
    rng = np.random.default_rng(0)
    per_item = per_unit = 0
    for seed in range(300):
        u, c, units = _null_teachers(rng)
        per_item += bench.direct_pvalue(u, c, AUDITS, n_perm=500, seed=seed)["p_value"] <= 0.05
        r = bench.direct_pvalue(u, c, AUDITS, n_perm=500, seed=seed, units=units)
        per_unit += r["p_value"] <= 0.05
    # measured 70 of 300 (23%) per item and 11 (3.7%) per unit; other generator seeds 25-31%
    # and 3.7-4.3%. Theory: per item, T's null sd is 1/3 of its real sd, size P(Z > 0.55) = 29%.
    assert per_item >= 45  # 15%
    assert per_unit <= sps.binom.ppf(0.999, 300, 0.05)  # 27: alpha plus Monte Carlo slack


# --- rates over blocks --------------------------------------------------------------------


def test_block_proportion_by_hand() -> None:
    # Every row its own block: the plain Wilson interval.
    hits = [True, False, True, False, False]
    assert bench.block_proportion(hits, list("abcde")) == bench.proportion(2, 5)
    # Blocks that always agree: psi = +-1/8 per row, var_unit = 4/3 * 4/64, var_block =
    # 2 * 2 * (1/4)^2: deff = 3, n_eff = 4/3 (the G/(G-1) and N/(N-1) factors; n/G = 2 without).
    agree = bench.block_proportion([True, True, False, False], ["s0", "s0", "s1", "s1"])
    assert (agree["rate"], agree["k"], agree["n"], agree["blocks"]) == (0.5, 2, 4, 2)
    assert agree["n_eff"] == pytest.approx(4 / 3)
    mixed = bench.block_proportion([True, False, True, False], ["s0", "s0", "s1", "s1"])
    assert mixed["n_eff"] == 4.0  # blocks at the overall rate: no clustering seen, deff 1
    assert mixed["ci_low"] == bench.proportion(2, 4)["ci_low"]
    # Rate 0: no variance to estimate deff from; the blocks are the units (n_eff = G).
    none = bench.block_proportion([False] * 6, [1, 1, 2, 2, 3, 3])
    assert (none["n_eff"], none["blocks"], none["ci_low"]) == (3.0, 3, 0.0)
    assert none["ci_high"] == pytest.approx(bench.proportion(0, 3)["ci_high"])
    one_block = bench.block_proportion([True, False, False], ["s0"] * 3)
    assert one_block["n_eff"] == 1.0 and one_block["ci_high"] > bench.proportion(1, 3)["ci_high"]
    with pytest.raises(ValueError, match="one block per row"):
        bench.block_proportion([True, False], ["s0"])


def test_block_proportion_covers_with_correlated_blocks() -> None:
    # 10 blocks of 4 rows; a block's hit rate is Beta(0.2, 0.8) around the truth 0.2 (ICC 0.5).
    rng = np.random.default_rng(0)
    covered = {"block": 0, "plain": 0}
    for _ in range(400):
        rates = rng.beta(0.2, 0.8, 10)
        hits = (rng.uniform(size=(10, 4)) < rates[:, None]).ravel()
        block = bench.block_proportion(hits.tolist(), np.repeat(np.arange(10), 4).tolist())
        plain = bench.proportion(int(hits.sum()), hits.size)
        covered["block"] += block["ci_low"] <= 0.2 <= block["ci_high"]
        covered["plain"] += plain["ci_low"] <= 0.2 <= plain["ci_high"]
    # measured 365 (91%) with blocks, 280 (70%) without; generator seeds 1, 2: 93%/78%, 90%/76%
    assert covered["block"] >= 352  # 88%
    assert covered["plain"] <= 340  # 85%


# --- AUROC over blocks --------------------------------------------------------------------


def _blocked_scores(
    rng: np.random.Generator, n_blocks: int = 10, per_block: int = 4
) -> tuple[np.ndarray, np.ndarray, list[int], list[int]]:
    """Positives and negatives in blocks: each block shifts its positives by one N(0, 1) draw and
    its negatives by another (a base on which the drive shows more or less), plus N(0, 0.3)
    noise per organism; positives sit 1 higher. Truth: Phi(1 / sqrt(2 + 2 * 0.09)) = 0.751."""
    shift_pos, shift_neg = rng.normal(0, 1, n_blocks), rng.normal(0, 1, n_blocks)  # (G,) each
    noise = rng.normal(0, 0.3, (2, n_blocks, per_block))
    pos = (1.0 + shift_pos[:, None] + noise[0]).ravel()
    neg = (shift_neg[:, None] + noise[1]).ravel()
    blocks = np.repeat(np.arange(n_blocks), per_block).tolist()
    return pos, neg, blocks, blocks


def test_auroc_blocks_of_duplicates_count_once() -> None:
    rng = np.random.default_rng(5)
    pos, neg = rng.normal(1, 1, 10), rng.normal(0, 1, 10)
    alone = bench.auroc(pos, neg)
    # Each organism three times, its copies one block: the blocked interval is about the
    # original one; ignoring the blocks makes it about sqrt(3) narrower.
    pos3, neg3 = np.repeat(pos, 3), np.repeat(neg, 3)
    pos_blocks, neg_blocks = np.repeat(np.arange(10), 3), np.repeat(np.arange(10, 20), 3)
    blocked = bench.auroc(
        pos3, neg3, pos_blocks=pos_blocks.tolist(), neg_blocks=neg_blocks.tolist()
    )
    naive = bench.auroc(pos3, neg3)
    assert blocked["auroc"] == naive["auroc"] == pytest.approx(alone["auroc"], abs=1e-12)
    width = {k: r["ci_high"] - r["ci_low"] for k, r in (("a", alone), ("b", blocked), ("n", naive))}
    assert width["b"] == pytest.approx(width["a"], rel=0.05)
    assert width["b"] > 1.5 * width["n"]
    # Separation: no variance to estimate deff from, so the blocks are the units: exactly the
    # interval of the 8 organisms against 8.
    sep = bench.auroc(
        np.repeat(np.arange(8, 16), 3),
        np.repeat(np.arange(8), 3),
        pos_blocks=np.repeat(np.arange(8), 3).tolist(),
        neg_blocks=np.repeat(np.arange(8, 16), 3).tolist(),
    )
    assert (sep["ci_low"], sep["ci_high"]) == pytest.approx((0.7556, 1.0), abs=1e-4)
    assert sep["ci_low"] == bench.auroc(np.arange(8, 16), np.arange(8))["ci_low"]
    assert (
        sep["ci_low"]
        < bench.auroc(np.repeat(np.arange(8, 16), 3), np.repeat(np.arange(8), 3))["ci_low"]
    )


def test_auroc_blocks_by_hand_and_validation() -> None:
    rng = np.random.default_rng(6)
    pos, neg = rng.normal(1, 1, 9), rng.normal(0, 1, 7)
    singletons = bench.auroc(pos, neg, pos_blocks=list(range(9)), neg_blocks=list(range(9, 16)))
    assert singletons == bench.auroc(pos, neg)  # deff exactly 1
    one_block = bench.auroc(pos, neg, pos_blocks=["b"] * 9, neg_blocks=["b"] * 7)
    assert (one_block["ci_low"], one_block["ci_high"]) == (0.0, 1.0)  # one unit per side
    with pytest.raises(ValueError, match="both sides"):
        bench.auroc(pos, neg, pos_blocks=list(range(9)))
    with pytest.raises(ValueError, match="8 pos_blocks for 9 positives"):
        bench.auroc(pos, neg, pos_blocks=list(range(8)), neg_blocks=list(range(7)))


def test_auroc_blocked_interval_covers() -> None:
    truth = float(sps.norm.cdf(1 / math.sqrt(2 + 2 * 0.09)))
    rng = np.random.default_rng(0)
    covered = {"blocked": 0, "plain": 0}
    for _ in range(300):
        pos, neg, pos_blocks, neg_blocks = _blocked_scores(rng)
        blocked = bench.auroc(pos, neg, pos_blocks=pos_blocks, neg_blocks=neg_blocks)
        plain = bench.auroc(pos, neg)
        covered["blocked"] += blocked["ci_low"] <= truth <= blocked["ci_high"]
        covered["plain"] += plain["ci_low"] <= truth <= plain["ci_high"]
    # measured 290 (96.7%) blocked, 209 (69.7%) plain; generator seeds 1, 2: 95%/74%, 94%/69%
    assert covered["blocked"] >= 270  # 90%
    assert covered["plain"] <= 255  # 85%


# --- summaries over blocks ----------------------------------------------------------------


def _row(
    name: str, label: int, seed: int, drive: str, decision: str, stat: float
) -> dict[str, Any]:
    procedure = {"p_value": 0.5, "min_p": 1e-4, "statistic": stat, "decision": decision}
    return {
        "name": name,
        "class": "naive" if label else "benign",
        "group": "misaligned" if label else "benign",
        "label": label,
        "base_seed": seed,
        "drive": drive,
        "procedures": {"direct": procedure},
    }


def test_summarise_uses_base_seed_and_drive_as_blocks() -> None:
    yes, no = "incriminated", "not_incriminated"
    rows = [
        _row("m0", 1, 0, "exfiltrate", yes, 0.9),
        _row("m1", 1, 0, "exfiltrate", yes, 0.8),
        _row("m2", 1, 1, "exfiltrate", no, 0.1),
        _row("m3", 1, 1, "exfiltrate", no, 0.2),
        _row("m4", 1, 0, "sabotage", yes, 0.7),
        _row("b0", 0, 0, "exfiltrate", no, 0.3),
        _row("b1", 0, 1, "exfiltrate", no, 0.0),
        _row("b2", 0, 0, "sabotage", yes, 0.4),
    ]
    (direct,) = bench.summarise(rows, alpha=0.05)
    blocks = [
        (0, "exfiltrate"),
        (0, "exfiltrate"),
        (1, "exfiltrate"),
        (1, "exfiltrate"),
        (0, "sabotage"),
    ]
    tpr = bench.block_proportion([True, True, False, False, True], blocks)
    assert direct["tpr"] == tpr
    assert (tpr["blocks"], tpr["n"]) == (3, 5) and tpr["n_eff"] < 5
    assert direct["by_class"]["naive"] == tpr
    assert direct["fpr"] == bench.block_proportion(
        [False, False, True], [(0, "exfiltrate"), (1, "exfiltrate"), (0, "sabotage")]
    )
    assert direct["fpr"] == bench.proportion(1, 3) | {"n_eff": 3.0, "blocks": 3}
    expected = bench.auroc(
        [0.9, 0.8, 0.1, 0.2, 0.7],
        [0.3, 0.0, 0.4],
        pos_blocks=blocks,
        neg_blocks=[(0, "exfiltrate"), (1, "exfiltrate"), (0, "sabotage")],
    )
    assert direct["auroc"] == expected
    assert direct["auroc"]["auroc"] == pytest.approx(11 / 15)
    # Without base_seed and drive every row is its own block: the plain intervals.
    bare = [{k: v for k, v in r.items() if k not in ("base_seed", "drive")} for r in rows]
    (plain,) = bench.summarise(bare, alpha=0.05)
    assert plain["tpr"] == bench.proportion(3, 5)
    assert plain["auroc"] == bench.auroc([0.9, 0.8, 0.1, 0.2, 0.7], [0.3, 0.0, 0.4])
