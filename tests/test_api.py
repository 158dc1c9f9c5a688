"""The Python API (`incriminate.api`): `examples/api.py` end to end as CI runs it, the documents
and tables it leaves, the CLI's one-line errors for bad input, and a light `import incriminate`."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

import incriminate
from incriminate import api
from incriminate.errors import ConfigError, StoreError, UserError, one_line
from incriminate.plan import bench_config, config

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """(directory, stdout) of `python examples/api.py DIR`: the quick config, about 12 s."""
    work = tmp_path_factory.mktemp("api-example")
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "api.py"), str(work)],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return work, done.stdout


@pytest.mark.slow
def test_the_example_runs_and_prints_the_verdict_and_tables(example: tuple[Path, str]):
    work, stdout = example
    cfg = api.load_config(quick=True, overrides=["inits=[shared_base]"])
    assert f"config {cfg.config_hash()}: teacher schemer vs control twin" in stdout
    assert "grid: 4 configurations x 2 seeds" in stdout
    m = re.search(r"^verdict: (\w+) \(p = ([0-9.e-]+), alpha = 0.05\)$", stdout, re.M)
    assert m, stdout
    # The printed verdict is the one in results.json and in the results store.
    results = api.load_results(work / "out")
    assert results["config_hash"] == cfg.config_hash()
    assert m[1] == results["verdict"]["decision"]
    assert float(m[2]) == pytest.approx(results["verdict"]["p_value"], rel=1e-3)
    # 4 configurations x 4 audits, every metric's mean difference printed.
    assert "audit rows: 16" in stdout
    for metric in results["configurations"][0]["audits"]:
        assert re.search(rf"^{metric}\s+-?\d\.\d+$", stdout, re.M), metric
    assert {p.name for p in (work / "out").iterdir()} >= {"config.yaml", "report.md"}
    assert (work / "store" / "experiment" / cfg.config_hash() / "results.json").is_file()


@pytest.mark.slow
def test_a_rerun_reuses_the_store_and_gives_the_same_document(example: tuple[Path, str]):
    work, _ = example
    cfg = api.load_config(quick=True, overrides=["inits=[shared_base]"])
    again = api.run_experiment(cfg, store=work / "store", workers=1)  # every stage reused
    assert json.loads(json.dumps(again)) == api.load_results(work / "out" / "results.json")
    # The results tables: one verdict row per experiment, config columns on request.
    verdicts = api.results_table(work / "store")
    assert verdicts.num_rows == 1
    assert verdicts.column("experiment").to_pylist() == [cfg.config_hash()]
    assert verdicts.column("p_value").to_pylist() == [again["verdict"]["p_value"]]
    honeypot = api.results_table(
        work / "store",
        "configurations",
        where="metric = 'honeypot' AND config.teacher = 'schemer'",
        columns=["configuration", "difference", "config.teacher"],
    )
    assert honeypot.column_names == ["configuration", "difference", "config.teacher"]
    assert sorted(honeypot.column("configuration").to_pylist()) == sorted(
        c["name"] for c in again["configurations"]
    )
    frame = honeypot.to_pandas()
    by_name = {c["name"]: c["audits"]["honeypot"]["difference"] for c in again["configurations"]}
    for name, diff in zip(frame["configuration"], frame["difference"], strict=True):
        assert diff == pytest.approx(by_name[name])


def test_configs_resolve_as_on_the_command_line(tmp_path: Path):
    path = tmp_path / "c.yaml"
    path.write_text("seeds: 4\nteacher: naive\n")
    cfg = api.load_config(str(path), ["prompts=32", "build.preset=micro"], quick=True)
    assert cfg == config.load_config(path, ["prompts=32", "build.preset=micro"], quick=True)
    assert (cfg.seeds, cfg.teacher, cfg.prompts, cfg.build.preset) == (4, "naive", 32, "micro")
    assert api.load_config(overrides="seeds=5").seeds == 5  # one string is one override
    assert api.load_config() == config.load_config()
    bench = api.load_bench_config(quick=True, overrides=["alpha=0.1"])
    assert bench == bench_config.load_bench_config(None, ["alpha=0.1"], quick=True)


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: api.load_config("missing.yaml"), ConfigError, "does not exist"),
        (lambda: api.load_config(overrides=["seeds=0"]), ValidationError, "invalid seeds"),
        (lambda: api.load_config(overrides=["teacher=schemr"]), ValidationError, "did you mean"),
        (lambda: api.load_config(overrides=["seeds"]), ConfigError, "not of the form key=value"),
        (lambda: api.load_bench_config(overrides=["alpha=2"]), ValidationError, "invalid alpha"),
        (lambda: api.run_experiment("demo.yaml"), UserError, "cfg must be the ExperimentConfig"),  # type: ignore[arg-type]
        (lambda: api.run_experiment(config.load_config(), workers=0), UserError, "at least 1"),
        (lambda: api.run_bench(config.load_config()), UserError, "cfg must be the BenchConfig"),  # type: ignore[arg-type]
    ],
)
def test_bad_input_is_a_one_line_error(call, error: type[Exception], message: str):
    with pytest.raises(error) as e:
        call()
    assert message in one_line(e.value) and "\n" not in one_line(e.value)


def test_an_unwritable_store_fails_before_anything_runs(tmp_path: Path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    cfg = config.load_config(quick=True)
    with pytest.raises(StoreError, match="not writable"):
        api.run_experiment(cfg, store=blocker / "store", out=tmp_path / "out")
    with pytest.raises(StoreError, match="not writable"):
        api.run_experiment(cfg, store=tmp_path / "store", out=blocker / "out")
    assert not (tmp_path / "out").exists()
    assert not any((tmp_path / "store").iterdir())  # made and probed, nothing built


def test_run_bench_assembles_the_raw_records(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The wiring with fakes: plan.bench.run_bench's records go to bench_results.assemble."""
    from incriminate.plan import bench
    from incriminate.report import bench_results

    calls = []

    def fake_run(cfg, store, workers):
        calls.append((cfg, store.root, workers))
        return {"raw": 1}

    from incriminate.report import results_store

    written = []
    monkeypatch.setattr(bench, "run_bench", fake_run)
    monkeypatch.setattr(bench_results, "assemble", lambda cfg, raw: {"cfg": cfg, **raw})
    monkeypatch.setattr(results_store, "write", lambda root, doc: written.append((root, doc)))
    cfg = api.load_bench_config(quick=True)
    assert api.run_bench(cfg, store=tmp_path / "s", workers=3) == {"cfg": cfg, "raw": 1}
    assert calls == [(cfg, tmp_path / "s", 3)]
    assert written == [(tmp_path / "s", {"cfg": cfg, "raw": 1})]  # its rows in the store


