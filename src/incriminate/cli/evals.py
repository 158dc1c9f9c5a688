"""`incriminate evals`: the audits' Inspect AI eval logs (docs/inspect.md).

incriminate evals verdict LOGS...     the verdict from `.eval` logs (files or directories)
incriminate evals model-path MODEL    the Hugging Face directory of a model reference, for
                                      `inspect eval --model hf/NAME -M model_path=DIR`
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from incriminate.cli.console import out, run_command
from incriminate.errors import UserError

app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False)


@app.command("verdict")
def verdict(
    logs: Annotated[list[Path], typer.Argument(help="Eval logs (.eval) or directories of them.")],
    alpha: Annotated[
        float | None,
        typer.Option(help="Level of the test (default: the one the logs were written with)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the verdict as JSON.")] = False,
) -> None:
    """The verdict from eval logs: every student's audits (role, configuration and seed in each
    log's metadata) against the control's students, calibrated by the benign references'."""

    def body() -> None:
        from incriminate.evals.logs import read_logs, verdict_from_logs

        if alpha is not None and not 0.0 < alpha < 1.0:
            raise UserError(f"--alpha must be in (0, 1), got {alpha}")
        found = read_logs(logs)
        record = verdict_from_logs(found, alpha)
        if as_json:
            out.print_json(json.dumps(record))
            return
        students = {(g.role, g.configuration, g.seed) for g in found if g.configuration}
        out.print(
            f"{len(found)} logs, {len(students)} students; audits {record['audits']}\n"
            f"verdict: [bold]{record['decision']}[/bold] (p = {record['p_value']:.4g}) — "
            f"{record['reason']}",
            highlight=False,
            soft_wrap=True,
        )

    run_command(body)


@app.command("model-path")
def model_path(
    model: Annotated[str, typer.Argument(help="A model directory, a .gguf file or pkg:<name>.")],
) -> None:
    """The Hugging Face directory Inspect's `hf` provider loads for a model reference: a GGUF
    file or packaged weights converted once into the weights cache, a directory as it is."""

    def body() -> None:
        from incriminate.models.ref import kind_of, materialized, model_ref

        ref = model_ref(model)
        kind = kind_of(ref)
        if kind == "adapter":
            raise UserError(
                f"{model} is a PEFT adapter: Inspect's hf provider loads a whole model "
                "(merge the adapter into its base first)"
            )
        where = materialized(ref) if kind == "gguf" else Path(model).expanduser().resolve()
        typer.echo(str(where))

    run_command(body)


__all__ = ["app"]
