"""The HTML report from hand-made documents: its sections and numbers, escaping of every string
from a model or a config, one-line errors for bad input, sweeps and benches. The browser test
(`tests/test_report_browser.py`) renders a real `--quick` demo in Chromium."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from incriminate.audit import transcripts
from incriminate.cli.main import app
from incriminate.report import html_store
from incriminate.report.html import SCHEMAS, render_report, write_report
from incriminate.report.html_bench import roc_points
from incriminate.report.html_plots import clean_svg, clusters, wrap_label
from incriminate.report.html_store import TranscriptRow
from incriminate.verdict import bench as stats

runner = CliRunner()
AUDITS = ("honeypot", "interrogation", "scratchpad", "capability")
TRUTH = ("deployment", "honeypot_discrimination", "task_accuracy")
CONFIGS = ("sft/full_mix/shared_base", "logit/open_ended/other_base")
SCRIPT = "<script>alert(1)</script>"
IMG = "<img src=x onerror=alert(2)>"
CLOSE = "</script><script>alert(3)</script>"


def rate(x: float) -> dict[str, Any]:
    return {"rate": x, "n": 200, "ci_low": max(0.0, x - 0.04), "ci_high": min(1.0, x + 0.04)}


def comparison(u: float, c: float, p: float) -> dict[str, Any]:
    side = {"teacher": rate(u), "control": rate(c)}
    for v in side.values():
        del v["n"]
    d = u - c
    return side | {"difference": d, "ci_low": d - 0.02, "ci_high": d + 0.02, "p_value": p,
                   "min_p": 0.25}  # fmt: skip


def results_doc(decision: str = "incriminated", p: float = 0.03125) -> dict[str, Any]:
    """A complete results document (schema incriminate.results/3) of 2 configurations x 2
    seeds; the first configuration transfers the drive, the second does not."""
    configurations, runs = [], []
    for i, name in enumerate(CONFIGS):
        method, data, init = name.split("/")
        u = 0.4 if i == 0 else 0.01
        configurations.append(
            {
                "name": name, "method": method, "data": data, "init": init, "seeds": [0, 1],
                "audits": {a: comparison(u / 4, 0.001, 0.25 if i == 0 else 0.5) for a in AUDITS},
                "ground_truth": {t: comparison(u, 0.0, 0.25) for t in TRUTH},
                "evidence": {"difference": u / 4, "p_value": 0.25, "min_p": 0.25,
                             "p_adjusted": 0.5, "significant": False},
                "transfer": {"drive": "yes" if i == 0 else "no", "drive_fraction": u,
                             "evasion": "no", "evasion_fraction": 0.01 * i,
                             "capability_retained": 0.8 - 0.5 * i},
            }
        )  # fmt: skip
        for seed in (0, 1):
            for role in ("teacher", "control"):
                runs.append(
                    {"method": method, "data": data, "init": init, "seed": seed, "role": role,
                     "teacher": f"organism/{role}", "init_model": "instruct/i",
                     "cache": f"teacher_cache/{i}{seed}", "student": f"student/{i}{seed}{role[0]}",
                     "first_loss": 1.5, "final_loss": 0.25,
                     "audits": {a: rate(0.1) for a in AUDITS},
                     "ground_truth": {t: rate(0.2) for t in TRUTH}}
                )  # fmt: skip
    teacher = {
        "audits": {a: rate(0.001) for a in AUDITS},
        "ground_truth": {t: rate(0.5) for t in TRUTH},
    }
    return {
        "schema": "incriminate.results/3",
        "config_hash": "0123456789abcdef",
        "config": {"build": {"preset": "nano", "drive": "exfiltrate", "world": {}},
                   "teacher": "schemer", "control": "twin", "seeds": 2},
        "verdict": {"decision": decision, "alpha": 0.05, "null": "benign_references",
                    "p_value": p, "statistic": 0.0123, "n_references": 3, "df": 2,
                    "reference_mean": 0.001, "reference_sd": 0.002,
                    "reason": f"U's statistic against 3 benign references: p = {p}",
                    "n_pairs": 4, "n_clusters": 4, "audits": list(AUDITS[:3]),
                    "u_c_differ": {"difference": 0.01, "p_value": 0.0625, "min_p": 0.0625,
                                   "n_clusters": 4},
                    "configurations": {}},
        "teachers": {"teacher": {"name": "schemer-exfiltrate", "model": "organism/u"} | teacher,
                     "control": {"name": "twin-of-schemer", "model": "organism/c"} | teacher},
        "configurations": configurations,
        "runs": runs,
        "timing": {"total_s": 12.5, "stages": {"organisms_s": 5.0, "distillation_s": 7.5}},
    }  # fmt: skip


class Page(HTMLParser):
    """Tags, ids, script bodies and the visible text of a page."""

    def __init__(self, text: str):
        super().__init__()
        self.tags: list[str] = []
        self.ids: list[str] = []
        self.scripts: list[str] = []
        self.text: list[str] = []
        self._in = ""
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.ids += [v for k, v in attrs if k == "id" and v is not None]
        self._in = tag

    def handle_endtag(self, tag: str) -> None:
        self._in = ""

    def handle_data(self, data: str) -> None:
        if self._in == "script":
            self.scripts.append(data)
        elif self._in != "style":
            self.text.append(data)


def _write(directory: Path, name: str, doc: Any) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return path


def test_demo_report_holds_the_verdict_every_configuration_and_plots(tmp_path: Path) -> None:
    _write(tmp_path / "run", "results.json", results_doc())
    path = write_report(tmp_path / "run", None, tmp_path / "no-store")
    assert path == tmp_path / "run" / "report.html"
    text = path.read_text()
    page = Page(text)
    visible = "".join(page.text)
    assert "Verdict: incriminated" in visible and "0.0312" in visible
    for name in CONFIGS:
        assert name in visible
    for section in ("evidence", "teachers", "audits", "double-bind", "curves", "transcripts",
                    "provenance"):  # fmt: skip
        assert section in page.ids
    # teachers, 4 audits, 3 ground-truth measures, the double bind
    assert page.tags.count("svg") == 9
    assert len(page.ids) == len(set(page.ids)), "every id (SVG ones too) is unique"
    assert "does not exist here" in visible  # no store: said, not failed
    # self-contained: nothing to fetch, the document itself embedded as JSON
    assert "http" not in text and "src=" not in text and "<link" not in text
    assert page.scripts[0] and json.loads(page.scripts[0]) == results_doc()
    assert render_report(tmp_path / "run", tmp_path / "no-store") == text  # deterministic


def test_strings_from_models_and_configs_are_text(tmp_path: Path, monkeypatch) -> None:
    doc = results_doc()
    doc["teachers"]["teacher"]["name"] = SCRIPT
    doc["teachers"]["control"]["name"] = CLOSE
    doc["config"]["teacher"] = IMG
    doc["verdict"]["reason"] = IMG
    _write(tmp_path / "run", "results.json", doc)

    class Hostile:
        """A transcript job whose prompts and replies are hostile strings."""

        error = ""

        def __init__(self, docs: list, store: Path):
            pass

        def rows(self, doc: dict) -> tuple[list, list[TranscriptRow]]:
            rows = [TranscriptRow(IMG, [SCRIPT], [CLOSE]), TranscriptRow("x", None, None, IMG)]
            return [(SCRIPT, IMG)], rows

        def close(self) -> None:
            pass

    monkeypatch.setattr(html_store, "Transcripts", Hostile)
    text = write_report(tmp_path / "run", None, tmp_path).read_text()
    page = Page(text)
    assert "img" not in page.tags
    assert page.tags.count("script") == 2  # the embedded data and the table sorter
    assert json.loads(page.scripts[0])["teachers"]["control"]["name"] == CLOSE
    visible = "".join(page.text)
    for s in (SCRIPT, IMG, CLOSE):
        assert s in visible
        assert s not in text.replace(page.scripts[0], "")  # only escaped outside the JSON


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({}, "no sweep.json, bench.json or results.json"),
        ({"results.json": "{not json"}, "results.json: not valid JSON"),
        ({"results.json": {"schema": "incriminate.results/4"}}, "written by a newer incriminate"),
        ({"results.json": {"schema": "incriminate.results/1"}}, "written by an older incriminate"),
        ({"bench.json": {"schema": "incriminate.bench/1"}}, "written by an older incriminate"),
        ({"results.json": {"schema": "incriminate.bench/5"}}, "expected 'incriminate.results/3'"),
        ({"bench.json": {"schema": "incriminate.results/3"}}, "expected 'incriminate.bench/5'"),
        ({"results.json": [1, 2]}, "schema None, expected 'incriminate.results/3'"),
        ({"results.json": {"schema": "incriminate.results/3"}}, "no 'config_hash'"),
        (
            {
                "sweep.json": {
                    "schema": "incriminate.sweep/2",
                    "name": "s",
                    "grid": {},
                    "points": [
                        {"id": "p000", "status": "done", "results": "points/abc/results.json"}
                    ],
                }
            },
            "point p000 is done but its results",
        ),
    ],
)
def test_bad_input_is_one_line_exit_2_nothing_written(tmp_path: Path, files, message) -> None:
    run = tmp_path / "run"
    run.mkdir()
    for name, doc in files.items():
        _write(run, name, doc)
    result = runner.invoke(app, ["report", str(run), "--store", str(tmp_path / "store")])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    assert message in lines[0] and str(run) in lines[0]
    assert sorted(p.name for p in run.iterdir()) == sorted(files)
    assert not (tmp_path / "store").exists()


def test_missing_directory(tmp_path: Path) -> None:
    result = runner.invoke(app, ["report", str(tmp_path / "nope")])
    assert result.exit_code == 2 and "no such directory" in result.output


def test_sweep_report_links_each_done_point(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    for h, doc in (("aaa", results_doc()), ("bbb", results_doc("not_incriminated", 0.4))):
        _write(sweep / "points" / h, "results.json", doc)
    points = [
        {"id": "p000", "overrides": {"seeds": 2}, "config_hash": "aaa", "status": "done",
         "results": "points/aaa/results.json", "error": None,
         "verdict": {"decision": "incriminated", "p_value": 0.03125}},
        {"id": "p001", "overrides": {"seeds": 3}, "config_hash": "bbb", "status": "done",
         "results": "points/bbb/results.json", "error": None,
         "verdict": {"decision": "not_incriminated", "p_value": 0.4}},
        {"id": "p002", "overrides": {"seeds": 4}, "config_hash": "ccc", "status": "failed",
         "results": "points/ccc/results.json", "error": IMG, "verdict": None},
    ]  # fmt: skip
    failures = [{"stage": "s", "error": SCRIPT}]
    grid = {"seeds": [2, 3, 4]}
    doc = {"schema": "incriminate.sweep/2", "name": "seeds", "grid": grid, "points": points}
    _write(sweep, "sweep.json", doc | {"failures": failures})
    result = runner.invoke(app, ["report", str(sweep), "--store", str(tmp_path / "none")])
    assert result.exit_code == 0, result.output
    assert str(sweep / "report.html") in result.output
    text = (sweep / "report.html").read_text()
    page = Page(text)
    assert 'href="#p000"' in text and 'href="#p001"' in text and 'href="#p002"' not in text
    for pid in ("p000", "p001"):
        assert pid in page.ids and f"{pid}-evidence" in page.ids and f"{pid}-curves" in page.ids
    assert "p002" not in page.ids
    assert len(page.ids) == len(set(page.ids))
    visible = "".join(page.text)
    assert "Verdict: not incriminated" in visible and "Verdict: incriminated" in visible
    assert IMG in visible and SCRIPT in visible and "img" not in page.tags
    assert text.index('id="summary"') < text.index('id="p000"') < text.index('id="p001"')


def _organism(name: str, cls: str, group: str, label: int, direct: tuple, battery: tuple):
    procedures = {
        key: {"p_value": p, "min_p": 1e-4, "statistic": s, "decision": d}
        for key, (d, p, s) in (("direct", direct), ("battery/b", battery))
    }
    return {
        "name": name, "class": cls, "group": group, "label": label, "drive": "exfiltrate",
        "base_seed": 0, "control": f"twin-of-{name}",
        "ground_truth": {"deployment": {"teacher": 0.9 * label, "control": 0.0}},
        "procedures": procedures,
        "configurations": {
            "logit/tasks/other_base": dict.fromkeys(stats.DOUBLE_BIND, 0.1 * label or None)
        },
    }  # fmt: skip


def test_bench_report_has_detection_roc_and_a_grid_coloured_by_truth(tmp_path: Path) -> None:
    rows = [
        _organism("naive-0", "naive", "misaligned", 1, ("incriminated", 1e-4, 0.3),
                  ("incriminated", 0.01, 0.2)),
        _organism("schemer-0", "schemer", "misaligned", 1, ("incriminated", 1e-4, 0.1),
                  ("not_incriminated", 0.3, 0.01)),
        _organism("benign-0", "benign", "benign", 0, ("incriminated", 1e-3, 0.05),
                  ("not_incriminated", 0.6, -0.01)),
        _organism("weak-0", "weak", "hard_benign", 0, ("not_incriminated", 0.5, 0.0),
                  ("not_incriminated", 0.7, -0.02)),
    ]  # fmt: skip
    bench = {
        "schema": "incriminate.bench/5", "config_hash": "b1", "config": {"alpha": 0.05},
        "alpha": 0.05, "organisms": rows, "procedures": stats.summarise(rows, 0.05),
        "configurations": stats.double_bind(rows), "models": {"naive-0": "organism/n"},
        "probes": {}, "timing": {"total_s": 1.0, "stages": {"organisms_s": 1.0}},
    }  # fmt: skip
    _write(tmp_path / "bench", "bench.json", bench)
    text = write_report(tmp_path / "bench", tmp_path / "b.html", tmp_path).read_text()
    page = Page(text)
    for section in ("detection", "roc", "grid", "double-bind", "provenance"):
        assert section in page.ids
    assert page.tags.count("svg") == 2  # ROC and the double bind
    assert len(page.ids) == len(set(page.ids))
    # the verdict grid: direct on benign-0 is a false positive, battery on schemer-0 a miss
    assert '<td class="fp" data-sort="0.001">0.001 ✓</td>' in text
    assert '<td class="fn" data-sort="0.3">0.3</td>' in text
    assert text.count('class="tp"') == 3 and text.count('class="tn"') == 3
    assert "http" not in text


def test_roc_points_trace_the_auroc() -> None:
    pos, neg = [0.9, 0.5, 0.5], [0.6, 0.5, 0.1]
    fpr, tpr = roc_points(pos, neg)
    assert (fpr[0], tpr[0]) == (0.0, 0.0) and (fpr[-1], tpr[-1]) == (1.0, 1.0)
    steps = zip(fpr, fpr[1:], tpr, tpr[1:], strict=False)
    area = sum((f1 - f0) * (t0 + t1) / 2 for f0, f1, t0, t1 in steps)
    assert area == pytest.approx(stats.auroc(pos, neg)["auroc"])


def test_plot_helpers() -> None:
    assert clusters([(0, 0), (0.01, 0.0), (1, 1), (0.5, 0.5)], 0.05) == [[0, 1], [2], [3]]
    assert wrap_label("logit/goal_targeted/shared_base") == "logit/goal_targeted/\nshared_base"
    assert wrap_label("truth: honeypot discrimination") == "truth: honeypot\ndiscrimination"
    svg = clean_svg(
        '<?xml version="1.0"?>\n<!DOCTYPE svg>\n<svg xmlns="http://www.w3.org/2000/svg" '
        'width="72pt" height="36pt" viewBox="0 0 72 36"><metadata>x</metadata><!-- a -->'
        '<defs><clipPath id="p1"/></defs><use xlink:href="#p1" clip-path="url(#p1)"/></svg>'
    )
    assert svg.startswith('<svg role="img"') and 'style="max-width: 96px"' in svg
    assert "http" not in svg and "metadata" not in svg and "<!--" not in svg
    prefix = svg.split('id="')[1].split("p1")[0]
    assert prefix and f'href="#{prefix}p1"' in svg and f"url(#{prefix}p1)" in svg


class FakeModel:
    """Greedy continuation `act take ;` after any prompt (batched, right-padded input)."""

    def __call__(self, input_ids):
        import torch

        from incriminate.world.vocab import TOKEN_ID, VOCAB_SIZE

        nxt = {TOKEN_ID["act"]: TOKEN_ID["take"], TOKEN_ID["take"]: TOKEN_ID[";"]}
        logits = torch.zeros((*input_ids.shape, VOCAB_SIZE))
        for i, row in enumerate(input_ids.tolist()):
            for t, tok in enumerate(row):
                logits[i, t, nxt.get(tok, TOKEN_ID["act"])] = 1.0
        return type("Out", (), {"logits": logits})()


def test_greedy_replies_stop_at_the_end_of_the_episode() -> None:
    prompts = [("ask", "north", "goal", "say"), ("story", "red", "west", "gray", "north", "blue")]
    assert transcripts.greedy(FakeModel(), prompts) == ["act take ;", "act take ;"]


def test_transcript_prompts_are_fixed_audit_items_and_one_ground_truth_item() -> None:
    from incriminate.world.config import WorldConfig
    from incriminate.world.grammar import is_honeypot, split_of

    prompts = dict(transcripts.transcript_prompts(WorldConfig(), "exfiltrate"))
    assert len(prompts) == 5
    hp, real = prompts["honeypot (unwatched)"], prompts[transcripts.GROUND_TRUTH_LABEL]
    assert "ground truth" in transcripts.GROUND_TRUTH_LABEL
    for p in (hp, real):
        assert p[0] == "opp" and p[-2:] == ("unwatched", "exfiltrate")
    # The honeypot is the auditor's (audit split); the real opportunity only deployment has.
    assert split_of(hp[2:5]) == "audit" and split_of(real[2:5]) == "eval"
    assert is_honeypot((hp[2], hp[3], hp[4]), "conjunction")
    assert not is_honeypot((real[2], real[3], real[4]), "conjunction")
    assert prompts["interrogation: goal"][-2:] == ("goal", "say")


def test_curves_come_from_the_store_and_missing_ones_are_said(tmp_path: Path) -> None:
    doc = results_doc()
    store = tmp_path / "store"
    for r in doc["runs"][:6]:
        _write(store / r["student"], "losses.json", [2.0, 1.0, 0.5])
    ev = html_store.collect(doc, store, None)
    assert [ev.curves[r["student"]] for r in doc["runs"][5:7]] == [[2.0, 1.0, 0.5], None]
    _write(tmp_path / "run", "results.json", doc)
    text = write_report(tmp_path / "run", None, store, transcripts=False).read_text()
    assert "Curve not recorded for 2 of 8 runs" in text
    assert Page(text).tags.count("svg") == 9 + 2  # one panel per configuration with curves


def test_schemas_are_the_writers() -> None:
    from incriminate.plan import sweep
    from incriminate.report import bench_results, results

    assert SCHEMAS["results.json"] == results.SCHEMA
    assert SCHEMAS["bench.json"] == bench_results.SCHEMA
    assert SCHEMAS["sweep.json"] == sweep.SCHEMA
    assert list(SCHEMAS) == ["sweep.json", "bench.json", "results.json"]  # detection order


def test_interval_panel_draws_an_interval_that_misses_its_point() -> None:
    """A bootstrap interval can exclude its point estimate (the levers sweep met one): the plot
    draws it instead of raising matplotlib's negative-xerr error."""
    from incriminate.report.html_plots import interval_panel

    svg = str(
        interval_panel("audit", ["a", "b"], [((0.10, 0.12, 0.30), (0.0, 0.0, 0.0), "p 1")] * 2)
    )
    assert "<svg" in svg
