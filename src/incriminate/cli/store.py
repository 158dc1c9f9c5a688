"""`incriminate store verify`: check every stage of an artifact store against its manifest.

    incriminate store verify                  one line per damaged stage; exit 1 if any
    incriminate store verify --repair         remove them: the next run rebuilds exactly those
    incriminate store verify --json           {"store", "stages", "bytes", "damaged": [...]}

A stage is damaged when its manifest cannot be read, a file it lists is missing or differs in
size or SHA-256, or it is half-written (a `.tmp-` folder no build holds, a folder without a
manifest). `--repair` removes those folders and the plan-node records (`STORE/nodes`) whose
result names them, so `--dry-run` counts them as to do. A rebuilt stage gets the same key (keys
hash a stage's inputs, not its outputs) and the same bytes (stages are deterministic), so the
stages built on it stay valid and are reused. Exit code: 0 when the store is clean at the end
(nothing found, or all of it removed by `--repair`), 1 when damage remains, 2 on bad input.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from incriminate.cli.console import DEFAULT_STORE, err, out, progress, run_command

app = typer.Typer(no_args_is_help=True, help="Check and repair the artifact store.")


def find_damage(root: Path, show_progress: bool = True) -> tuple[int, int, list[dict[str, str]]]:
    """(stages checked, bytes hashed, [{"stage", "path", "problem"}]) of the store at `root`."""
    from incriminate.store import Store

    store = Store(root, writable=False)
    stages = store.stages()
    damaged, hashed = [], 0
    with progress() as bar:
        task = bar.add_task("verifying stages", total=len(stages), visible=show_progress)
        for kind, name in stages:
            problem = None
            if name.startswith(".tmp-"):
                key = name.removeprefix(".tmp-").split("-")[0]
                if not store.building(kind, key):
                    problem = "half-written (a build that was cut short)"
            else:
                manifest, problem = store.check(kind, name)
                if manifest is not None:
                    hashed += sum(int(f.get("size", 0)) for f in manifest.get("files", {}).values())
            if problem is not None:
                path = str(store.root / kind / name)
                damaged.append({"stage": f"{kind}/{name}", "path": path, "problem": problem})
            bar.advance(task)
    return len(stages), hashed, damaged


def repair(root: Path, damaged: list[dict[str, str]]) -> int:
    """Remove the damaged stage folders and the node records that name them; returns how many
    records were removed."""
    from incriminate.plan.executors import NODES

    for d in damaged:
        shutil.rmtree(d["path"], ignore_errors=True)
    names = [d["stage"] for d in damaged if not d["stage"].split("/")[1].startswith(".tmp-")]
    removed = 0
    for record in sorted((root / NODES).glob("*.json")):
        try:
            result = json.dumps(json.loads(record.read_text())["result"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if any(f'"{n}"' in result for n in names):
            record.unlink(missing_ok=True)
            removed += 1
    return removed


@app.command("verify")
def verify(
    store_dir: Annotated[
        Path, typer.Option("--store", help="Artifact store to check.")
    ] = DEFAULT_STORE,
    repair_: Annotated[
        bool,
        typer.Option(
            "--repair", help="Remove the damaged stages; the next run rebuilds exactly those."
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the findings as JSON.")] = False,
) -> None:
    """Check every stage of the store (manifest, file sizes, SHA-256) and list the damaged or
    half-written ones, one line each. Exit code 0: clean; 1: damage found (and not repaired)."""
    found: dict[str, Any] = {}

    def body() -> None:
        from incriminate.errors import UserError

        if not store_dir.is_dir():
            raise UserError(f"no artifact store at {str(store_dir)!r}")
        t0 = time.perf_counter()
        n, hashed, damaged = find_damage(store_dir, show_progress=not as_json)
        records = repair(store_dir, damaged) if repair_ and damaged else 0
        found.update(
            store=str(store_dir), stages=n, bytes=hashed, damaged=damaged,
            repaired=repair_ and bool(damaged), node_records_removed=records,
            seconds=round(time.perf_counter() - t0, 3),
        )  # fmt: skip
        if as_json:
            out.print_json(json.dumps(found))
            return
        for d in damaged:
            line = f"damaged {d['stage']}: {d['problem']}"
            out.print(escape(line), highlight=False, soft_wrap=True)
        summary = f"checked {n} stages ({hashed / 1e6:.1f} MB) in {found['seconds']:.2f}s"
        if not damaged:
            out.print(f"{summary}: no damage", highlight=False)
        elif repair_:
            out.print(
                f"{summary}: removed {len(damaged)} damaged stage(s) and {records} node "
                "record(s); the next run rebuilds them",
                highlight=False,
            )
        else:
            err.print(
                escape(
                    f"{summary}: {len(damaged)} damaged; remove them with "
                    f"`incriminate store verify --repair --store {store_dir}`"
                ),
                highlight=False,
                soft_wrap=True,
            )

    run_command(body)
    if found.get("damaged") and not repair_:
        raise typer.Exit(1)
