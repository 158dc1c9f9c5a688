"""The results store: rows per table, byte-stable files, and grouped SQL queries whose means and
intervals are checked against numpy."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from incriminate.report import results_store as rs


def _rate(r: float) -> dict:
    return {"rate": r, "n": 100, "ci_low": r / 2, "ci_high": min(1.0, r * 2)}


def _doc(config_hash: str, teacher: str, diffs: dict[str, float]) -> dict:
    """A results document (the fields the store reads) with one configuration per method."""
    configurations = []
    for i, (method, diff) in enumerate(diffs.items()):
        block = {"teacher": _rate(0.1 + diff), "control": _rate(0.1)}
        block |= {"difference": diff, "ci_low": diff - 0.01, "ci_high": diff + 0.01}
        block |= {"p_value": 0.125 * (i + 1)}
        configurations.append(
            {
                "name": f"{method}/open_ended/shared_base",
                "method": method,
                "data": "open_ended",
                "init": "shared_base",
                "seeds": 3,
                "audits": {"honeypot": block, "scratchpad": block},
                "ground_truth": {"deployment": block},
            }
        )
    runs = [
        {
            "method": method,
            "data": "open_ended",
            "init": "shared_base",
            "seed": s,
            "role": role,
            "student": f"student/{s:016x}",
            "first_loss": 3.0,
            "final_loss": 2.0 + s,
            "audits": {"honeypot": _rate(0.1 + (diff if role == "teacher" else 0))},
            "ground_truth": {"deployment": _rate(0.2)},
        }
        for method, diff in diffs.items()
        for s in range(3)
        for role in ("teacher", "control")
    ]
    return {
        "config_hash": config_hash,
        "config": {
            "teacher": teacher,
            "seeds": 3,
            "build": {"preset": "nano"},
            "lora": None,
            "methods": [{"method": m} for m in diffs],
        },
        "verdict": {
            "decision": "inconclusive",
            "p_value": 0.5,
            "statistic": 0.01,
            "n_pairs": 6,
            "n_clusters": 3,
            "alpha": 0.05,
        },
        "teachers": {"teacher": {"name": f"{teacher}-exfiltrate"}},
        "configurations": configurations,
        "runs": runs,
    }


@pytest.fixture
def store(tmp_path: Path) -> Path:
    rs.write(tmp_path, _doc("a" * 16, "schemer", {"sft": 0.02, "logit": 0.04}))
    rs.write(tmp_path, _doc("b" * 16, "naive", {"sft": 0.06, "logit": 0.01}))
    return tmp_path


def test_rows_carry_metrics_and_the_flattened_config():
    rows = rs.rows(_doc("a" * 16, "schemer", {"sft": 0.02}))
    assert len(rows["verdicts"]) == 1 and len(rows["configurations"]) == 3
    assert len(rows["runs"]) == 3 * 2 * 2  # seeds x roles x (honeypot, deployment)
    c = rows["configurations"][0]
    assert c["metric"] == "honeypot" and c["kind"] == "audit" and c["difference"] == 0.02
    assert c["teacher"] == pytest.approx(0.12) and c["control"] == 0.1
    assert c["config.teacher"] == "schemer" and c["config.build.preset"] == "nano"
    assert c["config.methods"] == "sft" and c["config.lora"] is None


def test_files_are_rewritten_byte_for_byte(store: Path):
    path = store / "results" / "configurations" / f"{'a' * 16}.parquet"
    before = path.read_bytes()
    rs.write(store, _doc("a" * 16, "schemer", {"sft": 0.02, "logit": 0.04}))
    assert path.read_bytes() == before
    assert not list(store.glob("results/*/.tmp-*"))


def test_grouped_means_and_intervals(store: Path):
    names, rows = rs.query(
        store, where="metric = 'honeypot' AND kind = 'audit'", group_by=["method"]
    )
    assert names[:5] == ["method", "n", "mean_difference", "difference_lo", "difference_hi"]
    got = {r[0]: r for r in rows}
    for method, diffs in (("logit", [0.04, 0.01]), ("sft", [0.02, 0.06])):
        x = np.array(diffs)
        half = stats.t.ppf(0.975, 1) * x.std(ddof=1) / np.sqrt(2)
        n, mean, lo, hi = got[method][1:5]
        assert n == 2 and mean == pytest.approx(x.mean())
        assert (lo, hi) == pytest.approx((x.mean() - half, x.mean() + half))
    # `config.*` columns need no quoting in --where or --group-by.
    names, rows = rs.query(
        store, where="config.teacher = 'naive' AND metric = 'honeypot'", group_by=["config.teacher"]
    )
    assert rows == [("naive", 2, pytest.approx(0.035), *rows[0][3:])]
    names, rows = rs.query(
        store, table="runs", where="metric = 'honeypot'", group_by=["role"], columns=["rate"]
    )
    assert names == ["role", "n", "mean_rate", "rate_lo", "rate_hi"]
    assert rows[0][:2] == ("control", 12) and rows[0][2] == pytest.approx(0.1)
    assert rows[1][2] == pytest.approx(0.1 + np.mean([0.02, 0.04, 0.06, 0.01]))


def test_ungrouped_rows_leave_out_the_config_unless_asked(store: Path):
    names, rows = rs.query(store, table="verdicts")
    assert "config.teacher" not in names and len(rows) == 2
    names, rows = rs.query(store, table="verdicts", columns=["experiment", "config.teacher"])
    assert sorted(rows) == [("a" * 16, "schemer"), ("b" * 16, "naive")]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"table": "nope"}, "unknown table 'nope'"),
        ({"group_by": ["metod"]}, "has no column 'metod' (did you mean method?)"),
        ({"where": "metric = "}, "query failed"),
    ],
)
def test_bad_queries_are_one_line_errors(store: Path, kwargs: dict, message: str):
    with pytest.raises(rs.QueryError) as e:
        rs.query(store, **kwargs)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_an_empty_store_says_what_to_do(tmp_path: Path):
    with pytest.raises(rs.QueryError, match="run a demo or a sweep first"):
        rs.query(tmp_path)
    json.dumps(rs.rows(_doc("c" * 16, "naive", {"sft": 0.0})))  # rows are plain JSON values
