"""benchmarks/pipeline.py --report on hand-made run directories (two runs a side): per-kind
compute from the stores' node records, medians, ratios, the first path where results.json
parts, and the artifacts compared by key. A real side-by-side run of the quick demo is the
slow test at the end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[1] / "benchmarks" / "pipeline.py"
ROOT = Path(__file__).parents[1]


def _results(p: float) -> dict:
    return {
        "schema": "incriminate.results/3",
        "verdict": {"decision": "incriminated", "p_value": p},
        "runs": [{"seed": 0, "final_loss": 1.5}],
        "timing": {"total_s": 99.0},  # differs between runs: never compared
    }


def _run(root: Path, name: str, wall: float, walls: dict[str, float], p: float, student: bytes):
    d = root / name
    (d / "out").mkdir(parents=True)
    (d / "out" / "results.json").write_text(json.dumps(_results(p) | {"timing": {"s": wall}}))
    (d / "run.json").write_text(json.dumps({"side": name.split("-")[0], "wall_s": wall}))
    nodes = d / "store" / "nodes"
    nodes.mkdir(parents=True)
    for i, (kind, w) in enumerate(walls.items()):
        record = {"task": kind, "kind": kind, "result": None, "wall_s": w}
        (nodes / f"{kind}{i}.json").write_text(json.dumps(record))
    for kind, key, data in (("instruct", "i1", b"w"), ("student", "s1", student)):
        (d / "store" / kind / key).mkdir(parents=True)
        (d / "store" / kind / key / "model.safetensors").write_bytes(data)
        (d / "store" / kind / key / "manifest.json").write_text(name)  # times: not compared


def _dirs(root: Path, head_p: float = 0.01, head_student: bytes = b"s") -> Path:
    _run(root, "base-0", 100.0, {"instruct": 40.0, "student": 80.0}, 0.01, b"s")
    _run(root, "base-1", 110.0, {"instruct": 44.0, "student": 84.0}, 0.01, b"s")
    _run(root, "head-0", 50.0, {"instruct": 40.0, "student": 20.0}, head_p, head_student)
    _run(root, "head-1", 54.0, {"instruct": 42.0, "student": 22.0}, head_p, head_student)
    machine = {"date": "2026-12-02", "nproc": 2, "cpu": "AMD EPYC", "torch": "2.13.0+cpu"}
    meta = {"machine": machine, "demo": "incriminate demo", "workers": 2, "wall_s": 314.0}
    meta |= {"base": "80f51ce1468b", "head": "0fdff61aaaaa"}
    (root / "pipeline.json").write_text(json.dumps(meta))
    return root


def _report(root: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(SCRIPT), "--report", str(root), *args]
    return subprocess.run(cmd, capture_output=True, text=True)


def test_json_document(tmp_path: Path) -> None:
    r = _report(_dirs(tmp_path), "--format", "json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    base, head = doc["sides"]["base"], doc["sides"]["head"]
    assert base["compute_s"] == [120.0, 128.0] and head["compute_s"] == [60.0, 64.0]
    assert base["compute_median_s"] == 124.0 and head["compute_median_s"] == 62.0
    assert doc["compute_ratio"] == 2.0
    assert doc["wall_ratio"] == pytest.approx(105 / 52, abs=1e-3)
    assert base["kinds"]["student"] == {"stages": 1, "compute_s": 82.0}
    assert doc["kind_ratio"] == {"instruct": pytest.approx(42 / 41, abs=1e-3), "student": 3.905}
    assert doc["results_differ_at"] is None  # timing differs, and is left out
    assert doc["artifacts"] == {"instruct": [1, 1], "student": [1, 1]}


def test_a_difference_is_named_by_its_path(tmp_path: Path) -> None:
    r = _report(_dirs(tmp_path, head_p=0.02, head_student=b"S"), "--format", "json")
    doc = json.loads(r.stdout)
    assert doc["results_differ_at"] == ".verdict.p_value (0.01 vs 0.02)"
    assert doc["artifacts"] == {"instruct": [1, 1], "student": [0, 1]}


def test_markdown_table(tmp_path: Path) -> None:
    r = _report(_dirs(tmp_path))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == (
        "incriminate demo (2 workers): base 80f51ce, head 0fdff61; 2026-12-02, 2 CPUs "
        "(AMD EPYC), torch 2.13.0+cpu, 314 s in all"
    )
    assert "| student | 1 | 82.0 | 21.0 | 3.90 |" in lines
    assert "| **all stages** | | 124.0 | 62.0 | **2.00** |" in lines
    assert "| **wall** (demo process) | | 105.0 | 52.0 | **2.02** |" in lines
    assert "results.json (timing aside): identical; verdicts incriminated (base), " in r.stdout
    assert "by kind: instruct 1/1, student 1/1" in r.stdout


def test_bad_input_is_one_line_exit_2(tmp_path: Path) -> None:
    r = _report(tmp_path / "nope")
    assert r.returncode == 2 and r.stdout == "" and r.stderr.startswith("error: no pipeline.json")
    cmd = [sys.executable, str(SCRIPT), "--base", "no-such-ref", "--quick", "--out", str(tmp_path)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode != 0 and r.stderr.strip().splitlines() == [
        f"error: 'no-such-ref' is not a commit of {ROOT} (a shallow clone?)"
    ]


@pytest.mark.slow
def test_the_quick_demo_through_the_same_commit_twice_is_identical(tmp_path: Path) -> None:
    """The real thing, both sides at HEAD: every artifact and results.json must be identical
    (the pipeline is bit-deterministic), which is what lets a ratio be read as speed alone."""
    cmd = [sys.executable, str(SCRIPT), "--quick", "--base", "HEAD", "--format", "json"]
    r = subprocess.run([*cmd, "--out", str(tmp_path / "run")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    doc = json.loads(r.stdout)
    assert doc["base"] == doc["head"]
    assert doc["results_differ_at"] is None
    assert all(same == total for same, total in doc["artifacts"].values())
    assert doc["sides"]["base"]["kinds"].keys() == doc["sides"]["head"]["kinds"].keys()
    assert doc["artifacts"]["student"][1] > 0 and doc["compute_ratio"] > 0
