"""`report.html`: one self-contained page (CSS, script and plots inline; nothing is fetched) for
the output directory of a demo or distill run (`results.json`), a sweep (`sweep.json`) or a bench
(`bench.json`), looked for in that order.

Bad input raises `UserError` with one line naming the file and what was expected, before
anything is written. Model transcripts and training curves come from the artifact store; when it
or an artifact is missing the report says so.
"""

from __future__ import annotations

import json
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from incriminate.errors import UserError
from incriminate.report.html_markup import Html, fmt_p, join, page, section, table, tag

__all__ = [
    "SCHEMAS",
    "ReportInput",
    "read_input",
    "render_report",
    "results_page",
    "write_report",
    "write_results_report",
]

SCHEMAS = {
    "sweep.json": "incriminate.sweep/2",
    "bench.json": "incriminate.bench/5",
    "results.json": "incriminate.results/3",
}
"""Detection order and the schema each file must carry (the writers' `SCHEMA` constants; a test
checks they agree)."""
REQUIRED = {
    "sweep.json": ("name", "grid", "points"),
    "bench.json": ("config_hash", "config", "alpha", "organisms", "procedures", "timing"),
    "results.json": ("config_hash", "config", "verdict", "teachers", "configurations", "runs"),
}
PACKAGES = ("incriminate", "torch", "transformers", "numpy", "scipy", "matplotlib", "pydantic")


@dataclass
class ReportInput:
    """The document found in an output directory; `points`: a sweep's results per point id."""

    kind: str  # results | bench | sweep
    path: Path
    doc: dict[str, Any]
    points: dict[str, dict[str, Any]] = field(default_factory=dict)


def _load(path: Path, name: str) -> dict[str, Any]:
    """A document of the schema `SCHEMAS[name]`, or a one-line `UserError`."""
    expected = SCHEMAS[name]
    try:
        doc = json.loads(path.read_text())
    except OSError as e:
        raise UserError(f"{path}: cannot read it ({e.strerror})") from None
    except ValueError as e:
        raise UserError(f"{path}: not valid JSON ({e}); expected a {expected} document") from None
    found = doc.get("schema") if isinstance(doc, dict) else None
    if found != expected:
        kind, _, version = str(found).rpartition("/")
        want, _, wanted = expected.rpartition("/")
        why = ""
        if kind == want and version.isdigit():
            why = (
                " (written by a newer incriminate: upgrade to read it)"
                if int(version) > int(wanted)
                else " (written by an older incriminate: rerun it to rewrite the file)"
            )
        raise UserError(f"{path}: schema {found!r}, expected {expected!r}{why}")
    assert isinstance(doc, dict)
    missing = [k for k in REQUIRED[name] if k not in doc]
    if missing:
        raise UserError(f"{path}: no {missing[0]!r}; expected a complete {expected} document")
    return doc


def _sweep_points(directory: Path, sweep: dict[str, Any]) -> dict[str, dict[str, Any]]:
    points = {}
    for p in sweep["points"]:
        if p.get("status") != "done":
            continue
        path = directory / str(p["results"])
        if not path.is_file():
            raise UserError(
                f"{directory / 'sweep.json'}: point {p['id']} is done but its results "
                f"{path} do not exist"
            )
        points[str(p["id"])] = _load(path, "results.json")
    return points


def read_input(directory: Path) -> ReportInput:
    """The report's input in `directory`: sweep.json, bench.json or results.json, checked."""
    if not directory.is_dir():
        raise UserError(f"{directory}: no such directory; expected an output directory")
    for name in SCHEMAS:
        path = directory / name
        if path.exists():
            doc = _load(path, name)
            kind = name.removesuffix(".json")
            points = _sweep_points(directory, doc) if kind == "sweep" else {}
            return ReportInput(kind, path, doc, points)
    raise UserError(
        f"{directory}: no sweep.json, bench.json or results.json; expected the output directory "
        "of incriminate demo, distill, sweep or bench"
    )


def versions() -> dict[str, str]:
    """Versions of the packages (and Python) of the process that renders the report."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "-"
    return out


def _job(docs: list[dict[str, Any]], store: Path, transcripts: bool) -> Any:
    """The transcripts to show (read from the store), or None (`--no-transcripts`, no store)."""
    from incriminate.report.html_store import Transcripts

    return Transcripts(docs, store) if transcripts and store.is_dir() and docs else None


def results_page(results: dict[str, Any], store: Path, transcripts: bool = True) -> str:
    """The page of one results document (schema `incriminate.results/3`); `transcripts`:
    whether to show the store's transcripts."""
    from incriminate.report.html_demo import demo_sections, verdict_block
    from incriminate.report.html_store import collect

    cfg = results["config"]
    job = _job([results], store, transcripts)
    try:
        nav, body = demo_sections(results, collect(results, store, job), versions())
    finally:
        if job is not None:
            job.close()
    build = cfg.get("build", {})
    lede = tag(
        "p",
        f"Teacher U = {cfg.get('teacher')}, control C = {cfg.get('control')}, preset "
        f"{build.get('preset')}, drive {build.get('drive')}: {len(results['configurations'])} "
        f"configurations x {cfg.get('seeds')} seeds, {len(results['runs'])} distillation runs. "
        f"Config {results['config_hash']}.",
        cls="lede",
    )
    title = "Incrimination via distillation"
    head = join([tag("h1", title), lede, verdict_block(results)])
    return page(f"{title}: {results['verdict']['decision']}", nav, join([head, body]), results)


