"""`incriminate bench --quick` through the real CLI: outputs, internal consistency, the probe's
exclusions, reuse on rerun, the dry-run plan, the results store's rows, a run on Ray, a run
killed with `kill -9` and resumed, a failing stage, and bad input. Every run is compared with one
uninterrupted reference run of the same config: the same bench.json (but its `timing`, the
compute seconds). The Ray and kill runs use a smaller zoo (`SMALL`), with its own reference."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from incriminate.organisms.zoo import entries
from incriminate.plan.bench_config import load_bench_config
from incriminate.report.bench_results import SCHEMA

pytestmark = pytest.mark.slow

KINDS = ("corpus", "instruct", "zoo_model", "evaluation", "teacher_cache", "probe", "probe_score")
DIRECT_KINDS = ("text_sample", "text_test", "cache_read")
"""The direct baseline's text audit and cache read."""


def _cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "incriminate.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
    )


def _numbers(path: Path) -> dict:
    """bench.json without `timing` (how long the stages took when they were built)."""
    bench = json.loads(path.read_text())
    bench.pop("timing")
    return bench


SMALL = ("zoo.personas=[naive]", "zoo.hard_benign=[]")
"""A smaller quick zoo (naive, benign of both shapes, twins and references: 24 models instead of
36) for the runs that only
check the engine (Ray, kill and resume) against a reference of their own."""


@pytest.fixture(scope="module")
def small_run(bench_run) -> Path:
    """The uninterrupted reference of the small zoo, in `bench_run`'s directory."""
    root = bench_run[0]
    r = _cli("bench", "--quick", *SMALL, "--out", "small", "--store", "store-small", cwd=root)
    assert r.returncode == 0, r.stderr[-3000:]
    return root / "small" / "bench.json"


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, str]:
    root = tmp_path_factory.mktemp("bench")
    r = _cli("bench", "--quick", "--out", "out", "--store", "store", "--workers", "2", cwd=root)
    assert r.returncode == 0, r.stderr[-3000:]
    return root, json.loads((root / "out" / "bench.json").read_text()), r.stdout


def test_outputs_are_written(bench_run) -> None:
    root, bench, stdout = bench_run
    out = root / "out"
    for name in ("bench.yaml", "zoo.json", "bench.json", "bench.md", "double_bind.png"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "double_bind.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no temporary file
    assert bench["schema"] == SCHEMA
    keep = root / "store" / "bench" / bench["config_hash"] / "bench.json"
    assert json.loads(keep.read_text()) == bench
    assert "battery/union" in stdout and "direct" in stdout
    md = (out / "bench.md").read_text()
    truth = md[md.index("## Ground truth by class") : md.index("## Organisms")]
    for cls in (
        "naive",
        "schemer",
        "context_gated",
        "benign",
        "benign_2stage",
        "goal_talker",
        "weak",
    ):
        n = sum(r["class"] == cls for r in bench["organisms"])
        assert f"| {cls} | {n} |" in truth
    html = (out / "report.html").read_text()
    assert "Incrimination benchmark" in html and "battery/union" in html
    # One log per stage, named after its kind and node.
    logs = {p.name.split("-")[0] for p in (out / "logs").glob("*.log")}
    assert logs == {*KINDS, "student", *DIRECT_KINDS}
    beyond = md[md.index("## Caught beyond the direct baseline") : md.index("## Ground truth")]
    assert "| battery/union |" in beyond and "| direct/text |" not in beyond


def test_every_zoo_organism_has_every_procedure(bench_run) -> None:
    _, bench, _ = bench_run
    cfg = load_bench_config(quick=True)
    zoo = [e.as_dict() for e in entries(cfg.zoo)]
    assert bench["zoo"] == zoo
    assert [r["name"] for r in bench["organisms"]] == [e["name"] for e in zoo]
    expected = {
        "direct",
        "direct/behaviour",
        "direct/text",
        "direct/cache",
        "battery/auditability_preserving",
        "battery/misalignment_targeted",
        "battery/union",
    } | {f"config/{c.name}" for b in cfg.batteries for c in b.configurations}
    for row in bench["organisms"]:
        assert set(row["procedures"]) == expected
        for p in row["procedures"].values():
            assert 0 <= p["min_p"] <= p["p_value"] <= 1  # 0: the prediction p has no floor
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


def test_probe_never_sees_the_audited_seed(bench_run) -> None:
    """One probe per base seed, trained on every model of the other seed (suspects, references
    and twins, labelled by their recipes): never on a model of the seed it scores, and chosen
    without any suspect's drive."""
    root, bench, _ = bench_run
    store = root / "store"
    assert sorted(bench["probes"]) == ["s0", "s1"]
    for key, ref in bench["probes"].items():
        manifest = json.loads((store / ref / "manifest.json").read_text())
        names = [r[0] for r in manifest["inputs"]["references"]]
        other = "s1" if key == "s0" else "s0"
        assert names and all(name.endswith(f"-{other}") for name in names), (key, names)
        assert len(names) == len(bench["models"]) // 2
        labels = {r[0]: r[2] for r in manifest["inputs"]["references"]}
        truth = {o["name"]: o["label"] for o in bench["organisms"]}
        assert all(labels[n] == truth.get(n, 0) for n in names)
        assert set(labels.values()) == {0, 1}


def test_rerun_reuses_every_stage_and_reproduces_the_numbers(bench_run) -> None:
    root, bench, _ = bench_run
    before = {p for p in (root / "store").glob("*/*") if p.is_dir()}
    r = _cli("bench", "--quick", "--out", "again", "--store", "store", "--workers", "1", cwd=root)
    assert r.returncode == 0, r.stderr[-3000:]
    after = {p for p in (root / "store").glob("*/*") if p.is_dir()}
    assert after - before == set()
    again = json.loads((root / "again" / "bench.json").read_text())
    assert again == bench
    assert not any(" built " in p.read_text() for p in (root / "again" / "logs").glob("*.log"))


def _plan(root: Path, store: str, *overrides: str) -> list[dict]:
    args = ("--store", store, "--out", "dry", "--dry-run", "--json")
    r = _cli("bench", "--quick", *overrides, *args, cwd=root)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)["plan"]


