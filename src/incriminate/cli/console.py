"""Console plumbing shared by the CLI commands: output consoles, one-line user errors (exit
code 2), logging and torch set-up, progress bars."""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape

from incriminate.errors import StageError, one_line, user_errors

err = Console(stderr=True)
out = Console()
if not out.is_terminal:
    out.width = 160  # piped or captured output: keep table rows on one line

DEFAULT_STORE = Path(".incriminate/store")


UNWRITABLE = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}
"""Errors of a write this process makes (outputs, the store's copies, the results store) that
mean the disk, not the code: full, over quota, read-only or not ours."""


def run_command(fn: Callable[[], None]) -> None:
    """Run a command body; user errors become one line on stderr and exit code 2, a failed
    stage (its traceback is in its log file) one line and exit code 1. A write that fails for
    a full or read-only disk is one line naming the path, exit code 2. The message is printed
    as text (a name like `[/x]` in it is not rich markup)."""
    try:
        fn()
    except user_errors() as e:
        err.print(f"[red]error:[/red] {escape(one_line(e))}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    except StageError as e:
        err.print(f"[red]failed:[/red] {escape(one_line(e))}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    except OSError as e:
        if e.errno not in UNWRITABLE:
            raise
        where = f": {e.filename!r}" if e.filename else ""
        line = f"cannot write{where}: {e.strerror or os.strerror(e.errno or 0)}"
        err.print(f"[red]error:[/red] {escape(line)}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None


def setup(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(message)s")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    torch.set_num_threads(max(1, os.cpu_count() or 1))


def progress():
    from rich.progress import (
        BarColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("{task.description:<34}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=err,
        transient=False,
    )


def bar_callback(bar: Any) -> Callable[[str, int, int], None]:
    """A progress callback `(stage kind, done, total)` that keeps one bar per stage kind."""
    tasks: dict[str, Any] = {}

    def update(kind: str, done: int, total: int) -> None:
        if kind not in tasks:
            tasks[kind] = bar.add_task(kind, total=total)
        bar.update(tasks[kind], completed=done, total=total)

    return update
