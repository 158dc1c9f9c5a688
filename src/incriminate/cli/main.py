"""The `incriminate` command. Heavy modules (torch, transformers) are imported lazily, so
`--help` and input errors answer at once."""

from __future__ import annotations

import sys

import typer

from incriminate.cli import bench as bench_command
from incriminate.cli import organisms
from incriminate.cli import run as commands
from incriminate.cli import sweep as sweep_command
from incriminate.cli.console import err
from incriminate.cli.evals import app as evals_app
from incriminate.cli.ls import ls
from incriminate.cli.report import report
from incriminate.cli.repro import app as repro_app
from incriminate.cli.store import app as store_app

app = typer.Typer(
    help="Incrimination via distillation: build organisms, audit models, run the demo.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(organisms.app, name="organisms")
app.add_typer(repro_app, name="repro", help="Reproductions of published results.")
app.add_typer(store_app, name="store", help="Check and repair the artifact store.")
app.add_typer(evals_app, name="evals", help="Inspect AI eval logs: a verdict from them.")


app.command("audit")(organisms.audit)
app.command("demo")(commands.demo)
app.command("distill")(commands.distill)
app.command("bench")(bench_command.bench)
app.command("sweep")(sweep_command.sweep)
app.command("results")(sweep_command.results)
app.command("report")(report)
app.command("ls")(ls)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
