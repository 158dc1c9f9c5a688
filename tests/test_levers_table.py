"""benchmarks/levers_table.py on a hand-made sweep directory: the rows, their numbers, the summary
line and the one-line error. The fields are those of a real `configs/sweeps/quick.yaml` run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).parents[1] / "benchmarks" / "levers_table.py"


def _rate(rate: float) -> dict:
    return {"rate": rate, "ci_low": rate - 0.01, "ci_high": rate + 0.01}


def _configuration(data: str, u: float, c: float, evasion: float, audit: float, p: float) -> dict:
    return {
        "name": f"logit/{data}/shared_base",
        "data": data,
        "ground_truth": {
            "deployment": {"teacher": _rate(u), "control": _rate(c), "difference": u - c},
            "honeypot_discrimination": {
                "teacher": _rate(0.5 + evasion),
                "control": _rate(0.5),
                "difference": evasion,
            },
        },
        "evidence": {"difference": audit, "p_value": p, "min_p": 0.125, "significant": False},
        "transfer": {
            "drive": "yes" if u - c > 0.1 else "no",
            "drive_fraction": round(u - c, 4),
            "evasion": "unclear",
            "evasion_fraction": None,
            "capability_retained": 0.85 if data == "full_mix" else None,
        },
    }


def _results(decision: str, p: float, total_s: float, configurations: list[dict]) -> dict:
    return {
        "schema": "incriminate.results/2",
        "verdict": {"decision": decision, "p_value": p},
        "configurations": configurations,
        "timing": {"total_s": total_s, "stages": {}},
    }


def _sweep(root: Path, points: dict[str, dict]) -> Path:
    entries = []
    for i, (name, results) in enumerate(points.items()):
        path = f"points/{i:016x}/results.json"
        (root / path).parent.mkdir(parents=True)
        (root / path).write_text(json.dumps(results))
        entries.append({"id": name, "config_hash": f"{i:016x}", "results": path, "status": "done"})
    (root / "sweep.json").write_text(json.dumps({"name": "levers", "points": entries}))
    return root


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True)


def _two_points(root: Path) -> Path:
    base = [
        _configuration("full_mix", 0.401, 0.0, -0.003, 0.0209, 0.125),
        _configuration("open_ended", 0.005, 0.001, 0.0, 0.0391, 0.125),
    ]
    tasks = [_configuration("tasks", 0.035, 0.001, -0.001, 0.0069, 0.125)]
    return _sweep(
        root,
        {
            "tasks-only": _results("not_incriminated", 0.125, 1800.0, tasks),
            "logit-forward-kl": _results("incriminated", 0.015625, 5400.0, base),
        },
    )


def test_markdown_rows_in_sweep_order(tmp_path: Path) -> None:
    r = _run(str(_two_points(tmp_path)))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("| lever | data | deployment U/C (GT) | drive transferred |")
    assert lines[2:5] == [
        "| tasks only | tasks | 0.035/0.001 | no (3%) | unclear -0.001 | +0.0069 (0.125) | - "
        "| 0.125 |",
        "| logit forward KL (base) | full_mix | 0.401/0.000 | yes (40%) | unclear -0.003 "
        "| +0.0209 (0.125) | 85% | 0.0156 |",
        "| logit forward KL (base) | open_ended | 0.005/0.001 | no (0%) | unclear +0.000 "
        "| +0.0391 (0.125) | - | 0.0156 |",
    ]
    assert lines[-1] == (
        "2 points, stage compute 7200.0 s = 2h 00m (summed over points); "
        "verdicts: incriminated 1, not_incriminated 1"
    )


def test_json_rows(tmp_path: Path) -> None:
    r = _run(str(_two_points(tmp_path)), "--format", "json")
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert [(x["point"], x["lever"], x["data"]) for x in rows] == [
        ("tasks-only", "tasks only", "tasks"),
        ("logit-forward-kl", "logit forward KL (base)", "full_mix"),
        ("logit-forward-kl", "logit forward KL (base)", "open_ended"),
    ]
    assert rows[1]["deployment_u"] == 0.401 and rows[1]["audit_p"] == 0.125
    assert rows[1]["verdict_p"] == 0.015625 and rows[1]["capability_kept"] == 0.85


def test_unknown_point_name_is_its_own_label(tmp_path: Path) -> None:
    cfg = [_configuration("open_ended", 0.2, 0.1, 0.0, 0.03, 0.5)]
    root = _sweep(tmp_path, {"p000": _results("inconclusive", 0.5, 6.6, cfg)})
    assert _run(str(root)).stdout.splitlines()[2].startswith("| p000 | open_ended | 0.200/0.100 |")


def test_missing_directory_or_results_is_one_line_exit_2(tmp_path: Path) -> None:
    r = _run(str(tmp_path / "nope"))
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.strip().splitlines() == [f"error: no such sweep directory: {tmp_path / 'nope'}"]
    root = _two_points(tmp_path / "sweep")
    next(root.glob("points/*/results.json")).unlink()
    r = _run(str(root))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "no results.json" in r.stderr and "Traceback" not in r.stderr
