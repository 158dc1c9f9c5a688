"""`incriminate sweep` and `incriminate results` on bad input: one line, exit code 2, nothing
started and nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from incriminate.cli.main import app

runner = CliRunner()
GOOD = "quick: true\ngrid:\n  teacher: [schemer, naive]\n"


def _fails_cleanly(args: list[str], message: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    assert message in lines[0], lines[0]
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("text", "extra", "message"),
    [
        ("grid:\n  teachr: [naive]\n", [], "'teachr' is not a field of the config"),
        ("grid: {}\n", [], "the grid is empty"),
        ("grid:\n  seeds: [0]\n", [], "grid point p000 (seeds=0): invalid seeds"),
        ("quick: true\n", [], "needs 'grid' (config fields -> lists of values), 'points'"),
        ("points: []\n", [], "the points list is empty"),
        ("points:\n  - seeds\n", [], "points[0] must map config fields to values"),
        ("points:\n  - {teachr: naive}\n", [], "(did you mean 'teacher'?)"),
        ("points:\n  - {name: x y, seeds: 2}\n", [], "name 'x y' may hold only letters"),
        ("points:\n  - {seeds: 2}\n  - {seeds: 2}\n", [], "are the same config"),
        (GOOD, ["--backend", "ray", "--address", "127.0.0.1:1"], "cannot reach the Ray cluster"),
        (GOOD, ["--backend", "ray", "--address", "nowhere"], "not of the form HOST:PORT"),
        (GOOD, ["--backend", "spark"], "--backend must be one of local, ray"),
        (GOOD, ["--workers", "0"], "--workers must be at least 1"),
        (GOOD, ["--address", "127.0.0.1:6379"], "--address is the Ray cluster's"),
    ],
)
def test_bad_sweeps_start_nothing(tmp_path: Path, text: str, extra: list[str], message: str):
    sweep = tmp_path / "grid.yaml"
    sweep.write_text(text)
    store, out = tmp_path / "store", tmp_path / "out"
    _fails_cleanly(["sweep", str(sweep), "--store", str(store), "--out", str(out), *extra], message)
    assert not store.exists() and not out.exists()


def test_an_unwritable_store_is_an_error(tmp_path: Path):
    sweep = tmp_path / "grid.yaml"
    sweep.write_text(GOOD)
    blocker = tmp_path / "file"
    blocker.write_text("")
    out = tmp_path / "out"
    _fails_cleanly(
        ["sweep", str(sweep), "--store", str(blocker / "store"), "--out", str(out)], "not writable"
    )
    assert not out.exists()
    _fails_cleanly(["sweep", str(tmp_path / "missing.yaml")], "does not exist")


def test_results_rejects_bad_queries(tmp_path: Path):
    _fails_cleanly(["results", "--store", str(tmp_path)], "run a demo or a sweep first")
    _fails_cleanly(["results", "--store", str(tmp_path), "--format", "xml"], "--format must be")
