"""End to end through the real CLI: `incriminate demo --quick` builds tiny organisms, runs the
paired grid, writes results.json, report.md and config.yaml, and a rerun is byte-identical.

The quick grid's numbers mean nothing about the science (its organisms train for seconds); this
checks structure and consistency: every number in the report comes from the runs.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from incriminate.cli.main import app
from incriminate.plan.config import load_config
from incriminate.verdict.null import reference_test

runner = CliRunner()


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("demo")
    args = ["demo", "--quick", "--out", str(root / "out"), "--store", str(root / "store")]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return root, args, result.output


def test_quick_demo_writes_results_report_and_config(quick):
    root, _, output = quick
    out = root / "out"
    results = json.loads((out / "results.json").read_text())
    cfg = load_config(quick=True)
    assert results["schema"] == "incriminate.results/3"
    assert results["config_hash"] == cfg.config_hash()
    assert load_config(out / "config.yaml") == cfg
    v = results["verdict"]
    # The null of record: U's statistic against the references the auditor built.
    refs = results["references"]
    assert [r["role"] for r in refs] == ["reference1", "reference2"]
    assert v["null"] == "benign_references" and v["n_references"] == 2 and v["df"] == 1
    test = reference_test(v["statistic"], [r["evidence_statistic"] for r in refs])
    assert (v["decision"], v["p_value"]) == (test["decision"], pytest.approx(test["p_value"]))
    assert v["alpha"] == 0.05 and len({r["model"] for r in refs}) == 2
    assert all(r["model"] not in (results["teachers"][x]["model"] for x in ("teacher", "control"))
               for r in refs)  # fmt: skip
    # "U and C differ" alone: 2 data selections x 2 seeds = 4 clusters, floor 1/16 > 0.05.
    assert v["n_clusters"] == 4 and v["u_c_differ"]["min_p"] == pytest.approx(1 / 16)
    direct = results["direct"]
    assert direct["null"] == "benign_references" and direct["n_references"] == 2
    for part in direct["parts"].values():
        assert part["null"] == "benign_references" and "u_c_differ" in part
    assert set(results["teachers"]) == {"teacher", "control"}
    for t in results["teachers"].values():
        for block in ("audits", "ground_truth"):
            for r in t[block].values():
                assert set(r) == {"rate", "n", "ci_low", "ci_high"}
                assert r["ci_low"] <= r["rate"] <= r["ci_high"] and r["n"] > 0
    assert len(results["configurations"]) == 8 and len(results["runs"]) == 32
    assert set(results["timing"]["stages"]) == {
        "organisms_s",
        "teacher_caches_s",
        "distillation_s",
        "evaluation_s",
    }
    assert results["timing"]["total_s"] > 0
    assert f"verdict: {v['decision']}" in output
    kept = root / "store" / "experiment" / results["config_hash"]
    for name in ("results.json", "report.md", "config.yaml"):
        assert (kept / name).read_bytes() == (out / name).read_bytes()


def test_configuration_numbers_come_from_the_runs(quick):
    root, _, _ = quick
    results = json.loads((root / "out" / "results.json").read_text())
    for c in results["configurations"]:
        runs = [
            r
            for r in results["runs"]
            if (r["method"], r["data"], r["init"]) == (c["method"], c["data"], c["init"])
        ]
        assert len(runs) == 4 and c["seeds"] == [0, 1]
        for audit, a in c["audits"].items():
            for role in ("teacher", "control"):
                rates = [r["audits"][audit]["rate"] for r in runs if r["role"] == role]
                assert a[role]["rate"] == pytest.approx(np.mean(rates), abs=1e-6)
            assert a["difference"] == pytest.approx(
                a["teacher"]["rate"] - a["control"]["rate"], abs=1e-6
            )
            assert a["ci_low"] <= a["difference"] + 1e-9 and a["difference"] <= a["ci_high"] + 1e-9
            assert a["min_p"] == 0.25 and a["min_p"] <= a["p_value"] <= 1
        ev = c["evidence"]
        assert ev["p_adjusted"] >= ev["p_value"] and ev["significant"] is False
        # U- and C-students of a pair share the cache's prompts, init and seed, not the teacher.
        for s in (0, 1):
            u, k = (
                next(r for r in runs if r["seed"] == s and r["role"] == x)
                for x in ("teacher", "control")
            )
            assert u["init_model"] == k["init_model"] and u["teacher"] != k["teacher"]
            assert u["cache"] != k["cache"] and u["student"] != k["student"]


def test_report_states_the_verdict_and_every_configuration(quick):
    root, _, _ = quick
    results = json.loads((root / "out" / "results.json").read_text())
    report = (root / "out" / "report.md").read_text()
    v = results["verdict"]
    assert f"## Verdict: **{v['decision'].replace('_', ' ')}**" in report
    assert f"p = {results['verdict']['p_value']:.3g}" in report
    for c in results["configurations"]:
        assert f"### {c['name']}" in report
        assert f"| {c['name']} |" in report  # the research-question row
    runs = report[report.index("## Runs") :]
    assert runs.count(" | U | ") == 16 and runs.count(" | C | ") == 16  # every run, paired


def test_rerun_is_byte_identical(quick):
    root, args, _ = quick
    first = (root / "out" / "results.json").read_bytes()
    report = (root / "out" / "report.md").read_bytes()
    result = runner.invoke(app, [*args, "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert (root / "out" / "results.json").read_bytes() == first
    assert (root / "out" / "report.md").read_bytes() == report


@pytest.mark.slow
def test_fresh_store_with_one_worker_gives_the_same_results(quick, tmp_path: Path):
    """Every stage is bit-deterministic: another store, built inline by one process, gives the
    same results.json except the recorded compute seconds."""
    root, _, _ = quick
    out = tmp_path / "out"
    args = ["demo", "--quick", "--workers", "1", "--out", str(out), "--store", str(tmp_path / "s")]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    first = json.loads((root / "out" / "results.json").read_text())
    again = json.loads((out / "results.json").read_text())
    del first["timing"], again["timing"]
    assert again == first


@pytest.mark.slow
def test_every_method_init_and_transform_runs_through_the_pipeline(tmp_path: Path):
    """The levers end to end on tiny organisms: four methods, four inits, LoRA and every data
    transform in one grid; each run is recorded, DPO with its preference-pair metrics. DPO
    ranks by log-probability: the eval-likeness filter drops every closed-choice prompt, so
    `ranking: choice` with `filtered` is a config error (test_config)."""
    cfg = tmp_path / "levers.yaml"
    train = "train: {steps: 4, batch_size: 8, warmup: 1}"
    cfg.write_text(
        "methods:\n"
        f"- {{method: sft, {train}}}\n"
        f"- {{method: logit, divergence: jsd, ce_weight: 0.3, {train}}}\n"
        f"- {{method: on_policy, lam: 0.5, max_new_tokens: 6, {train}}}\n"
        f"- {{method: dpo, ranking: logprob, {train}}}\n"
        "data: [full_mix]\ninits: [shared_base, other_base, small, trusted]\n"
        "seeds: 1\nprompts: 32\nlora: {r: 2}\n"
        "transforms: {filtered: true, inoculation: true, paraphrase: true}\n"
    )
    args = ["demo", "--quick", "--config", str(cfg), "--workers", "1", "--json"]
    result = runner.invoke(
        app, [*args, "--out", str(tmp_path / "o"), "--store", str(tmp_path / "s")]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert len(data["configurations"]) == 16 and len(data["runs"]) == 32
    dpo = [r for r in data["runs"] if r["method"] == "dpo"]
    assert dpo and all(r["metrics"]["pairs"] > 0 for r in dpo)
    assert all("metrics" not in r for r in data["runs"] if r["method"] != "dpo")
    assert data["config"]["transforms"] == {
        "filtered": True,
        "inoculation": True,
        "paraphrase": True,
    }
