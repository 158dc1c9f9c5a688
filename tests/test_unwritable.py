"""A read-only store and a full disk (issue 21): one line, nothing half-written.

Tests run as root in CI, where `chmod 0o555` does not stop a write, so the disk is simulated:
every write under a directory fails as the kernel would fail it (EROFS for a read-only bind
mount, ENOSPC for a full disk after the first bytes)."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from incriminate.cli.console import run_command
from incriminate.cli.main import app
from incriminate.errors import StageError, one_line
from incriminate.plan import stages
from incriminate.plan.engine import run_plan
from incriminate.plan.graph import Plan
from incriminate.report.outputs import keep
from incriminate.store import Store, write_atomic

runner = CliRunner()
SWEEP = "quick: true\ngrid:\n  teacher: [schemer, naive]\n"


def _refuse(monkeypatch: pytest.MonkeyPatch, root: Path, code: int) -> None:
    """Every write under `root` fails with `code`: opening a file for writing (EROFS), or
    writing its text (ENOSPC: half of it lands first, as on a disk that fills mid-write)."""
    root = root.resolve()
    real_open, real_mkdir, real_write = Path.open, Path.mkdir, Path.write_text

    def inside(p: Path) -> bool:
        p = Path(os.path.abspath(p))
        return p == root or root in p.parents

    def fail(p: Path) -> OSError:
        return OSError(code, os.strerror(code), str(p))

    def open_(self: Path, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if code == errno.EROFS and inside(self) and any(c in mode for c in "wax+"):
            raise fail(self)
        return real_open(self, mode, *args, **kwargs)

    def mkdir(self: Path, *args: Any, **kwargs: Any) -> None:
        if code == errno.EROFS and inside(self) and not self.exists():
            raise fail(self)
        real_mkdir(self, *args, **kwargs)

    def write_text(self: Path, data: str, *args: Any, **kwargs: Any) -> int:
        if code == errno.ENOSPC and inside(self) and data:
            real_write(self, data[: len(data) // 2], *args, **kwargs)
            raise fail(self)
        return real_write(self, data, *args, **kwargs)

    monkeypatch.setattr(Path, "open", open_)
    monkeypatch.setattr(Path, "mkdir", mkdir)
    monkeypatch.setattr(Path, "write_text", write_text)


def _one_line(result: Any, code: int, message: str) -> str:
    assert result.exit_code == code, (result.output, result.exception)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], result.stderr
    return lines[0]


@pytest.mark.parametrize(
    "args",
    [
        ["sweep", "SWEEP", "--dry-run"],
        ["sweep", "SWEEP"],
        ["demo", "--quick"],
        ["bench", "--quick"],
    ],
)
def test_a_read_only_store_is_one_line_and_nothing_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str]
):
    sweep, store, out = tmp_path / "sweep.yaml", tmp_path / "store", tmp_path / "out"
    sweep.write_text(SWEEP)
    store.mkdir()  # the mount point of a read-only bind
    _refuse(monkeypatch, store, errno.EROFS)
    args = [str(sweep) if a == "SWEEP" else a for a in args]
    result = runner.invoke(app, [*args, "--store", str(store), "--out", str(out)])
    line = _one_line(result, 2, "is not writable: Read-only file system")
    assert str(store) in line
    assert not any(store.iterdir()) and not out.exists()


def test_a_full_disk_while_writing_outputs_is_one_line_and_leaves_no_half_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.json").write_text("the previous run's\n")
    _refuse(monkeypatch, tmp_path, errno.ENOSPC)
    for write in (
        lambda: write_atomic(out / "results.json", "{}\n" * 100),
        lambda: keep(tmp_path / "experiment" / "abc", {"results.json": "{}\n" * 100}),
    ):
        with pytest.raises(typer.Exit) as e:
            run_command(write)
        assert e.value.exit_code == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and "No space left on device" in lines[0], lines
        assert str(tmp_path) in lines[0]
    # the old file is untouched and no temporary file or directory is left behind
    assert (out / "results.json").read_text() == "the previous run's\n"
    assert sorted(p.name for p in out.iterdir()) == ["results.json"]
    assert not (tmp_path / "experiment").exists() or not any((tmp_path / "experiment").iterdir())


def _write_x(d: Path) -> None:
    (d / "x.txt").write_text("x" * 64)


@stages.stage("test_disk_full")
def _writes(store: Store, n: int) -> str:
    art = store.build("test_disk_full", {"n": n}, _write_x)
    return f"{art.kind}/{art.key}"


def test_a_full_disk_inside_a_stage_names_the_cause(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    store = Store(tmp_path / "store")
    plan = Plan()
    plan.add("test_disk_full", n=1)
    _refuse(monkeypatch, store.root / "test_disk_full", errno.ENOSPC)
    with pytest.raises(StageError) as e:
        run_plan(plan, store, workers=1)
    assert "No space left on device" in one_line(e.value), one_line(e.value)

    def body() -> None:
        run_plan(plan, store, workers=1)

    with pytest.raises(typer.Exit) as exit_:
        run_command(body)
    assert exit_.value.exit_code == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "No space left on device" in lines[0], lines
    assert not any((store.root / "test_disk_full").iterdir())  # no half-built stage
