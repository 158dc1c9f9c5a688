"""`incriminate organisms build` (the default recipe's organisms, their direct audits and ground
truth, as a plan on the engine) and `incriminate audit MODEL_DIR` (one model directory)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer

from incriminate.cli.console import DEFAULT_STORE, bar_callback, err, out
from incriminate.cli.console import progress as _progress
from incriminate.cli.console import run_command as _run
from incriminate.cli.console import setup as _setup
from incriminate.errors import UserError

app = typer.Typer(help="Build model organisms with known ground truth.", no_args_is_help=True)


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


@app.command("build")
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
    workers: Annotated[
        int,
        typer.Option(help="Worker processes (one torch thread each); results do not depend on it."),
    ] = 2,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Build the base, the instruct checkpoint, the organisms and their benign twins, and print
    their direct audits and ground truth."""

    def body() -> None:
        personas = persona or ["naive", "schemer"]
        cfg = _build_config(preset, seed, drive, leak, personas, corpus)
        if workers < 1:
            raise UserError(f"--workers must be at least 1, got {workers}")
        from incriminate.store import Store

        store = Store(out_dir)
        _setup(verbose)
        from incriminate.plan.engine import run_plan
        from incriminate.plan.graph import Plan
        from incriminate.plan.organisms import collect_organisms, plan_organisms

        t0 = time.perf_counter()
        plan = Plan()
        nodes = plan_organisms(plan, cfg, tuple(personas))
        with _progress() as bar:
            results = run_plan(plan, store, workers, bar_callback(bar))
        collected = collect_organisms(nodes, results, store)
        wall = time.perf_counter() - t0
        models, rows = collected["models"], collected["audits"]
        personas_rows = collected["persona_inference"]
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
            out.print(f"{name:<30} {path}", highlight=False, markup=False)
        _print_table("Direct audits (audit split) and ground truth (eval split)", rows, cfg.drive)
        _print_persona_table(personas_rows)
        out.print(f"built in {wall:.1f}s", highlight=False)

    _run(body)


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


__all__ = ["app", "audit", "organisms_build"]