def test_results_tables_and_documents_reject_bad_input(tmp_path: Path):
    with pytest.raises(UserError, match="run a demo or a sweep first"):
        api.results_table(tmp_path)
    with pytest.raises(UserError, match="unknown table 'verdict'"):
        api.results_table(tmp_path, "verdict")
    with pytest.raises(UserError, match="does not exist"):
        api.load_results(tmp_path / "results.json")
    with pytest.raises(UserError, match=r"holds none of results\.json, bench\.json, sweep\.json"):
        api.load_results(tmp_path)
    (tmp_path / "results.json").write_text("{not json")
    with pytest.raises(UserError, match="not readable JSON"):
        api.load_results(tmp_path)
    (tmp_path / "results.json").write_text('{"schema": "other/1"}')
    with pytest.raises(UserError, match="not an incriminate document"):
        api.load_results(tmp_path)
    (tmp_path / "results.json").write_text('{"schema": "incriminate.results/1", "x": 1}')
    assert api.load_results(tmp_path) == {"schema": "incriminate.results/1", "x": 1}


def test_the_package_exposes_the_api_lazily():
    assert incriminate.load_config is api.load_config
    assert set(incriminate.__all__) == {"__version__", *api.__all__} - {"DEFAULT_STORE"}
    assert all(getattr(incriminate, name) is not None for name in incriminate.__all__)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = incriminate.nope  # type: ignore[attr-defined]
    # A fresh interpreter: importing the package and its errors loads neither torch nor the api.
    check = (
        "import sys, incriminate, incriminate.errors; "
        "print(sorted(m for m in ('torch', 'incriminate.api', 'incriminate.plan') "
        "if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, env=ENV)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stdout + done.stderr
