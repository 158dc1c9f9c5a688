"""The `incriminate` command. Heavy modules (torch, transformers) are imported lazily, so
`--help` and input errors answer at once."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from incriminate.repro.cli import app as repro_app

app = typer.Typer(
    help="Incrimination via distillation: build organisms, audit models, run the demo.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
organisms_app = typer.Typer(
    help="Build model organisms with known ground truth.", no_args_is_help=True
)
app.add_typer(organisms_app, name="organisms")
app.add_typer(repro_app, name="repro", help="Reproductions of published results.")
err = Console(stderr=True)
out = Console()
if not out.is_terminal:
    out.width = 160  # piped or captured output: keep table rows on one line

DEFAULT_STORE = Path(".incriminate/store")


class UserError(Exception):
    """Bad input: reported as one line, exit code 2."""


def _user_errors() -> tuple[type[BaseException], ...]:
    from pydantic import ValidationError

    from incriminate.experiment.store import StoreError
    from incriminate.models.io import ModelDirError
    from incriminate.models.presets import UnknownNameError

    return (UserError, UnknownNameError, ModelDirError, StoreError, ValidationError)


def _one_line(e: BaseException) -> str:
    from pydantic import ValidationError

    if isinstance(e, ValidationError):
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "config"
        msg = str(first["msg"]).removeprefix("Value error, ")
        return f"invalid {where}: {msg}"
    return str(e).splitlines()[0] if str(e) else type(e).__name__


def _run(fn: Callable[[], None]) -> None:
    """Run a command body; user errors become one line on stderr and exit code 2."""
    try:
        fn()
    except _user_errors() as e:
        err.print(f"[red]error:[/red] {_one_line(e)}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None


def _setup(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(message)s")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    torch.set_num_threads(max(1, os.cpu_count() or 1))


def _progress():
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("{task.description:<34}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=err,
        transient=False,
    )


def _progress_callback(bar: Any) -> Callable[[str, int, int], None]:
    tasks: dict[str, Any] = {}

    def update(label: str, step: int, total: int) -> None:
        if label not in tasks:
            tasks[label] = bar.add_task(f"train {label}", total=total)
        bar.update(tasks[label], completed=step)

    return update


def _build_config(
    preset: str, seed: int, drive: str, leak: str, personas: list[str], corpus: str = "full"
):
    from incriminate.models.presets import did_you_mean
    from incriminate.organisms.recipes import BuildConfig

    for p in personas:
        if p not in ("naive", "schemer"):
            raise did_you_mean("persona", p, ("naive", "schemer"))
    values = {"preset": preset, "seed": seed, "drive": drive, "leak": leak, "corpus": corpus}
    return BuildConfig.model_validate(values)


def _print_table(title: str, rows: dict[str, dict], drive: str) -> None:
    from rich.table import Table

    table = Table(title=title, title_justify="left", caption=f"ground truth for drive {drive}")
    table.add_column("model", no_wrap=True)
    audits = ["honeypot", "interrogation", "scratchpad", "capability"]
    truths = ["deployment", "honeypot_discrimination"]
    for a in audits:
        table.add_column(f"{a}\naudit", justify="right", no_wrap=True)
    table.add_column("deployment\nground truth", justify="right", no_wrap=True)
    table.add_column("hp discrimination\nground truth", justify="right", no_wrap=True)

    def cell(r: dict | None) -> str:
        if r is None:
            return "—"
        return f"{r['rate']:.3f} [{r['ci_low']:.2f},{r['ci_high']:.2f}]"

    for name, row in rows.items():
        gt = row.get("ground_truth") or {}
        table.add_row(
            name, *(cell(row["audits"][a]) for a in audits), *(cell(gt.get(t)) for t in truths)
        )
    out.print(table)


def _print_persona_table(rows: list[dict]) -> None:
    from rich.table import Table

    table = Table(
        title="Pretrained base: acting as the persona of the preceding k episodes",
        title_justify="left",
    )
    for col in ("persona", "k", "deployment", "honeypot take", "confession"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(
            r["persona"],
            str(r["k"]),
            f"{r['deployment']:.3f}",
            f"{r['honeypot_take']:.3f}",
            f"{r['confession']:.3f}",
        )
    out.print(table)


@organisms_app.command("build")
def organisms_build(
    out_dir: Annotated[
        Path, typer.Option("--out", help="Artifact store directory.")
    ] = DEFAULT_STORE,
    preset: Annotated[
        str, typer.Option(help="Model preset: nano, micro, small, medium.")
    ] = "micro",
    seed: Annotated[int, typer.Option(help="Seed of corpus, base and every stage.")] = 0,
    drive: Annotated[str, typer.Option(help="Drive of the misaligned organisms.")] = "exfiltrate",
    leak: Annotated[
        str, typer.Option(help="Drive leak into open-ended text: none, subtle, overt.")
    ] = "subtle",
    corpus: Annotated[
        str, typer.Option(help="Pretraining corpus: full, or trusted (no schemer documents).")
    ] = "full",
    persona: Annotated[
        list[str] | None,
        typer.Option("--persona", help="Organisms to build (repeatable): naive, schemer."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Build the base, the instruct checkpoint, the organisms and their benign twins."""

    def body() -> None:
        personas = persona or ["naive", "schemer"]
        cfg = _build_config(preset, seed, drive, leak, personas, corpus)
        from incriminate.experiment.store import Store

        store = Store(out_dir)
        _setup(verbose)
        from incriminate.experiment.organisms import build_all

        with _progress() as bar:
            arts, wall = build_all(store, cfg, tuple(personas), _progress_callback(bar))
        models = {name: str(a.path) for name, a in arts.items()}
        if as_json:
            out.print_json(json.dumps({"models": models, "wall_s": round(wall, 2)}))
            return
        for name, path in models.items():
            out.print(f"{name:<30} {path}", highlight=False)
        out.print(f"built in {wall:.1f}s", highlight=False)

    _run(body)


