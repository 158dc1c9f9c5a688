"""`incriminate report DIR`: the HTML report of a demo, distill, sweep or bench output directory."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from incriminate.cli.console import DEFAULT_STORE, out, run_command

__all__ = ["report"]


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
        bool, typer.Option(help="Generate example transcripts from the store's models.")
    ] = True,
) -> None:
    """Write a self-contained HTML report (plots, tables, transcripts) and print its path."""

    def body() -> None:
        from incriminate.report.html import write_report

        path = write_report(directory, out_file, store_dir, transcripts)
        out.print(str(path), highlight=False, soft_wrap=True)

    run_command(body)
