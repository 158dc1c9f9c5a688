"""`incriminate sweep` through the real CLI: kill -9 at random points (of the sweep and of a
worker) and resume, two sweeps on one store at once, a failing stage, the dry-run plan and the
results query. Every run is compared with one uninterrupted sweep: identical outputs."""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).parents[1]
SWEEP = ROOT / "configs" / "sweeps" / "quick.yaml"


def _start(root: Path, out: str, store: str, *extra: str) -> subprocess.Popen:
    """The sweep in its own session (so a kill reaches its workers too), output to files."""
    args = [sys.executable, "-m", "incriminate.cli", "sweep", str(SWEEP), "--out", out]
    log = open(root / f"{out}.console", "a")  # noqa: SIM115 (closed with the process)
    return subprocess.Popen(
        [*args, "--store", store, "--workers", "2", *extra],
        cwd=root,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _finish(proc: subprocess.Popen, root: Path, out: str) -> None:
    rc = proc.wait(timeout=900)
    assert rc == 0, (root / f"{out}.console").read_text()[-3000:]


def _outputs(root: Path, out: str, store: str) -> dict[str, object]:
    """What a sweep leaves: sweep.json (bytes), each point's results.json (without the timings,
    which record how long the stages took), the results store's Parquet files (bytes)."""
    got: dict[str, object] = {"sweep.json": (root / out / "sweep.json").read_bytes()}
    for path in sorted((root / out / "points").glob("*/results.json")):
        results = json.loads(path.read_text())
        results.pop("timing")
        got[path.parent.name] = results
    for path in sorted((root / store / "results").glob("*/*.parquet")):
        got[f"{path.parent.name}/{path.name}"] = path.read_bytes()
    return got


def _built(root: Path, *outs: str) -> Counter[str]:
    """How many times each stage was built, over the stage logs of these sweeps."""
    built: Counter[str] = Counter()
    for out in outs:
        for log in (root / out / "logs").glob("*.log"):
            built.update(re.findall(r" built (\w+/[0-9a-f]{16}) in", log.read_text()))
    return built


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float, dict[str, object]]:
    root = tmp_path_factory.mktemp("sweep")
    t0 = time.perf_counter()
    _finish(_start(root, "ref", "store-ref"), root, "ref")
    return root, time.perf_counter() - t0, _outputs(root, "ref", "store-ref")


def test_the_sweep_writes_every_point(reference) -> None:
    root, _, outputs = reference
    doc = json.loads(outputs["sweep.json"])  # type: ignore[arg-type]
    assert doc["schema"] == "incriminate.sweep/2" and doc["name"] == "quick"
    assert [p["overrides"] for p in doc["points"]] == [{"teacher": "schemer"}, {"teacher": "naive"}]
    assert (
        all(p["status"] == "done" and p["verdict"] for p in doc["points"]) and not doc["failures"]
    )
    # The two teachers share the corpus, the base and its instruct checkpoint: built once.
    # Each point also has the quick grid's 2 benign references, distilled and audited like U.
    assert doc["stages"] == {
        "cache_read": 6,
        "corpus": 1,
        "evaluation": 16,
        "instruct": 1,
        "organism": 4,
        "reference": 4,
        "student": 8,
        "teacher_cache": 8,
        "text_sample": 8,
        "text_test": 6,
        "transcripts": 2,
    }
    for p in doc["points"]:
        results = json.loads((root / "ref" / p["results"]).read_text())
        assert results["config"]["teacher"] == p["overrides"]["teacher"]
        assert results["verdict"]["decision"] == p["verdict"]["decision"]
    assert all(n == 1 for n in _built(root, "ref").values())
    html = (root / "ref" / "report.html").read_text()
    assert all(f"{p['id']}" in html for p in doc["points"]) and "schemer-exfiltrate" in html


def _children(pid: int) -> list[tuple[int, str]]:
    """(pid, command line) of the processes whose parent is `pid`."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmd = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append((int(stat.parent.name), cmd))
    return out


def _workers(proc: subprocess.Popen) -> list[tuple[int, str]]:
    """The sweep's pool workers, once it has started them."""
    deadline = time.time() + 120
    while time.time() < deadline:
        workers = [c for c in _children(proc.pid) if "spawn_main" in c[1]]
        if workers:
            return workers
        time.sleep(0.2)
    raise AssertionError("the sweep started no worker process")


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has exited (whoever adopted it has not reaped it yet)


def test_killed_sweeps_resume_to_identical_results(reference) -> None:
    root, wall, expected = reference
    rng = random.Random(2026)
    nodes = root / "store-kill" / "nodes"
    for round_ in range(3):
        before = len(list(nodes.glob("*.json"))) if nodes.exists() else 0
        proc = _start(root, "kill", "store-kill")
        _workers(proc)  # the pool is up: the sweep is at work
        time.sleep(rng.uniform(1.0, max(2.0, wall / 4)))
        if round_ == 0:
            # The sweep alone: its workers notice and exit (no orphan keeps computing).
            children = [pid for pid, _ in _children(proc.pid)]
            assert children
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            time.sleep(5.0)
            assert not [pid for pid in children if _alive(pid)]
        else:
            os.killpg(proc.pid, signal.SIGKILL)  # the sweep and its workers
            proc.wait()
        assert not (root / "kill" / "sweep.json").exists(), (
            f"round {round_} finished before the kill"
        )
        after = len(list(nodes.glob("*.json"))) if nodes.exists() else 0
        assert after >= before
    # Then kill one worker only, once the pool has finished a few stages: the pool restarts and
    # the sweep completes on its own.
    proc = _start(root, "kill", "store-kill")
    workers = _workers(proc)
    time.sleep(2.0)
    os.kill(workers[0][0], signal.SIGKILL)
    _finish(proc, root, "kill")
    assert "worker process died" in (root / "kill.console").read_text()
    assert _outputs(root, "kill", "store-kill") == expected


