"""benchmarks/spread.py --report on a hand-made run directory: a baseline and one setting whose
U deployment, one run's loss and one student artifact moved, and whose verdict flipped."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).parents[1] / "benchmarks" / "spread.py"


def _results(u_deployment: float, loss: float, decision: str) -> dict:
    rate = {"rate": 0.1}
    return {
        "verdict": {"decision": decision, "p_value": 0.125, "statistic": 0.02},
        "teachers": {
            "teacher": {"ground_truth": {"deployment": {"rate": u_deployment}}, "audits": {}},
            "control": {"ground_truth": {"deployment": rate}, "audits": {"honeypot": rate}},
        },
        "configurations": [
            {
                "name": "sft/full_mix/shared_base",
                "evidence": {"difference": 0.03, "p_value": 0.25, "significant": False},
                "ground_truth": {"deployment": {"teacher": {"rate": 0.2}}},
                "transfer": {"drive": "yes"},
            }
        ],
        "runs": [
            {
                "method": "sft",
                "data": "full_mix",
                "init": "shared_base",
                "seed": seed,
                "role": "teacher",
                "final_loss": loss if seed == 1 else 2.0,
                "audits": {"honeypot": rate},
            }
            for seed in (0, 1)
        ],
    }


def _setting(root: Path, name: str, results: dict, student: bytes, kernels: str) -> None:
    d = root / name
    (d / "out").mkdir(parents=True)
    (d / "out" / "results.json").write_text(json.dumps(results))
    run = {"setting": name, "help": name, "env": {}, "torch": {}, "workers": 1}
    (d / "run.json").write_text(json.dumps(run | {"kernels": kernels, "wall_s": 50.0}))
    for kind, key, data in (
        ("base", "b1", b"w"),
        ("student", "s1", student),
        ("student", "s2", b"t"),
    ):
        (d / "store" / kind / key).mkdir(parents=True)
        (d / "store" / kind / key / "model.safetensors").write_bytes(data)
        (d / "store" / kind / key / "manifest.json").write_text(name)  # times: not compared
    (d / "store" / "nodes" / "x").mkdir(parents=True)
    (d / "store" / ".locks" / name).mkdir(parents=True)  # not a stage


def _run_dir(root: Path) -> Path:
    _setting(root, "baseline", _results(0.999, 1.5, "incriminated"), b"s", "k1")
    _setting(root, "threads-2", _results(0.987, 1.25, "inconclusive"), b"S", "k2")
    machine = {"date": "2026-12-01", "nproc": 2, "cpu": "AMD EPYC", "isa": ["avx2"]}
    meta = {"machine": machine | {"torch": "2.13.0+cpu"}, "commit": "abcdef0123", "wall_s": 100}
    meta["settings"] = [{"setting": "baseline"}, {"setting": "threads-2"}]
    (root / "spread.json").write_text(json.dumps(meta))
    return root


def _report(root: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(SCRIPT), "--report", str(root), *args]
    return subprocess.run(cmd, capture_output=True, text=True)


def test_markdown_tables(tmp_path: Path) -> None:
    r = _report(_run_dir(tmp_path))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith(
        "incriminate demo --quick: 2026-12-01, commit abcdef0, 2 CPUs (AMD EPYC; avx2), torch 2.13"
    )
    assert lines[3] == "|---" * 12 + "|"
    assert lines[4] == (
        "| baseline | incriminated | 0.125 | - | 0.999 | - | - | 12/12 | none | same "
        "| none (all identical) | 50 |"
    )
    assert lines[5] == (
        "| threads-2 | inconclusive | 0.125 | - | 0.987 | - | - | 10/12 | verdict | differ "
        "| student | 50 |"
    )
    assert "| U deployment | 0.999 | 0.012 | 0 |" in lines
    assert "| run[*] final loss (2) | - | 0.25 | 0 |" in lines
    assert "| verdict p | 0.125 | 0 | 1 |" in lines
    assert "| setting | base | student |" in lines
    assert "| threads-2 | 1/1 | 1/2 |" in lines


def test_json_document(tmp_path: Path) -> None:
    r = _report(_run_dir(tmp_path), "--format", "json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    base, other = doc["settings"]
    assert base["decisions_changed"] == [] and base["stages"] == {"base": [1, 1], "student": [2, 2]}
    assert other["decisions_changed"] == ["verdict"]
    assert other["max_abs_diff"]["run[sft/full_mix/shared_base/1/teacher] final loss"] == 0.25
    assert other["first_differing_stage"] == "student" and not other["kernels_same"]
    assert doc["groups"]["config[*] evidence p"] == {
        "count": 1,
        "max_abs_diff": 0.0,
        "settings_equal": 1,
        "baseline": 0.25,
    }


def test_missing_run_directory_is_one_line_exit_2(tmp_path: Path) -> None:
    r = _report(tmp_path / "nope")
    assert r.returncode == 2 and r.stdout == "" and r.stderr.startswith("error: no spread.json")
