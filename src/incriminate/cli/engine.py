"""What the commands that run a plan on the engine share (`sweep`, `bench`): the execution
options (`--backend`, `--address`, `--workers`, `--threads`, `--dry-run`), their checks (bad
input is one line and exit code 2 before anything runs), the executor they open and the dry
run's plan table."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from typing import Annotated, Any

import typer

from incriminate.cli.console import out
from incriminate.errors import UserError

BACKENDS = ("local", "ray")

BackendOpt = Annotated[str, typer.Option(help="local (a process pool) or ray.")]
WorkersOpt = Annotated[
    int | None,
    typer.Option(
        help="Local worker processes (default: one per core); results do not depend on it."
    ),
]
ThreadsOpt = Annotated[
    int | None,
    typer.Option(help="Torch threads per stage (default 1, locally and on Ray)."),
]
AddressOpt = Annotated[
    str | None,
    typer.Option(help="Ray cluster HOST:PORT (with --backend ray; default: a local Ray)."),
]
DryRunOpt = Annotated[
    bool, typer.Option("--dry-run", help="Print the plan (stages, done, estimate) and stop.")
]


def check_backend(
    backend: str, workers: int | None, threads: int | None, address: str | None
) -> None:
    """Raise `UserError` (one line) for execution options that cannot work together, a missing
    Ray or an unreachable Ray address."""
    from incriminate.plan.executors import check_ray_address

    if backend not in BACKENDS:
        raise UserError(f"--backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if workers is not None and workers < 1:
        raise UserError(f"--workers must be at least 1, got {workers}")
    if threads is not None and threads < 1:
        raise UserError(f"--threads must be at least 1, got {threads}")
    if backend == "local" and address is not None:
        raise UserError("--address is the Ray cluster's: it needs --backend ray")
    if backend == "ray":
        if workers is not None:
            raise UserError("--workers is the local pool's size: Ray schedules by --threads")
        try:
            import ray  # noqa: F401
        except ImportError:
            raise UserError("--backend ray needs Ray: pip install 'incriminate[ray]'") from None
        if address is not None:
            try:
                check_ray_address(address)
            except ValueError as e:
                raise UserError(str(e)) from None


def worker_count(workers: int | None) -> int:
    """`--workers`, by default one per core."""
    return workers or os.cpu_count() or 1


@contextlib.contextmanager
def open_executor(
    backend: str, workers: int, threads: int | None, address: str | None
) -> Iterator[Any]:
    """The executor of the options (a local pool, a local Ray or a Ray cluster), closed on exit;
    a local Ray's temporary files are removed. Ray that cannot start is a `UserError`."""
    from incriminate.plan.engine import make_executor
    from incriminate.plan.executors import RayExecutor

    temp = None
    if backend == "local":
        executor = make_executor(workers, threads)
    else:
        temp = None if address else tempfile.mkdtemp(prefix="incriminate-ray-")
        try:
            executor = RayExecutor(address, threads or 1, temp_dir=temp)
        except Exception as e:  # Ray refused to start or to connect: nothing has run
            if temp:
                shutil.rmtree(temp, ignore_errors=True)
            raise UserError(f"cannot start Ray: {str(e).splitlines()[0]}") from None
    try:
        yield executor
    finally:
        executor.close()
        if temp:
            shutil.rmtree(temp, ignore_errors=True)


def plan_table(rows: list[dict[str, Any]], title: str, workers: int) -> None:
    """Print a dry run's rows (`plan.sweep.dry_run`): per stage kind, stages, done, to run and
    the estimated compute, then the total."""
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for col in ("stage kind", "stages", "done", "to run", "est. compute"):
        table.add_column(col, justify="left" if col == "stage kind" else "right")
    total: float | None = 0.0
    for r in rows:
        est = r["estimate_s"]
        total = None if est is None or total is None else total + est
        shown = "—" if not r["to_run"] else ("unknown" if est is None else f"~{est:.0f}s")
        table.add_row(r["kind"], str(r["stages"]), str(r["done"]), str(r["to_run"]), shown)
    out.print(table)
    if total is None:
        out.print("estimate: some stage kinds have no recorded timings yet", highlight=False)
    else:
        out.print(
            f"estimate: ~{total:.0f}s of compute, ~{total / workers:.0f}s wall on {workers} "
            "workers (mean recorded time of each kind of stage)",
            highlight=False,
        )


__all__ = [
    "BACKENDS",
    "AddressOpt",
    "BackendOpt",
    "DryRunOpt",
    "ThreadsOpt",
    "WorkersOpt",
    "check_backend",
    "open_executor",
    "plan_table",
    "worker_count",
]
