"""`incriminate report DIR`: the HTML report of a demo, distill, sweep or bench output directory."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from incriminate.cli.console import DEFAULT_STORE, err, out, run_command

__all__ = ["build_transcripts", "report"]


def build_transcripts(docs: list[dict[str, Any]], store_dir: Path) -> None:
    """Build the `transcripts` stage of every results document whose store lacks it (an output
    made before transcripts were a stage, or with another store), in this process."""
    from incriminate.plan import transcripts as tr
    from incriminate.plan.engine import run_plan
    from incriminate.plan.graph import Plan
    from incriminate.store import Store

    plan = Plan()
    for doc in docs:
        if tr.read(store_dir, doc) is None:
            tr.plan_transcripts(plan, doc)
    if plan.nodes:
        with err.status("generating transcripts"):
            run_plan(plan, Store(store_dir), workers=1)


def report(
    directory: Annotated[
        Path, typer.Argument(help="Output directory of demo, distill, sweep or bench.")
    ],
    out_file: Annotated[
        Path | None,
        typer.Option("--out", help="Where to write the page (default DIR/report.html)."),
    ] = None,
    store_dir: Annotated[
        Path,
        typer.Option("--store", help="Artifact store the run used (transcripts, training curves)."),
    ] = DEFAULT_STORE,
    transcripts: Annotated[
        bool,
        typer.Option(help="Show example transcripts (built from the store's models when missing)."),
    ] = True,
) -> None:
    """Write a self-contained HTML report (plots, tables, transcripts) and print its path."""

    def body() -> None:
        from incriminate.report.html import read_input, write_report

        found = read_input(directory)  # bad input: one line before anything runs
        if transcripts and store_dir.is_dir():
            docs = [found.doc] if found.kind == "results" else list(found.points.values())
            build_transcripts(docs, store_dir)
        path = write_report(directory, out_file, store_dir, transcripts)
        out.print(str(path), highlight=False, soft_wrap=True, markup=False)

    run_command(body)
