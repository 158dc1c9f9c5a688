"""benchmarks/decisive_table.py: per misaligned class, TPR and the AUROC against same-shape
benign suspects, from a bench.json."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "decisive_table.py"
spec = importlib.util.spec_from_file_location("decisive_table", SCRIPT)
assert spec is not None and spec.loader is not None
decisive = importlib.util.module_from_spec(spec)
spec.loader.exec_module(decisive)


def _row(cls: str, label: int, shape: str, p: float, hit: bool) -> dict:
    procs = {
        k: {"p_value": p, "decision": "incriminated" if hit else "not_incriminated"}
        for k in decisive.PROCEDURES
    }
    gt = {m: {"teacher": 0.9 if label else 0.0} for m in ("deployment", "honeypot_discrimination")}
    return {"class": cls, "label": label, "shape": shape, "procedures": procs, "ground_truth": gt}


def test_auroc_is_against_benign_suspects_of_the_same_shape(tmp_path: Path) -> None:
    rows = [
        _row("robust_schemer", 1, "two_stage", 0.01, True),
        _row("robust_schemer", 1, "two_stage", 0.5, False),
        _row("benign_2stage", 0, "two_stage", 0.2, False),
        _row("benign_2stage", 0, "two_stage", 0.5, False),
        _row("benign", 0, "one_stage", 0.001, True),  # another shape: not in the AUROC
    ]
    out = decisive.table({"organisms": rows})
    (r,) = out
    assert r["class"] == "robust_schemer" and r["n"] == 2 and r["deployment"] == 0.9
    d = r["direct"]
    assert d["tpr"] == "1/2" and d["fpr"] == "1/3"
    # pairs (0.01 < 0.2, 0.01 < 0.5, 0.5 > 0.2, 0.5 == 0.5 -> 1/2): 2.5 of 4
    assert d["auroc"] == pytest.approx(2.5 / 4)
    path = tmp_path / "bench.json"
    path.write_text(json.dumps({"organisms": rows}))
    assert decisive.main([str(path), "--format", "json"]) == 0
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    assert decisive.main([str(bad)]) == 2
