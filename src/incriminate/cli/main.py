"""The `incriminate` command. Heavy modules (torch, transformers) are imported lazily, so
`--help` and input errors answer at once."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from incriminate.cli import bench as bench_command
from incriminate.cli import run as commands
from incriminate.cli import sweep as sweep_command
from incriminate.cli.console import DEFAULT_STORE, err, out
from incriminate.cli.console import progress as _progress
from incriminate.cli.console import run_command as _run
from incriminate.cli.console import setup as _setup
from incriminate.cli.report import report
from incriminate.cli.repro import app as repro_app
from incriminate.errors import UserError

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
    from incriminate.errors import did_you_mean
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
    if any("probe" in row["audits"] for row in rows.values()):
        audits.append("probe")
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
    """Build the base, the instruct checkpoint, the organisms and their benign twins, and print
    their direct audits and ground truth."""

    def body() -> None:
        personas = persona or ["naive", "schemer"]
        cfg = _build_config(preset, seed, drive, leak, personas, corpus)
        from incriminate.store import Store

        store = Store(out_dir)
        _setup(verbose)
        from incriminate.plan.organisms import build_all, organism_table, persona_table

        with _progress() as bar:
            arts, wall = build_all(store, cfg, tuple(personas), _progress_callback(bar))
            task = bar.add_task("audit models", total=len(arts))
            rows = organism_table(store, arts, cfg, lambda _name: bar.advance(task))
            personas_rows = persona_table(store, arts, cfg)
        models = {name: str(a.path) for name, a in arts.items()}
        if as_json:
            result = {
                "models": models,
                "audits": rows,
                "persona_inference": personas_rows,
                "wall_s": round(wall, 2),
            }
            out.print_json(json.dumps(result))
            return
        for name, path in models.items():
            out.print(f"{name:<30} {path}", highlight=False)
        _print_table("Direct audits (audit split) and ground truth (eval split)", rows, cfg.drive)
        _print_persona_table(personas_rows)
        out.print(f"built in {wall:.1f}s", highlight=False)

    _run(body)


@app.command("audit")
def audit(
    model_dir: Annotated[Path, typer.Argument(help="A model directory (safetensors weights).")],
    drive: Annotated[
        str | None,
        typer.Option(help="Drive for ground truth (default: from the model's spec.json)."),
    ] = None,
    probe: Annotated[
        Path | None,
        typer.Option(
            help="A trained probe directory (e.g. STORE/probe/KEY): adds the probe audit."
        ),
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
        trained = None
        if probe is not None:
            from incriminate.audit.probe import Probe

            try:
                trained = Probe.load(probe)
            except ValueError as e:
                raise UserError(f"probe: {e}") from None
        _setup(verbose)
        from incriminate.plan.organisms import audit_model

        with err.status(f"auditing {model_dir}"):
            result = audit_model(model_dir, drive=drive)
            if trained is not None:
                from incriminate.audit.probe import probe_audit
                from incriminate.models.io import load_model
                from incriminate.world.config import WorldConfig

                spec = load_spec(model_dir)
                world = WorldConfig.model_validate(spec.world) if spec and spec.world else None
                rate = probe_audit(load_model(model_dir), world or WorldConfig(), trained)
                result["audits"]["probe"] = rate.as_dict()
        if as_json:
            out.print_json(json.dumps(result))
            return
        spec = result["spec"] or {}
        name = spec.get("name", model_dir.name)
        _print_table(f"Audit of {model_dir}", {name: result}, drive or spec.get("drive") or "-")

    _run(body)


app.command("demo")(commands.demo)
app.command("distill")(commands.distill)
app.command("bench")(bench_command.bench)
app.command("sweep")(sweep_command.sweep)
app.command("results")(sweep_command.results)
app.command("report")(report)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
