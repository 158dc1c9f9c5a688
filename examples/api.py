"""The Python API, as a notebook would use it: a config, a run, the verdict, the results table.

    python examples/api.py [DIR]

runs the quick config (tiny organisms: a pipeline check in about 20 s on two cores; its numbers
mean nothing about the science) into DIR/store and DIR/out (default: a temporary directory,
removed at the end). Each `# %%` block of `main` is a notebook cell. In a script the run sits
under `if __name__ == "__main__":`, because the worker processes are spawned and import the
main module again; a notebook needs no guard.
"""

import sys
import tempfile
from pathlib import Path

import incriminate


def main(work: Path) -> None:
    # %% A config: the quick grid, as `incriminate demo --quick` resolves it, then overrides.
    cfg = incriminate.load_config(quick=True, overrides=["inits=[shared_base]"])
    print(f"config {cfg.config_hash()}: teacher {cfg.teacher} vs control {cfg.control}")
    print(f"grid: {len(cfg.configurations())} configurations x {cfg.seeds} seeds")

    # %% Run it. Every stage lands in the store; a second run (or the CLI on the same store)
    # reuses them. `out` also writes config.yaml, results.json and report.md, like the CLI.
    results = incriminate.run_experiment(cfg, store=work / "store", out=work / "out", workers=2)

    # %% The verdict reads the students' audits only (ground truth is beside it, never in it).
    v = results["verdict"]
    print(f"verdict: {v['decision']} (p = {v['p_value']:.4g}, alpha = {v['alpha']})")
    print(f"reason: {v['reason']}")

    # %% Every experiment run on the store is in its results tables (SQL over Parquet).
    verdicts = incriminate.results_table(work / "store", "verdicts")
    print(f"verdicts table: {verdicts.num_rows} row(s); columns {verdicts.column_names}")
    audits = incriminate.results_table(
        work / "store",
        "configurations",
        where="kind = 'audit'",
        columns=["configuration", "metric", "teacher", "control", "difference", "p_value"],
    )
    print(f"audit rows: {audits.num_rows}")
    try:
        per_metric = audits.to_pandas().groupby("metric")["difference"].mean()  # with pandas
        print(per_metric.round(4).to_string())
    except ImportError:
        print(audits.slice(0, 3).to_pylist())

    # %% The results.json written to `out` is the same document.
    again = incriminate.load_results(work / "out")
    print(f"results.json: {again['schema']}, config_hash {again['config_hash']}")
    assert again["config_hash"] == results["config_hash"] == cfg.config_hash()


if __name__ == "__main__":
    if len(sys.argv) > 1:
        main(Path(sys.argv[1]))
    else:
        with tempfile.TemporaryDirectory(prefix="incriminate-api-") as tmp:
            main(Path(tmp))