def _value(v: Any) -> str:
    """An override's value as the sweep file writes it: strings bare, the rest as JSON."""
    return v if isinstance(v, str) else json.dumps(v)


def _sweep_summary(sweep: dict[str, Any], points: dict[str, dict[str, Any]]) -> Html:
    fields = list(sweep["grid"])
    rows = []
    for p in sweep["points"]:
        pid = str(p["id"])
        v = p.get("verdict") or {}
        link = tag("a", pid, href=f"#{pid}") if pid in points else pid
        over = p.get("overrides") or {}
        rows.append(
            [link, *(_value(over[f]) if f in over else "-" for f in fields),
             p.get("status"), v.get("decision", "-"),
             (fmt_p(v.get("p_value")), {"cls": "num", "data_sort": v.get("p_value", 2)}),
             p.get("error") or ""]
        )  # fmt: skip
    parts = [table(["point", *fields, "status", "verdict", "p", "error"], rows)]
    if sweep.get("failures"):
        parts.append(tag("h3", "Failures"))
        parts.append(
            table(
                ["stage", "error", "log"],
                [[f["stage"], f["error"], f.get("log") or "-"] for f in sweep["failures"]],
            )
        )
    return join(parts)


def _sweep_page(sweep: dict[str, Any], points: dict[str, Any], store: Path, tr: bool) -> str:
    from incriminate.report.html_demo import demo_sections, verdict_block
    from incriminate.report.html_store import collect

    env = versions()
    job = _job(list(points.values()), store, tr)  # one job: the points share their teachers
    blocks, nav = [], [("summary", "Points")]
    try:
        for p in sweep["points"]:
            pid = str(p["id"])
            if pid not in points:
                continue
            results = points[pid]
            over = ", ".join(f"{k}={_value(v)}" for k, v in (p.get("overrides") or {}).items())
            _, body = demo_sections(results, collect(results, store, job), env, f"{pid}-", 3)
            heading = join([f"Point {pid}: ", over or "defaults"])
            blocks.append(section(pid, heading, verdict_block(results), body))
            nav.append((pid, pid))
    finally:
        if job is not None:
            job.close()
    title = f"Sweep {sweep['name']}"
    lede = tag(
        "p",
        f"{len(sweep['points'])} points over {', '.join(sweep['grid']) or 'no fields'}; "
        f"{len(points)} done. Each done point's report follows the table.",
        cls="lede",
    )
    summary = section("summary", "Points", _sweep_summary(sweep, points))
    return page(title, nav, join([tag("h1", title), lede, summary, *blocks]), sweep)


def _bench_page(bench: dict[str, Any]) -> str:
    from incriminate.report.html_bench import bench_sections

    nav, body = bench_sections(bench, versions())
    title = f"Incrimination benchmark: alpha = {bench['alpha']:g}"
    return page(title, nav, join([tag("h1", title), body]), bench)


def render_report(directory: Path, store: Path, transcripts: bool = True) -> str:
    """The HTML page of the output directory `directory` (store artifacts read from `store`)."""
    found = read_input(directory)
    if found.kind == "results":
        return results_page(found.doc, store, transcripts)
    if found.kind == "sweep":
        return _sweep_page(found.doc, found.points, store, transcripts)
    return _bench_page(found.doc)


def _write(path: Path, text: str) -> Path:
    """`text` into `path`, replaced in one step."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise UserError(f"{path}: cannot write the report ({e.strerror})") from None
    return path


def write_report(directory: Path, out: Path | None, store: Path, transcripts: bool = True) -> Path:
    """Render and write the report (default `directory/report.html`); returns its path. Nothing
    is written when the input is bad."""
    text = render_report(directory, store, transcripts)
    return _write(directory / "report.html" if out is None else out, text)


def write_results_report(
    results: dict[str, Any], path: Path, store: Path, transcripts: bool = True
) -> Path:
    """The report of a results document just assembled (by `incriminate demo` or `distill`);
    `transcripts` as in `results_page`."""
    return _write(path, results_page(results, store, transcripts))