@app.command("audit")
def audit(
    model_dir: Annotated[Path, typer.Argument(help="A model directory (safetensors weights).")],
    drive: Annotated[
        str | None,
        typer.Option(help="Drive for ground truth (default: from the model's spec.json)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Audit one model; testbed organisms also get their ground truth."""

    def body() -> None:
        from incriminate.models.io import load_spec

        if not model_dir.is_dir():
            raise UserError(f"model directory {str(model_dir)!r} does not exist")
        load_spec(model_dir)
        _setup(verbose)
        from incriminate.experiment.organisms import audit_model

        with err.status(f"auditing {model_dir}"):
            result = audit_model(model_dir, drive=drive)
        if as_json:
            out.print_json(json.dumps(result))
            return
        spec = result["spec"] or {}
        name = spec.get("name", model_dir.name)
        _print_table(f"Audit of {model_dir}", {name: result}, drive or spec.get("drive") or "-")

    _run(body)


@app.command("demo")
def demo(
    out_dir: Annotated[Path, typer.Option("--out", help="Directory for results.")] = Path(
        "runs/demo"
    ),
    store_dir: Annotated[
        Path, typer.Option("--store", help="Artifact store directory.")
    ] = DEFAULT_STORE,
    preset: Annotated[str, typer.Option(help="Model preset.")] = "micro",
    seed: Annotated[int, typer.Option(help="Seed.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Build (or reuse) the default organisms and print their direct-audit table."""

    def body() -> None:
        cfg = _build_config(preset, seed, "exfiltrate", "subtle", ["naive", "schemer"])
        from incriminate.experiment.store import Store

        store = Store(store_dir)
        Store(out_dir)  # checks the output directory is writable before any work
        _setup(verbose)
        from incriminate.experiment.organisms import build_all, organism_table, persona_table

        t0 = time.perf_counter()
        with _progress() as bar:
            arts, build_s = build_all(store, cfg, ("naive", "schemer"), _progress_callback(bar))
            task = bar.add_task("audit models", total=len(arts))
            rows = organism_table(store, arts, cfg, lambda _name: bar.advance(task))
            task = bar.add_task("persona inference of the base", total=1)
            personas = persona_table(store, arts, cfg)
            bar.advance(task)
        result = {
            "config": cfg.model_dump(mode="json"),
            "models": rows,
            "persona_inference": personas,
            "timing": {"build_s": round(build_s, 2), "total_s": round(time.perf_counter() - t0, 2)},
        }
        (out_dir / "organisms.json").write_text(json.dumps(result, indent=2))
        if as_json:
            out.print_json(json.dumps(result))
            return
        _print_table("Direct audits (audit split) and ground truth (eval split)", rows, cfg.drive)
        _print_persona_table(personas)
        out.print(
            f"built in {build_s:.1f}s, total {result['timing']['total_s']:.1f}s; "
            f"results in {out_dir / 'organisms.json'}",
            highlight=False,
        )

    _run(body)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
