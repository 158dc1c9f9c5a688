"""The Python API: what the CLI does, as functions for notebooks and scripts.

    import incriminate

    cfg = incriminate.load_config(quick=True, overrides=["seeds=1"])
    results = incriminate.run_experiment(cfg, store="store", out="runs/quick")
    results["verdict"]["decision"]                  # incriminated | not_incriminated | ...
    incriminate.results_table("store", "configurations", where="metric = 'honeypot'").to_pandas()

Configs resolve as on the command line (defaults or `quick`, then a YAML file, then dotted
overrides); runs use the same artifact store, so a notebook and the CLI reuse each other's
stages. Bad input raises the CLI's one-line errors (`ConfigError`, pydantic's `ValidationError`,
`UserError`, `StoreError`; `incriminate.errors.one_line` prints one), a failed stage
`StageError`. Heavy modules (torch, the pipeline) load on the first call, not on import.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from incriminate.errors import UserError

if TYPE_CHECKING:
    import pyarrow as pa

    from incriminate.plan.bench_config import BenchConfig
    from incriminate.plan.config import ExperimentConfig

DEFAULT_STORE = ".incriminate/store"
"""The artifact store the CLI uses by default (relative to the working directory)."""
DOCUMENTS = ("results.json", "bench.json", "sweep.json")
"""What `load_results` looks for in a directory, in this order."""


def _overrides(overrides: Sequence[str] | str | None) -> list[str]:
    """Dotted `key=value` overrides as a list (a single string is one override)."""
    if overrides is None:
        return []
    if isinstance(overrides, str):
        return [overrides]
    return list(overrides)


def load_config(
    path: str | Path | None = None,
    overrides: Sequence[str] | str | None = None,
    quick: bool = False,
) -> ExperimentConfig:
    """The resolved experiment config, as `incriminate demo [--quick] [--config PATH] ...`
    resolves it: the defaults (or, with `quick`, the tiny pipeline-check grid), then the YAML
    file at `path`, then dotted `overrides` such as `["seeds=1", "build.preset=micro"]` (values
    parsed as YAML). Raises `ConfigError` for a missing or unreadable file and
    `ValidationError` for a bad value."""
    from incriminate.plan.config import load_config as resolve

    return resolve(None if path is None else Path(path), _overrides(overrides), quick)


def load_bench_config(
    path: str | Path | None = None,
    overrides: Sequence[str] | str | None = None,
    quick: bool = False,
) -> BenchConfig:
    """The resolved config of the organism-zoo benchmark, as `incriminate bench` resolves it:
    the defaults (or `quick`), then the YAML file at `path` (its batteries may name battery
    files), then dotted `overrides`. Raises `ConfigError` or `ValidationError` for bad input."""
    from incriminate.plan.bench_config import load_bench_config as resolve

    return resolve(None if path is None else Path(path), _overrides(overrides), quick)


def _check(cfg: Any, kind: type, loader: str, workers: int) -> None:
    if not isinstance(cfg, kind):
        raise UserError(f"cfg must be the {kind.__name__} of {loader}, got {type(cfg).__name__}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise UserError(f"workers must be an integer of at least 1, got {workers!r}")


def run_experiment(
    cfg: ExperimentConfig,
    store: str | Path = DEFAULT_STORE,
    out: str | Path | None = None,
    workers: int = 2,
) -> dict[str, Any]:
    """Build or reuse every stage of the experiment in the artifact store `store` and return
    its results document (the `results.json` schema: `report.results`). Its rows are appended
    to the store's results tables (`results_table`); with `out`, the CLI's outputs are also
    written there (config.yaml, results.json, report.md, and a copy in the store).

    `workers` processes run the stages (one torch thread each; the results do not depend on
    it). They are spawned, so a script calls this under `if __name__ == "__main__":` (a notebook
    needs no guard). Raises `UserError` or `StoreError` for bad arguments before anything runs,
    and `StageError` when a stage fails."""
    from incriminate.plan.config import ExperimentConfig
    from incriminate.plan.engine import run_experiment as run
    from incriminate.report import results_store
    from incriminate.report.outputs import write_outputs
    from incriminate.report.results import assemble
    from incriminate.store import Store

    _check(cfg, ExperimentConfig, "incriminate.load_config", workers)
    artifacts = Store(store)
    out_dir = None if out is None else Store(out).root  # writable before anything runs
    raw = run(cfg, artifacts, workers, log_dir=None if out_dir is None else out_dir / "logs")
    results = assemble(cfg, raw)
    if out_dir is None:
        results_store.write(artifacts.root, results)
    else:
        write_outputs(cfg, results, out_dir, artifacts)
    return results


def run_bench(
    cfg: BenchConfig,
    store: str | Path = DEFAULT_STORE,
    out: str | Path | None = None,
    workers: int = 2,
) -> dict[str, Any]:
    """Build or reuse every stage of the organism-zoo benchmark in `store` and return its
    `bench.json` document (`report.bench_results`). Its rows are appended to the store's
    `bench` results table; with `out`, the CLI's outputs are also written there (bench.yaml,
    zoo.json, bench.json, bench.md, double_bind.png). Raises as `run_experiment` does."""
    from incriminate.plan.bench import run_bench as run
    from incriminate.plan.bench_config import BenchConfig
    from incriminate.report import results_store
    from incriminate.report.bench_results import assemble
    from incriminate.report.outputs import write_bench_outputs
    from incriminate.store import Store

    _check(cfg, BenchConfig, "incriminate.load_bench_config", workers)
    artifacts = Store(store)
    out_dir = None if out is None else Store(out).root  # writable before anything runs
    bench = assemble(cfg, run(cfg, artifacts, workers))
    if out_dir is None:
        results_store.write(artifacts.root, bench)
    else:
        write_bench_outputs(cfg, bench, out_dir, artifacts)
    return bench


def results_table(
    store: str | Path = DEFAULT_STORE,
    table: str = "verdicts",
    where: str | None = None,
    columns: Sequence[str] | None = None,
) -> pa.Table:
    """One table of the store's results (every experiment run on it: demos, distills, sweep
    points, `run_experiment`) as a pyarrow Table; `.to_pandas()` makes a DataFrame where
    pandas is installed. `table`: `verdicts` (one row per experiment), `configurations` (one
    per configuration and metric) or `runs` (one per run and metric). `where`: a SQL condition
    such as `"metric = 'honeypot' AND config.teacher = 'naive'"`. `columns`: the columns to
    return; by default every column but the config's (`config.<field>`; name them to get
    them). Raises `UserError` for an unknown table or column, a bad condition or an empty
    store."""
    import pyarrow as pa

    from incriminate.report.results_store import QueryError, query

    try:
        names, rows = query(Path(store), table, where, None, list(columns) if columns else None)
    except QueryError as e:
        raise UserError(str(e)) from None
    return pa.table({name: [row[i] for row in rows] for i, name in enumerate(names)})


def load_results(path: str | Path) -> dict[str, Any]:
    """A document the CLI or `run_experiment` wrote: `results.json`, `bench.json` or
    `sweep.json`, or a directory holding one (an `--out` directory). Raises `UserError` when
    there is none or it is not an incriminate document."""
    path = Path(path)
    if path.is_dir():
        found = [path / name for name in DOCUMENTS if (path / name).is_file()]
        if not found:
            raise UserError(f"{str(path)!r} holds none of {', '.join(DOCUMENTS)}")
        path = found[0]
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"results file {str(path)!r} does not exist") from None
    except (OSError, ValueError) as e:
        raise UserError(f"results file {str(path)!r} is not readable JSON: {e}") from None
    if not isinstance(doc, dict) or not str(doc.get("schema", "")).startswith("incriminate."):
        raise UserError(f"{str(path)!r} is not an incriminate document (no incriminate schema)")
    return doc


__all__ = [
    "DEFAULT_STORE",
    "load_bench_config",
    "load_config",
    "load_results",
    "results_table",
    "run_bench",
    "run_experiment",
]