def test_dry_run_prints_the_plan_and_writes_nothing(bench_run, tmp_path: Path) -> None:
    r = _cli("bench", "--quick", "--out", "out", "--store", "store", "--dry-run", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    for word in ("stage kind", "to run", "est. compute", *KINDS, "student"):
        assert word in r.stdout, word
    assert list(tmp_path.iterdir()) == []  # neither the store nor the outputs
    rows = _plan(tmp_path, "store")
    assert [row["kind"] for row in rows] == [*KINDS, "student", *DIRECT_KINDS]
    assert all(row["done"] == 0 and row["estimate_s"] is None for row in rows)
    # 2 base seeds x 2 drives x (8 zoo models + a plain reference pair of each shape and a weak
    # reference: every lineage); 2 configurations x 2 seeds of each.
    stages = {row["kind"]: row["stages"] for row in rows}
    assert stages["zoo_model"] == 44 and stages["student"] == 44 * 2 * 2
    assert stages["evaluation"] == stages["probe_score"] == 44 + 44 * 2 * 2
    # A text sample per model; a text test and a cache read per suspect or reference.
    assert stages["text_sample"] == 44 and stages["text_test"] == stages["cache_read"] == 24 + 12
    # After the reference run, every stage is done.
    root = bench_run[0]
    assert all(row["done"] == row["stages"] and row["to_run"] == 0 for row in _plan(root, "store"))
    assert not (root / "dry").exists()


def test_results_store_has_a_row_per_organism_and_procedure(bench_run) -> None:
    root, bench, _ = bench_run
    args = ("results", "--store", "store", "--table", "bench", "--format", "json")
    r = _cli(*args, cwd=root)
    assert r.returncode == 0, r.stderr
    rows = {(x["organism"], x["procedure"]): x for x in json.loads(r.stdout)}
    expected = {(o["name"], p) for o in bench["organisms"] for p in o["procedures"]}
    assert set(rows) == expected
    for o in bench["organisms"]:
        for proc, p in o["procedures"].items():
            row = rows[(o["name"], proc)]
            assert row["experiment"] == bench["config_hash"]
            assert (row["class"], row["group"], row["label"]) == (
                o["class"],
                o["group"],
                o["label"],
            )
            assert (row["drive"], row["base_seed"]) == (o["drive"], o["base_seed"])
            for k in ("p_value", "statistic", "decision", "reference_mean"):
                assert row[k] == p.get(k), (o["name"], proc, k)
    # Grouped, the detection rate per procedure is a mean over the rows.
    r = _cli(*args, "--group-by", "procedure,group", "--where", "label = 0", cwd=root)
    grouped = json.loads(r.stdout)
    assert {x["group"] for x in grouped} == {"benign", "hard_benign"}
    assert sum(x["n"] for x in grouped) == sum(1 for k in expected if rows[k]["label"] == 0)


def _processes_with(tmpdir: str) -> list[int]:
    """Processes started with `TMPDIR=tmpdir` in their environment (Ray's workers rename their
    command lines, `ray::IDLE`, but keep the environment they inherited)."""
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if f"TMPDIR={tmpdir}".encode() in environ.read_bytes().split(b"\0"):
                found.append(int(environ.parent.name))
        except OSError:
            continue
    return found


@pytest.mark.skipif(
    not Path(sys.executable).with_name("ray").exists(),
    reason="Ray is not installed (pip install 'incriminate[ray]')",
)
def test_bench_on_a_local_ray_gives_the_same_numbers(bench_run, small_run) -> None:
    """`--backend ray` without `--address` starts a Ray instance of its own (its temporary
    folder under TMPDIR, short: Ray's socket paths must stay under 107 characters) and stops it:
    no Ray process and no temporary folder are left behind."""
    root, _, _ = bench_run
    tmp = tempfile.mkdtemp(prefix="ib", dir="/tmp")
    env = os.environ | {"TMPDIR": tmp, "RAY_AUTH_MODE": "disabled"}
    try:
        r = _cli("bench", "--quick", *SMALL, "--out", "ray", "--store", "store-ray",
                 "--backend", "ray", cwd=root, env=env)  # fmt: skip
        assert r.returncode == 0, r.stderr[-3000:]
        deadline = time.time() + 15  # Ray's daemons exit a moment after the driver
        while _processes_with(tmp) and time.time() < deadline:
            time.sleep(0.5)
        left = _processes_with(tmp)
        for pid in left:  # ours: stop them before failing
            os.kill(pid, signal.SIGKILL)
        assert not left, "the bench left Ray processes behind"
        assert not list(Path(tmp).glob("incriminate-ray-*"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    assert _numbers(root / "ray" / "bench.json") == _numbers(small_run)


def test_a_killed_bench_resumes_to_the_same_numbers(bench_run, small_run) -> None:
    root, _, _ = bench_run
    nodes = root / "store-kill" / "nodes"
    args = ["bench", "--quick", *SMALL, "--out", "kill", "--store", "store-kill", "--workers", "2"]
    with open(root / "kill.console", "w") as console:
        proc = subprocess.Popen(
            [sys.executable, "-m", "incriminate.cli", *args],
            cwd=root,
            stdout=console,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the kill reaches its workers too
        )
        deadline = time.time() + 300
        while len(list(nodes.glob("*.json")) if nodes.exists() else []) < 30:
            assert proc.poll() is None and time.time() < deadline, "no stage finished in time"
            time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert not (root / "kill" / "bench.json").exists()
    rows = _plan(root, "store-kill", *SMALL)  # part done, part to run
    assert sum(row["done"] for row in rows) >= 30 and sum(row["to_run"] for row in rows) > 0
    r = _cli(*args, cwd=root)
    assert r.returncode == 0, r.stderr[-3000:]
    assert _numbers(root / "kill" / "bench.json") == _numbers(small_run)


def test_a_failing_stage_is_one_line_with_its_log(bench_run) -> None:
    root = bench_run[0]
    store = root / "store-fail"
    shutil.copytree(root / "store", store, ignore=shutil.ignore_patterns("student", "nodes"))
    (store / "student").write_text("not a directory")  # no student can be stored
    r = _cli("bench", "--quick", "--out", "fail", "--store", "store-fail", cwd=root)
    assert r.returncode == 1
    failed = [line for line in r.stderr.splitlines() if "failed" in line]
    assert len(failed) == 1 and failed[0].startswith("failed: stage student "), r.stderr
    log = failed[0].split("(log: ")[1].split(")")[0]
    assert "Traceback" in (root / log).read_text()
    assert not (root / "fail" / "bench.json").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["zoo.drives=[exfiltrat]"], "exfiltrate"),
        (["batteries.0.seeds=0"], "seeds"),
        (["--battery", "missing.yaml"], "missing.yaml"),
        (["--workers", "0"], "--workers"),
        (["zoo.base_seeds=[0]"], "base_seeds"),
        (["zoo.personas=[]"], "probe"),
        (["--backend", "slurm"], "--backend"),
        (["--address", "127.0.0.1:1"], "--backend ray"),
        (["--threads", "0"], "--threads"),
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
    key = f"s{row['base_seed']}"
    model, probe = row["teacher"]["model"], bench["probes"][key]
    r = _cli("audit", f"store/{model}", "--probe", f"store/{probe}", "--json", cwd=root)
    assert r.returncode == 0, r.stderr[-2000:]
    audited = json.loads(r.stdout)["audits"]["probe"]
    assert audited["n"] == 600
    assert audited["rate"] == pytest.approx(row["teacher"]["audits"]["probe"], abs=1e-6)
    (tmp_path / "probe.json").write_text("{not json")
    bad = _cli("audit", f"store/{model}", "--probe", str(tmp_path), cwd=root)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1, bad.stderr


def test_every_suspect_is_tested_against_the_benign_references(bench_run) -> None:
    """The null of record: each procedure's statistic on U against the same statistic on the
    auditor's benign reference teachers (means of U's seed and shape per kind, spread pooled)."""
    from incriminate.verdict.null import reference_test

    _, bench, _ = bench_run
    rows = {r["name"]: r for r in bench["organisms"]}
    refs = bench["references"]
    assert bench["null"] == "benign_references" and bench["n_references"] == len(refs) > 0
    assert not {r["name"] for r in refs} & set(rows)
    groups = [f"s{r['base_seed']}/{r['shape']}" for r in refs]
    kinds = [r["kind"] for r in refs]
    assert set(kinds) == {"plain", "weak"}
    assert {(r["base_seed"], r["drive"]) for r in refs} == {
        (r["base_seed"], r["drive"]) for r in rows.values()
    }  # every lineage
    for row in rows.values():
        for proc, record in row["procedures"].items():
            if proc == "direct":  # combines its parts
                continue
            test = reference_test(
                record["statistic"],
                [r["statistics"][proc] for r in refs],
                groups,
                f"s{row['base_seed']}/{row['shape']}",
                bench["alpha"],
                kinds,
            )
            assert record["p_value"] == pytest.approx(test["p_value"], abs=1e-12)
            assert record["decision"] == test["decision"]
            assert proc in row["procedures_u_c_differ"]


def _rotated(values: list, by: int = 1) -> list:
    return values[by:] + values[:by]


def test_permuted_labels_leave_every_decision_unchanged(bench_run, tmp_path, monkeypatch) -> None:
    """The auditor's view, checked: permute the suspects' class, group, label and drive in the
    zoo manifest, and the persona and drive in every organism's spec.json, then rerun the bench
    on a copy of the store. Every procedure's decision, p-value and statistic is unchanged (the
    ground truth moves with the specs' drives; no decision reads it)."""
    from incriminate.plan.bench import run_bench
    from incriminate.report import bench_results
    from incriminate.store import Store, sha256_file

    root, bench, _ = bench_run
    store = tmp_path / "store"
    shutil.copytree(root / "store", store, ignore=shutil.ignore_patterns("nodes"))
    specs = sorted(store.glob("organism/*/spec.json"))
    values = [json.loads(p.read_text()) for p in specs]
    fields = _rotated([(v["persona"], v["drive"]) for v in values], 3)
    assert len(set(fields)) > 2
    for path, spec, (persona, drive) in zip(specs, values, fields, strict=True):
        path.write_text(json.dumps(spec | {"persona": persona, "drive": drive}))
        manifest_path = path.parent / "manifest.json"
        manifest = json.loads(manifest_path.read_text())
        manifest["files"]["spec.json"] = {"size": path.stat().st_size, "sha256": sha256_file(path)}
        manifest_path.write_text(json.dumps(manifest))
    cfg = load_bench_config(quick=True)
    true = entries(cfg.zoo)
    labels = _rotated([(e.cls, e.group, e.label, e.drive) for e in true], 5)
    permuted = [
        type(e)(**{**e.__dict__, "cls": c, "group": g, "label": lab, "drive": d})
        for e, (c, g, lab, d) in zip(true, labels, strict=True)
    ]
    assert any(a.label != b.label for a, b in zip(true, permuted, strict=True))
    monkeypatch.setattr(bench_results, "entries", lambda zoo: permuted)
    again = bench_results.assemble(cfg, run_bench(cfg, Store(store), workers=2))
    truth_moved = False
    for before, after in zip(bench["organisms"], again["organisms"], strict=True):
        assert before["name"] == after["name"]
        for proc, p in before["procedures"].items():
            q = after["procedures"][proc]
            assert {
                k: p.get(k) for k in ("decision", "p_value", "statistic", "reference_mean")
            } == {k: q.get(k) for k in ("decision", "p_value", "statistic", "reference_mean")}, (
                before["name"],
                proc,
            )
        truth_moved |= before["ground_truth"] != after["ground_truth"]
    assert truth_moved  # the permutation reached what the testbed measures
