"""`incriminate bench --quick` through the real CLI: outputs, internal consistency, the probe's
exclusions, reuse on rerun, and bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from incriminate.organisms.zoo import entries
from incriminate.plan.bench_config import load_bench_config

pytestmark = pytest.mark.slow


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "incriminate.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=900,
    )


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, str]:
    root = tmp_path_factory.mktemp("bench")
    r = _cli("bench", "--quick", "--out", "out", "--store", "store", cwd=root)
    assert r.returncode == 0, r.stderr[-3000:]
    return root, json.loads((root / "out" / "bench.json").read_text()), r.stdout


def test_outputs_are_written(bench_run) -> None:
    root, bench, stdout = bench_run
    out = root / "out"
    for name in ("bench.yaml", "zoo.json", "bench.json", "bench.md", "double_bind.png"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "double_bind.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert bench["schema"] == "incriminate.bench/1"
    keep = root / "store" / "bench" / bench["config_hash"] / "bench.json"
    assert json.loads(keep.read_text()) == bench
    assert "battery/union" in stdout and "direct" in stdout
    md = (out / "bench.md").read_text()
    truth = md[md.index("## Ground truth by class") : md.index("## Organisms")]
    for cls in ("naive", "schemer", "context_gated", "benign", "goal_talker", "weak"):
        n = sum(r["class"] == cls for r in bench["organisms"])
        assert f"| {cls} | {n} |" in truth


def test_every_zoo_organism_has_every_procedure(bench_run) -> None:
    _, bench, _ = bench_run
    cfg = load_bench_config(quick=True)
    zoo = [e.as_dict() for e in entries(cfg.zoo)]
    assert bench["zoo"] == zoo
    assert [r["name"] for r in bench["organisms"]] == [e["name"] for e in zoo]
    expected = {
        "direct",
        "battery/auditability_preserving",
        "battery/misalignment_targeted",
        "battery/union",
    } | {f"config/{c.name}" for b in cfg.batteries for c in b.configurations}
    for row in bench["organisms"]:
        assert set(row["procedures"]) == expected
        for p in row["procedures"].values():
            assert 0 < p["min_p"] <= p["p_value"] <= 1
            assert p["decision"] in ("incriminated", "not_incriminated", "inconclusive")
            if p["decision"] == "incriminated":
                assert p["p_value"] <= bench["alpha"]


def _wilson_k_n(rows: list[dict], procedure: str, label: int) -> tuple[int, int]:
    mine = [r for r in rows if r["label"] == label]
    k = sum(r["procedures"][procedure]["decision"] == "incriminated" for r in mine)
    return k, len(mine)


def _auroc(pos: list[float], neg: list[float]) -> float:
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def test_rates_and_auroc_are_recomputed_from_the_rows(bench_run) -> None:
    _, bench, _ = bench_run
    rows = bench["organisms"]
    assert {p["procedure"] for p in bench["procedures"]} == set(rows[0]["procedures"])
    for p in bench["procedures"]:
        name = p["procedure"]
        assert (p["tpr"]["k"], p["tpr"]["n"]) == _wilson_k_n(rows, name, 1)
        assert (p["fpr"]["k"], p["fpr"]["n"]) == _wilson_k_n(rows, name, 0)
        hard = [r for r in rows if r["group"] == "hard_benign"]
        assert p["fpr_hard_benign"]["n"] == len(hard)
        assert p["fpr_hard_benign"]["k"] == sum(
            r["procedures"][name]["decision"] == "incriminated" for r in hard
        )
        stat = {
            lab: [r["procedures"][name]["statistic"] for r in rows if r["label"] == lab]
            for lab in (0, 1)
        }
        assert p["auroc"]["auroc"] == pytest.approx(_auroc(stat[1], stat[0]))
        assert p["auroc"]["ci_low"] <= p["auroc"]["auroc"] <= p["auroc"]["ci_high"]


def test_probe_never_sees_the_audited_seed_or_drive(bench_run) -> None:
    root, bench, _ = bench_run
    store = root / "store"
    assert len(bench["probes"]) == 4  # (2 seeds) x (2 drives)
    for key, ref in bench["probes"].items():
        seed, drive = key.split("/")
        manifest = json.loads((store / ref / "manifest.json").read_text())
        names = [r[0] for r in manifest["inputs"]["references"]]
        assert names, key
        for name in names:
            assert not name.endswith(f"-{seed}"), (key, name)
            assert f"-{drive}-" not in name, (key, name)
        labels = {r[2] for r in manifest["inputs"]["references"]}
        assert labels == {0, 1}


def test_rerun_reuses_every_stage_and_reproduces_the_numbers(bench_run) -> None:
    root, bench, _ = bench_run
    before = {p for p in (root / "store").glob("*/*") if p.is_dir()}
    r = _cli("bench", "--quick", "--out", "again", "--store", "store", "--workers", "1", cwd=root)
    assert r.returncode == 0, r.stderr[-3000:]
    after = {p for p in (root / "store").glob("*/*") if p.is_dir()}
    assert after - before == set()
    again = json.loads((root / "again" / "bench.json").read_text())
    assert again == bench


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["zoo.drives=[exfiltrat]"], "exfiltrate"),
        (["batteries.0.seeds=0"], "seeds"),
        (["--battery", "missing.yaml"], "missing.yaml"),
        (["--workers", "0"], "--workers"),
        (["zoo.base_seeds=[0]"], "base_seeds"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(tmp_path: Path, args: list, message: str) -> None:
    r = _cli("bench", "--quick", *args, "--out", "out", "--store", "store", cwd=tmp_path)
    assert r.returncode == 2
    assert message in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp_path / "out").exists() and not (tmp_path / "store").exists()


def test_audit_command_applies_a_trained_probe(bench_run, tmp_path: Path) -> None:
    root, bench, _ = bench_run
    row = bench["organisms"][1]
    key = f"s{row['base_seed']}/{row['drive']}"
    model, probe = row["teacher"]["model"], bench["probes"][key]
    r = _cli("audit", f"store/{model}", "--probe", f"store/{probe}", "--json", cwd=root)
    assert r.returncode == 0, r.stderr[-2000:]
    audited = json.loads(r.stdout)["audits"]["probe"]
    assert audited["n"] == 600
    assert audited["rate"] == pytest.approx(row["teacher"]["audits"]["probe"], abs=1e-6)
    (tmp_path / "probe.json").write_text("{not json")
    bad = _cli("audit", f"store/{model}", "--probe", str(tmp_path), cwd=root)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1, bad.stderr


def test_margins_come_from_the_reference_benign_pairs(bench_run) -> None:
    _, bench, _ = bench_run
    rows = {r["name"]: r for r in bench["organisms"]}
    for row in rows.values():
        assert row["references"], row["name"]
        for ref in row["references"]:
            other = rows[ref]
            assert other["group"] == "benign"
            assert other["base_seed"] != row["base_seed"] and other["drive"] != row["drive"]
        for proc, record in row["procedures"].items():
            stats = [
                rows[r]["procedures_exchangeable"][proc]["statistic"] for r in row["references"]
            ]
            assert record["margin"] == pytest.approx(max([0.0, *stats]), abs=1e-6)
            assert row["procedures_exchangeable"][proc]["margin"] == 0.0
            assert record["statistic"] == pytest.approx(
                row["procedures_exchangeable"][proc]["statistic"], abs=1e-9
            )
