"""The per-run sections of a demo report: training curves, transcripts and provenance, from
`results.json` and what the store holds (`html_store.Evidence`)."""

from __future__ import annotations

from typing import Any

from incriminate.report import html_plots as plots
from incriminate.report.html_markup import Html, details, join, table, tag
from incriminate.report.html_store import Evidence

__all__ = ["curves", "provenance", "transcripts"]


def _num(value: Any, text: str) -> tuple[str, dict[str, Any]]:
    return (text, {"cls": "num", "data_sort": value})


def curves(results: dict[str, Any], ev: Evidence) -> Html:
    panels: dict[str, list[tuple[str, list[float]]]] = {}
    missing = 0
    for r in results["runs"]:
        losses = ev.curves.get(r["student"])
        if losses:
            name = f"{r['method']}/{r['data']}/{r['init']}"
            panels.setdefault(name, []).append((r["role"], losses))
        else:
            missing += 1
    note = Html("")
    if missing:
        note = tag(
            "p",
            f"Curve not recorded for {missing} of {len(results['runs'])} runs (students built "
            "before per-step losses were kept, or not in this store); their first and final "
            "losses are in the provenance table.",
            cls="note",
        )
    if not panels:
        return note
    figures = [plots.figure(plots.curve_panel(t, runs), None, t) for t, runs in panels.items()]
    caption = tag(
        "p",
        "Training loss per step of every distillation run, one line per seed: ",
        tag("span", "U-students", cls="u"),
        ", ",
        tag("span", "C-students", cls="c"),
        ". SFT: cross-entropy on the teacher's samples; logit: divergence to the teacher's "
        "top-k log-probs.",
        cls="caption",
    )
    return join([note, tag("div", *figures, cls="panels small"), caption])


def transcripts(results: dict[str, Any], ev: Evidence) -> Html:
    if ev.transcripts is None:
        notes = ev.notes or ["Transcripts were not generated (--no-transcripts)."]
        return join(tag("p", n, cls="note") for n in notes)
    prompts, rows = ev.transcripts.rows(results)
    if not rows:
        return tag("p", ev.transcripts.error or "No transcripts.", cls="note")
    blocks = []
    for j, (label, prompt) in enumerate(prompts):
        cells = []
        for row in rows:
            u = tag("span", row.teacher[j], cls="reply") if row.teacher else row.note
            c = tag("span", row.control[j], cls="reply") if row.control else row.note
            cells.append([row.label, u, c])
        blocks.append(
            tag(
                "div",
                tag("h3", label),
                tag("p", "prompt: ", tag("code", prompt)),
                table(["models", "U side", "C side"], cells, sortable=False),
            )
        )
    intro = tag(
        "p",
        "Greedy replies to fixed audit-split prompts, generated from the store when this report "
        "was made: the teachers, then one U-student and its paired C-student per configuration.",
        cls="lede",
    )
    return join([intro, tag("div", *blocks, cls="grid2")])


def provenance(results: dict[str, Any], ev: Evidence, versions: dict[str, str]) -> Html:
    import yaml

    rows = []
    teachers = results["teachers"]
    for role, t in teachers.items():
        m = ev.manifests.get(t["model"], {})
        rows.append([f"teacher ({role})", t["model"], "", "", "", m.get("wall_s", "-")])
    for r in results["runs"]:
        m = ev.manifests.get(r["student"], {})
        rows.append(
            [f"{r['method']}/{r['data']}/{r['init']} seed {r['seed']} {r['role']}",
             r["student"], r["cache"], r["init_model"],
             f"{r['first_loss']:.4f} -> {r['final_loss']:.4f}", m.get("wall_s", "-")]
        )  # fmt: skip
    built = sorted({str(m.get("package_version")) for m in ev.manifests.values()})
    timing = results["timing"]
    stages = [[k.removesuffix("_s"), _num(s, f"{s:.1f}")] for k, s in timing["stages"].items()]
    config_text = yaml.safe_dump(results["config"], sort_keys=False)
    return join(
        [
            tag("p", "Config hash ", tag("code", results["config_hash"]), " (schema ",
                tag("code", results["schema"]), "). Artifacts were built by incriminate ",
                ", ".join(built) or "-", "; this report by:"),
            table(["package", "version"], sorted(versions.items()), sortable=False),
            tag("p", f"Stage compute recorded in the store: {timing['total_s']:.1f} s."),
            table(["stage", "seconds"], stages, sortable=False),
            details("Resolved config (YAML)", tag("pre", config_text)),
            details(
                "Artifacts: store ids of every model, cache and init",
                table(["what", "model", "teacher cache", "init", "loss first -> final",
                       "build s"], rows),
            ),
        ]
    )  # fmt: skip
