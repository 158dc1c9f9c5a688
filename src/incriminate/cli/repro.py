"""`incriminate repro ...`: reproductions of published results."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

app = typer.Typer(help="Reproduce published results with this project's losses and training code.")
log = logging.getLogger(__name__)


@app.callback()
def _group() -> None:
    """Reproduce published results with this project's losses and training code."""


def _fail(message: str) -> typer.Exit:
    """Print a one-line error to stderr and return the exit (code 2: bad input)."""
    Console(stderr=True).print(
        f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True
    )
    return typer.Exit(code=2)


def _check_writable(out: Path) -> None:
    """Create ``out`` and make sure a file can be written there, before any training."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise _fail(f"cannot write to --out {out}: {e.strerror or e}") from None
    if not os.access(out, os.W_OK):
        raise _fail(f"cannot write to --out {out}: permission denied")


def _table(result: dict) -> Table:
    table = Table(title=f"Subliminal learning on 8x8 digits (chance {result['chance']:.2f})")
    for col in ("arm", "test accuracy", "95% CI (t)", "seeds"):
        table.add_column(col, justify="left" if col == "arm" else "right")
    for r in result["arms"]:
        low, high = r["ci95"]
        table.add_row(r["name"], f"{r['mean']:.3f}", f"[{low:.3f}, {high:.3f}]", str(r["n"]))
    return table


@app.command("subliminal-digits")
def subliminal_digits(
    out: Annotated[
        Path, typer.Option(help="Folder for repro.json, repro.md and repro.png.")
    ] = Path("runs/repro-subliminal"),
    seeds: Annotated[
        int | None, typer.Option(help="Seeds per arm (default: 10, or 4 with --quick).")
    ] = None,
    quick: Annotated[bool, typer.Option(help="Reduced setting: fewer arms and steps.")] = False,
    paper_scale: Annotated[
        bool,
        typer.Option(
            "--paper-scale",
            help="60,000 noise inputs per student, as many as MNIST has training images "
            "(about 7 min on 2 cores instead of 1).",
        ),
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the result as JSON instead of a table.")
    ] = False,
) -> None:
    """Cloud et al. 2025's auxiliary-logit experiment on sklearn's 8x8 digits.

    Students distilled on noise, on the teacher's auxiliary logits only, classify real digits
    above chance only when they share the teacher's init.
    """
    if seeds is not None and seeds < 2:
        raise _fail(f"--seeds must be at least 2 (a confidence interval needs 2), got {seeds}")
    if quick and paper_scale:
        raise _fail("--quick and --paper-scale exclude each other")
    _check_writable(out)
    from incriminate.repro import subliminal  # torch and sklearn: only when the command runs

    config = subliminal.SubliminalConfig.quick() if quick else subliminal.SubliminalConfig()
    if paper_scale:
        config = subliminal.SubliminalConfig.paper_scale()
    if seeds is not None:
        config = subliminal.SubliminalConfig.model_validate({**config.model_dump(), "seeds": seeds})
    console = Console(stderr=True)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task("training teacher", total=len(config.arms) + 1)

        def advance(done: str) -> None:
            progress.update(task, advance=1, description=f"done: {done}")

        result = subliminal.run(config, out, on_arm_done=advance)
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    Console().print(_table(result))
    console.print(
        f"wrote {out / 'repro.json'}, repro.md, repro.png in {result['wall_s']:.1f} s",
        markup=False,
    )
