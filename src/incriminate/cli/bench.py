"""`incriminate bench`: the organism zoo benchmark through the command line.

Resolves the bench config (defaults or `--quick`, then `--config FILE`, then `--battery FILE`s,
then dotted overrides), plans every stage (`plan.bench`) and runs it on the engine like a sweep:
locally or on Ray, resumable, each stage's log in `OUT/logs/<kind>-<node>.log`, `--dry-run` for
the plan alone. Writes into `--out` (each file replaced in one step):

    bench.yaml     the resolved config (its hash is `config_hash` in bench.json)
    zoo.json       the zoo's manifest (ground-truth labels: for evaluating the procedure only)
    bench.json     every number (schema in `report.bench_results`)
    bench.md       the tables
    double_bind.png  drive transferred vs evasion retained per configuration
    report.html    the HTML report (`incriminate report`)

with a copy of the first four in `STORE/bench/<config_hash>/` and one row per organism and
procedure in the results store (`incriminate results --table bench`). Every input is validated
before anything is written (one line, exit code 2); a failed stage is one line with its log
(exit code 1); a rerun reuses every finished stage.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from incriminate.cli.console import DEFAULT_STORE, err, out, progress, run_command, setup
from incriminate.cli.engine import (
    AddressOpt,
    BackendOpt,
    DryRunOpt,
    ThreadsOpt,
    WorkersOpt,
    check_backend,
    open_executor,
    plan_table,
    worker_count,
)
from incriminate.cli.run import ConfigOpt, JsonOpt, Overrides, StoreOpt, VerboseOpt, _bar_callback


def _plan(cfg: Any) -> tuple[Any, Any]:
    """(plan, bench nodes); a probe without references is bad input, found here."""
    from incriminate.plan.bench import plan_bench
    from incriminate.plan.graph import Plan

    plan = Plan()
    return plan, plan_bench(plan, cfg)


def _dry_run(plan: Any, cfg: Any, store_dir: Path, workers: int, as_json: bool) -> None:
    """Print the plan: per stage kind, how many stages are done in the store and the estimated
    compute of the rest. Reads the store only (a missing store is an empty one)."""
    from incriminate.plan.sweep import dry_run

    rows = dry_run(plan, Path(store_dir))
    if as_json:
        out.print_json(json.dumps({"config_hash": cfg.config_hash(), "plan": rows}))
    else:
        plan_table(rows, f"Plan: bench {cfg.config_hash()}", workers)


def _execute(
    cfg: Any, plan: Any, nodes: Any, out_dir: Path, store_dir: Path, run: dict, verbose: bool
) -> dict:
    """Run the plan on the executor of `run` (backend, workers, threads, address) and write the
    outputs; return bench.json's document."""
    from incriminate.plan.bench import collect_bench
    from incriminate.plan.engine import run_plan
    from incriminate.report.bench_results import assemble
    from incriminate.report.html import write_report
    from incriminate.store import Store

    store = Store(store_dir)
    Store(out_dir)
    setup(verbose)
    t0 = time.perf_counter()
    with open_executor(**run) as executor, progress() as bar:
        results = run_plan(
            plan, store, progress=_bar_callback(bar), executor=executor, log_dir=out_dir / "logs"
        )
    bench = assemble(cfg, collect_bench(nodes, results, store))
    from incriminate.report.outputs import write_bench_outputs

    write_bench_outputs(cfg, bench, out_dir, store)
    with err.status("writing report.html"):
        write_report(out_dir, None, store.root)
    bench["_wall_s"] = round(time.perf_counter() - t0, 1)
    return bench


def _pct(p: dict | None) -> str:
    if p is None:
        return "—"
    return f"{p['rate']:.2f} [{p['ci_low']:.2f},{p['ci_high']:.2f}] ({p['k']}/{p['n']})"


def _print_summary(bench: dict, out_dir: Path) -> None:
    from rich.table import Table

    table = Table(
        title=f"Zoo benchmark: {len(bench['organisms'])} organisms, alpha = {bench['alpha']:g}",
        title_justify="left",
        caption="TPR on misaligned organisms, FPR on benign + hard benign, AUROC of the evidence",
    )
    for col in ("procedure", "TPR", "FPR", "FPR benign", "FPR hard benign", "AUROC"):
        table.add_column(col, justify="left" if col == "procedure" else "right", no_wrap=True)
    for p in bench["procedures"]:
        a = p["auroc"]
        auc = "—" if a is None else f"{a['auroc']:.2f} [{a['ci_low']:.2f},{a['ci_high']:.2f}]"
        table.add_row(
            p["procedure"],
            _pct(p["tpr"]),
            _pct(p["fpr"]),
            _pct(p["fpr_benign"]),
            _pct(p["fpr_hard_benign"]),
            auc,
        )
    out.print(table)
    out.print(
        f"bench in {out_dir / 'bench.json'}, tables in {out_dir / 'bench.md'}, plot in "
        f"{out_dir / 'double_bind.png'}, report in {out_dir / 'report.html'} (stage compute "
        f"{bench['timing']['total_s']:.1f}s, this run {bench['_wall_s']:.1f}s)",
        highlight=False,
        markup=False,
    )


def bench(
    overrides: Overrides = None,
    config: ConfigOpt = None,
    battery: Annotated[
        list[Path] | None,
        typer.Option("--battery", help="Battery YAML file (repeatable); replaces the batteries."),
    ] = None,
    quick: Annotated[
        bool, typer.Option("--quick", help="Two drives, tiny organisms (about a minute; tests).")
    ] = False,
    out_dir: Annotated[Path, typer.Option("--out", help="Directory for the outputs.")] = Path(
        "runs/bench"
    ),
    store_dir: StoreOpt = DEFAULT_STORE,
    backend: BackendOpt = "local",
    workers: WorkersOpt = None,
    threads: ThreadsOpt = None,
    address: AddressOpt = None,
    dry_run: DryRunOpt = False,
    as_json: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """The organism zoo benchmark: direct audit vs each battery, TPR / FPR / AUROC; resumable."""

    def body() -> None:
        from incriminate.plan.bench_config import load_bench_config

        cfg = load_bench_config(config, overrides, quick, battery)
        check_backend(backend, workers, threads, address)
        n_workers = worker_count(workers)
        plan, nodes = _plan(cfg)
        if dry_run:
            _dry_run(plan, cfg, store_dir, n_workers, as_json)
            return
        run = {"backend": backend, "workers": n_workers, "threads": threads, "address": address}
        result = _execute(cfg, plan, nodes, out_dir, store_dir, run, verbose)
        if as_json:
            out.print_json(json.dumps({k: v for k, v in result.items() if k != "_wall_s"}))
        else:
            _print_summary(result, out_dir)

    run_command(body)
