"""`incriminate sweep` (a grid of experiments, local or on Ray) and `incriminate results` (SQL over
the results store). Every input is checked before a stage starts: a bad sweep file, an empty
grid, an unknown field, an unreachable Ray address or a store that is not writable is one line
on stderr and exit code 2."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

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
from incriminate.cli.run import JsonOpt, StoreOpt, VerboseOpt, _bar_callback
from incriminate.errors import DAMAGED, UserError


def _summary(doc: dict[str, Any], out_dir: Path) -> None:
    from rich.table import Table

    table = Table(title=f"Sweep {doc['name']}", title_justify="left")
    for col in ("point", "overrides", "verdict", "p"):
        table.add_column(col, justify="right" if col == "p" else "left")
    for p in doc["points"]:
        label = escape(", ".join(f"{k}={v}" for k, v in p["overrides"].items()))
        v = p["verdict"]
        verdict = v["decision"] if v else f"[red]{p['status']}[/red]"
        table.add_row(p["id"], label, verdict, f"{v['p_value']:.3g}" if v else "—")
    out.print(table)
    for f in doc["failures"]:
        out.print(
            f"[red]failed[/red] {f['stage']}: " + escape(f"{f['error']} (log: {f['log']})"),
            highlight=False,
        )
    out.print(
        escape(f"sweep in {out_dir / 'sweep.json'}, report in {out_dir / 'report.html'}"),
        highlight=False,
    )


def sweep(
    config: Annotated[Path, typer.Argument(help="Sweep file (YAML): base config and grid.")],
    out_dir: Annotated[
        Path | None,
        typer.Option("--out", help="Directory for the outputs (default: runs/sweep/NAME)."),
    ] = None,
    store_dir: StoreOpt = DEFAULT_STORE,
    backend: BackendOpt = "local",
    workers: WorkersOpt = None,
    threads: ThreadsOpt = None,
    address: AddressOpt = None,
    dry_run: DryRunOpt = False,
    as_json: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Run a grid of experiments: every point's stages, each shared stage once; resumable."""

    def body() -> None:
        from incriminate.plan.executors import execute
        from incriminate.plan.sweep import dry_run as plan_rows
        from incriminate.plan.sweep import load_sweep, plan_sweep
        from incriminate.report.outputs import write_sweep
        from incriminate.store import Store

        spec, name, points = load_sweep(config)
        check_backend(backend, workers, threads, address)
        n_workers = worker_count(workers)
        store = Store(store_dir)
        plan, exps = plan_sweep(points)
        if dry_run:
            rows = plan_rows(plan, store.root)
            if as_json:
                out.print_json(json.dumps({"name": name, "points": len(points), "plan": rows}))
            else:
                plan_table(rows, f"Plan: {len(points)} points", n_workers)
            return
        target = out_dir or Path("runs/sweep") / name
        Store(target)
        (target / "sweep.yaml").write_text(Path(config).read_text())
        setup(verbose)
        logs = {i: target / "logs" / f"{n.kind}-{i}.log" for i, n in plan.nodes.items()}

        def failed(node: Any, error: str, log: Path | None) -> None:
            err.print(
                f"[red]stage {node.kind} {node.id} failed:[/red] {escape(f'{error} (log: {log})')}"
            )

        with open_executor(backend, n_workers, threads, address) as executor, progress() as bar:
            outcome = execute(
                plan,
                executor,
                store.root,
                log_dir=target / "logs",
                progress=_bar_callback(bar),
                on_failure=failed,
            )
        doc = write_sweep(points, exps, plan, outcome, store, name, spec.grid, target, logs)
        from incriminate.report.html import write_report

        with err.status("writing report.html"):
            write_report(target, None, store.root)
        if as_json:
            out.print_json(json.dumps(doc))
        else:
            _summary(doc, target)
        if doc["failures"]:  # a damaged artifact is the store's fault, not a stage's: exit 2
            damaged = any(f["error"].startswith(DAMAGED) for f in doc["failures"])
            raise typer.Exit(2 if damaged else 1)

    run_command(body)


def results(
    store_dir: StoreOpt = DEFAULT_STORE,
    table: Annotated[
        str,
        typer.Option(help="configurations (U vs C per metric), runs, verdicts or bench."),
    ] = "configurations",
    where: Annotated[
        str | None, typer.Option(help="SQL condition, e.g. \"metric = 'honeypot'\".")
    ] = None,
    group_by: Annotated[
        str | None, typer.Option("--group-by", help="Columns to group by, comma-separated.")
    ] = None,
    columns: Annotated[
        str | None,
        typer.Option(help="Columns to show, comma-separated (grouped: the values to average)."),
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="table, csv or json.")] = "table",
) -> None:
    """Query the results of every experiment in the store (demos, distills, sweep points,
    benches)."""

    def body() -> None:
        from incriminate.report.results_store import QueryError, query

        if fmt not in ("table", "csv", "json"):
            raise UserError(f"--format must be table, csv or json, got {fmt!r}")

        def split(text: str | None) -> list[str] | None:
            return [c.strip() for c in text.split(",") if c.strip()] if text else None

        try:
            names, rows = query(store_dir, table, where, split(group_by), split(columns))
        except QueryError as e:
            raise UserError(str(e)) from None
        _print_rows(names, rows, fmt)

    run_command(body)


def _print_rows(names: list[str], rows: list[tuple], fmt: str) -> None:
    if fmt == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(names)
        writer.writerows(rows)
        return
    if fmt == "json":
        sys.stdout.write(json.dumps([dict(zip(names, r, strict=True)) for r in rows]) + "\n")
        return
    from rich.table import Table

    table = Table(caption=f"{len(rows)} rows")
    for n in names:
        table.add_column(n, overflow="fold")
    for r in rows:
        table.add_row(
            *("—" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v) for v in r)
        )
    out.print(table)


def _cell(v: Any) -> str:
    if v is None:
        return "—"
    return f"{v:.4g}" if isinstance(v, float) else str(v)


__all__ = ["results", "sweep"]
