"""The HTML report of a real `--quick` demo in headless Chromium (Debian's `chromium`, driven by
Playwright), opened from disk at a desktop and a phone width: no console errors, no request
besides the page itself, the verdict and every configuration visible, every plot laid out with
a size; hostile strings in a transcript and a config are shown as text and never run; a sweep
report's table links to its points.

Skips when Chromium or Playwright is missing, unless INCRIMINATE_REQUIRE_BROWSER=1 (CI).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from incriminate.cli.main import app

pytestmark = pytest.mark.slow
runner = CliRunner()
VIEWPORTS = {"desktop": (1280, 900), "phone": (390, 844)}
SCRIPT = "<script>alert(1)</script>"
IMG = "<img src=x onerror=alert(2)>"


def _need(what: str) -> None:
    if os.environ.get("INCRIMINATE_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{what} is required (INCRIMINATE_REQUIRE_BROWSER=1)")
    pytest.skip(f"{what} is not installed")


@pytest.fixture(scope="module")
def browser():
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        _need("chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _need("playwright")
    with sync_playwright() as p:
        # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start
        b = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(output directory, store) of `incriminate demo --quick`, which also writes report.html."""
    root = tmp_path_factory.mktemp("quick")
    out, store = root / "out", root / "store"
    args = ["demo", "--quick", "--out", str(out), "--store", str(store), "--workers", "1"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert f"{out / 'report.html'}" in result.output.replace("\n", "")
    return out, store


class Visit:
    """A page opened from disk, with everything it logged and requested."""

    def __init__(self, browser: Any, path: Path, viewport: tuple[int, int], shot: Path):
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.dialogs: list[str] = []
        self.page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.on("dialog", self._dialog)
        self.url = path.resolve().as_uri()
        self.page.goto(self.url, wait_until="load")
        self.page.wait_for_timeout(200)  # an onerror handler would have run by now
        self.page.screenshot(path=str(shot), full_page=True)

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def check_clean(self) -> None:
        assert self.errors == []
        assert self.dialogs == [], "a script from the data ran"
        assert self.requests == [self.url], "the page fetched something besides itself"

    def visible(self, text: str) -> bool:
        return self.page.get_by_text(text, exact=False).first.is_visible()

    def plot_sizes(self) -> list[tuple[float, float]]:
        boxes = [svg.bounding_box() for svg in self.page.locator("figure.plot svg").all()]
        return [(b["width"], b["height"]) if b else (0.0, 0.0) for b in boxes]


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
def test_demo_report_in_chromium(browser, quick, tmp_path: Path, viewport: str) -> None:
    out, store = quick
    result = runner.invoke(app, ["report", str(out), "--store", str(store)])
    assert result.exit_code == 0, result.output
    assert result.output.strip().endswith("report.html")
    results = json.loads((out / "results.json").read_text())
    visit = Visit(browser, out / "report.html", VIEWPORTS[viewport], tmp_path / f"{viewport}.png")
    visit.check_clean()
    decision = results["verdict"]["decision"].replace("_", " ")
    assert visit.page.locator(".verdict .decision").inner_text() == f"Verdict: {decision}"
    for c in results["configurations"]:
        assert visit.visible(c["name"]), c["name"]
    sizes = visit.plot_sizes()
    # teachers, 4 audits, 3 ground-truth measures, double bind, a curve per configuration
    assert len(sizes) == 9 + len(results["configurations"])
    assert all(w > 50 and h > 50 for w, h in sizes), sizes
    assert all(w <= VIEWPORTS[viewport][0] for w, _ in sizes), "plots scale to the page"
    # transcripts from the store's models: the teachers and one pair per configuration
    rows = visit.page.locator("#transcripts tbody tr")
    assert rows.count() == 5 * (1 + len(results["configurations"]))
    assert "not in the store" not in visit.page.locator("#transcripts").inner_text()
    # sortable: a click on a header orders the rows by that column, a second click reverses
    header = visit.page.locator("#evidence th", has_text="audits U - C")
    cells = visit.page.locator("#evidence tbody tr td:nth-child(2)")
    header.click()
    assert [float(x) for x in cells.all_inner_texts()] == sorted(
        float(x) for x in cells.all_inner_texts()
    )
    header.click()
    values = [float(x) for x in cells.all_inner_texts()]
    assert values == sorted(values, reverse=True)


def test_hostile_strings_are_text_in_chromium(browser, quick, tmp_path: Path, monkeypatch):
    out, store = quick
    run = tmp_path / "run"
    run.mkdir()
    results = json.loads((out / "results.json").read_text())
    results["teachers"]["teacher"]["name"] = SCRIPT
    results["config"]["teacher"] = IMG
    (run / "results.json").write_text(json.dumps(results))
    from incriminate.audit import transcripts

    greedy = transcripts.greedy

    def hostile(model: Any, prompts: list) -> list[str]:
        return [IMG, SCRIPT, *greedy(model, prompts)[2:]]

    # A copy of the store without its transcripts: `report` builds them here, in this process,
    # where `greedy` is patched (and the shared store keeps its real transcripts).
    copy = tmp_path / "store"
    shutil.copytree(store, copy, ignore=shutil.ignore_patterns("transcripts"))
    monkeypatch.setattr(transcripts, "greedy", hostile)
    result = runner.invoke(app, ["report", str(run), "--store", str(copy)])
    assert result.exit_code == 0, result.output
    visit = Visit(browser, run / "report.html", VIEWPORTS["desktop"], tmp_path / "hostile.png")
    visit.check_clean()
    assert visit.page.locator("img").count() == 0
    assert visit.page.locator("script").count() == 2  # the embedded data and the sorter
    assert visit.visible(SCRIPT) and visit.visible(IMG)
    replies = visit.page.locator("#transcripts .reply").all_inner_texts()
    assert replies.count(IMG) == replies.count(SCRIPT) == 2 * (1 + len(results["configurations"]))


def test_sweep_report_in_chromium(browser, quick, tmp_path: Path) -> None:
    """A hand-made sweep of two real quick demos (the second with alpha 0.1: every stage
    reused) and a failed point."""
    out, store = quick
    other = tmp_path / "alpha"
    args = ["demo", "--quick", "alpha=0.1", "--out", str(other), "--store", str(store)]
    assert runner.invoke(app, [*args, "--workers", "1"]).exit_code == 0
    sweep = tmp_path / "sweep"
    points = []
    for i, (src, alpha) in enumerate(((out, 0.05), (other, 0.1))):
        results = json.loads((src / "results.json").read_text())
        h = results["config_hash"]
        (sweep / "points" / h).mkdir(parents=True)
        shutil.copy(src / "results.json", sweep / "points" / h / "results.json")
        v = results["verdict"]
        points.append(
            {"id": f"p00{i}", "overrides": {"alpha": alpha}, "config_hash": h, "status": "done",
             "results": f"points/{h}/results.json", "error": None,
             "verdict": {"decision": v["decision"], "p_value": v["p_value"]}}
        )  # fmt: skip
    points.append(
        {"id": "p002", "overrides": {"alpha": IMG}, "config_hash": "0", "status": "failed",
         "results": "points/0/results.json", "error": SCRIPT, "verdict": None}
    )  # fmt: skip
    doc = {"schema": "incriminate.sweep/2", "name": "alpha", "grid": {"alpha": [0.05, 0.1, IMG]},
           "points": points, "failures": [{"stage": "organism", "error": SCRIPT}]}  # fmt: skip
    (sweep / "sweep.json").write_text(json.dumps(doc))
    result = runner.invoke(app, ["report", str(sweep), "--store", str(store)])
    assert result.exit_code == 0, result.output
    for viewport, size in VIEWPORTS.items():
        visit = Visit(browser, sweep / "report.html", size, tmp_path / f"sweep-{viewport}.png")
        visit.check_clean()
        assert visit.page.locator("#summary table").first.locator("tbody tr").count() == 3
        assert visit.visible(SCRIPT) and visit.visible(IMG)
        sizes = visit.plot_sizes()
        assert sizes and all(w > 50 and h > 50 for w, h in sizes)
        visit.page.locator("#summary a[href='#p001']").click()
        assert visit.page.evaluate("location.hash") == "#p001"
        top = visit.page.locator("#p001").bounding_box()
        # Scrolled to the point (within a pixel: the browser scrolls to sub-pixel offsets).
        assert top is not None and -1 <= top["y"] < size[1]
        alpha = visit.page.locator("#p001 .verdict .card", has_text="alpha").inner_text()
        assert alpha.split() == ["alpha", "0.1"]