def test_two_sweeps_on_one_store_compute_each_stage_once(reference) -> None:
    root, _, expected = reference
    procs = [_start(root, out, "store-two") for out in ("two-a", "two-b")]
    for proc, out in zip(procs, ("two-a", "two-b"), strict=True):
        _finish(proc, root, out)
    for out in ("two-a", "two-b"):
        assert _outputs(root, out, "store-two") == expected
    built = _built(root, "two-a", "two-b")
    assert built and max(built.values()) == 1, [k for k, n in built.items() if n > 1]
    assert set(built) == set(_built(root, "ref"))  # together they built every stage, once


def test_a_failing_stage_fails_its_dependants_and_the_sweep_goes_on(reference) -> None:
    root = reference[0]
    store = root / "store-fail"
    shutil.copytree(root / "store-ref", store, ignore=shutil.ignore_patterns("student", "nodes"))
    (store / "student").write_text("not a directory")  # no student can be stored
    proc = _start(root, "fail", "store-fail")
    assert proc.wait(timeout=900) == 1
    console = (root / "fail.console").read_text()
    doc = json.loads((root / "fail" / "sweep.json").read_text())
    # 4 students per point: U's, C's and the 2 references'
    assert [f["stage"].split("/")[0] for f in doc["failures"]] == ["student"] * 8
    for f in doc["failures"]:
        assert f["stage"].split("/")[1] in console and "failed" in console
        assert "Traceback" in (root / "fail" / f["log"]).read_text()
    assert [p["status"] for p in doc["points"]] == ["failed", "failed"]
    assert all(p["error"].startswith("stage student ") for p in doc["points"])
    # Everything that does not need a student ran: the teachers' audits, caches and the direct
    # baseline's text samples, text tests and cache reads.
    done = [json.loads(p.read_text())["kind"] for p in (store / "nodes").glob("*.json")]
    assert Counter(done) == Counter(
        {"corpus": 1, "instruct": 1, "organism": 4, "reference": 4, "evaluation": 8}
        | {"teacher_cache": 8, "text_sample": 8, "text_test": 6, "cache_read": 6}
    )


def _cli(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "incriminate.cli", *args],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_dry_run_counts_the_done_stages_and_estimates_the_rest(reference) -> None:
    root = reference[0]
    r = _cli(root, "sweep", str(SWEEP), "--store", "store-ref", "--dry-run", "--json")
    assert r.returncode == 0, r.stderr
    plan = json.loads(r.stdout)
    assert plan["points"] == 2
    assert all(row["done"] == row["stages"] and row["to_run"] == 0 for row in plan["plan"])
    fresh = root / "store-empty"
    r = _cli(root, "sweep", str(SWEEP), "--store", str(fresh), "--dry-run", "--json")
    rows = json.loads(r.stdout)["plan"]
    assert all(row["done"] == 0 and row["estimate_s"] is None for row in rows)
    assert not (root / "runs").exists()  # a dry run writes no outputs
    # With timings recorded in a store, every kind gets an estimate.
    shutil.copytree(root / "store-ref" / "nodes", fresh / "nodes")
    rows = json.loads(
        _cli(root, "sweep", str(SWEEP), "--store", str(fresh), "--dry-run", "--json").stdout
    )["plan"]
    # (A text test on the quick organisms records 0.0 s at the stage log's precision.)
    assert all(row["to_run"] == row["stages"] and row["estimate_s"] is not None for row in rows)
    assert all(row["estimate_s"] > 0 for row in rows if row["kind"] in ("student", "organism"))


def test_results_answers_grouped_questions(reference) -> None:
    root = reference[0]
    r = _cli(
        root,
        "results",
        "--store",
        "store-ref",
        "--where",
        "metric = 'honeypot'",
        "--group-by",
        "config.teacher,method",
        "--format",
        "json",
    )
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert [(x["config.teacher"], x["method"], x["n"]) for x in rows] == [
        ("naive", "sft", 1),
        ("schemer", "sft", 1),
    ]
    for x in rows:
        point = next(
            p
            for p in json.loads(reference[2]["sweep.json"])["points"]
            if p["overrides"]["teacher"] == x["config.teacher"]
        )
        results = json.loads((root / "ref" / point["results"]).read_text())
        honeypot = results["configurations"][0]["audits"]["honeypot"]
        assert x["mean_difference"] == pytest.approx(honeypot["difference"])
    r = _cli(
        root,
        "results",
        "--store",
        "store-ref",
        "--table",
        "verdicts",
        "--format",
        "csv",
        "--columns",
        "config.teacher,decision",
    )
    assert r.returncode == 0 and r.stdout.splitlines()[0] == "config.teacher,decision"
    assert len(r.stdout.splitlines()) == 3
