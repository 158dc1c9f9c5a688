"""`incriminate bench`: the organism zoo benchmark through the command line.

Resolves the bench config (defaults or `--quick`, then `--config FILE`, then `--battery FILE`s,
then dotted overrides), runs every stage on the artifact store, and writes into `--out`:

    bench.yaml     the resolved config (its hash is `config_hash` in bench.json)
    zoo.json       the zoo's manifest (ground-truth labels: for evaluating the procedure only)
    bench.json     every number (schema in `experiment.bench_results`)
    bench.md       the tables
    double_bind.png  drive transferred vs evasion retained per configuration

Every input is validated before anything is written; a rerun reuses every finished stage.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from incriminate.cli.console import DEFAULT_STORE, out, progress, run_command
from incriminate.cli.run import (
    ConfigOpt,
    JsonOpt,
    Overrides,
    StoreOpt,
    VerboseOpt,
    WorkersOpt,
    _bar_callback,
    prepare,
)


def _execute(cfg: Any, out_dir: Path, store_dir: Path, workers: int, verbose: bool) -> dict:
    store = prepare(out_dir, store_dir, workers, verbose)
    from incriminate.organisms.zoo import entries
    from incriminate.plan.bench import run_bench
    from incriminate.report.bench import plot_double_bind, render_markdown
    from incriminate.report.bench_results import assemble
    from incriminate.report.outputs import keep

    t0 = time.perf_counter()
    with progress() as bar:
        raw = run_bench(cfg, store, workers, _bar_callback(bar))
    bench = assemble(cfg, raw)
    files = {
        "bench.yaml": yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False),
        "zoo.json": json.dumps([e.as_dict() for e in entries(cfg.zoo)], indent=1) + "\n",
        "bench.json": json.dumps(bench, indent=1) + "\n",
        "bench.md": render_markdown(bench),
    }
    for name, text in files.items():
        (out_dir / name).write_text(text)
    plot_double_bind(bench, out_dir / "double_bind.png")
    keep(store.root / "bench" / cfg.config_hash(), files)
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
        f"{out_dir / 'double_bind.png'} (stage compute {bench['timing']['total_s']:.1f}s, "
        f"this run {bench['_wall_s']:.1f}s)",
        highlight=False,
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
    workers: WorkersOpt = 2,
    as_json: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """The organism zoo benchmark: direct audit vs each battery, TPR / FPR / AUROC."""

    def body() -> None:
        from incriminate.plan.bench_config import load_bench_config

        cfg = load_bench_config(config, overrides, quick, battery)
        result = _execute(cfg, out_dir, store_dir, workers, verbose)
        if as_json:
            out.print_json(json.dumps({k: v for k, v in result.items() if k != "_wall_s"}))
        else:
            _print_summary(result, out_dir)

    run_command(body)
