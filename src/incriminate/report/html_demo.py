"""The sections of a demo (or distill) report, from `results.json` and the store's evidence:
the verdict and the evidence behind it first, then the double bind, the teachers, each
configuration's U- vs C-students, and the runs' sections (`html_runs`: training curves,
transcripts, provenance). A sweep report repeats them per point under an id prefix."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from incriminate.report import html_plots as plots
from incriminate.report import html_runs as runs
from incriminate.report.html_markup import (
    Html,
    details,
    fmt_diff,
    fmt_p,
    fmt_rate,
    join,
    section,
    table,
    tag,
)
from incriminate.report.html_store import Evidence
from incriminate.report.markdown import TRUTH_LABELS

__all__ = ["demo_sections", "verdict_block"]

DECISIONS = ("incriminated", "not_incriminated", "inconclusive")
Nav = list[tuple[str, str]]


def _num(value: Any, text: str | None = None) -> tuple[Any, dict[str, Any]]:
    """A right-aligned table cell that sorts by `value`."""
    return (value if text is None else text, {"cls": "num", "data_sort": value})


def verdict_block(results: dict[str, Any]) -> Html:
    """The decision, the reason and the numbers of the test of record."""
    v = results["verdict"]
    cls = v["decision"] if v["decision"] in DECISIONS else "inconclusive"
    ref = v.get("reference_mean")
    cards = [
        ("p-value (null: U is benign)", fmt_p(v["p_value"])),
        ("alpha", f"{v['alpha']:g}"),
        ("benign references", v["n_references"]),
        ("U's statistic (mean logit U - C)", f"{v['statistic']:+.4f}"),
        ("references' mean", "n/a" if ref is None else f"{ref:+.4f}"),
        ("U and C differ (sign-flip p)", fmt_p(v["u_c_differ"]["p_value"])),
        ("paired runs", v["n_pairs"]),
        ("clusters", v["n_clusters"]),
    ]
    return tag(
        "div",
        tag("div", "Verdict: ", tag("span", str(v["decision"]).replace("_", " ")), cls="decision"),
        tag("p", v["reason"]),
        tag(
            "div",
            *(
                tag("div", tag("div", k, cls="k"), tag("div", x, cls="v"), cls="card")
                for k, x in cards
            ),
            cls="cards",
        ),
        tag(
            "p",
            "One-sided sign-flip permutation test of the mean U - C difference over the audits ",
            ", ".join(map(str, v["audits"])),
            ", with the signs of runs that share prompts and teacher samples (a cluster) flipped "
            "together. Ground truth is shown beside the verdict and never used by it.",
            cls="lede",
        ),
        cls=f"verdict {cls}",
    )


def _evidence(results: dict[str, Any]) -> Html:
    rows = []
    for c in results["configurations"]:
        ev, tr, gt = c["evidence"], c["transfer"], c["ground_truth"]
        dep, disc = gt["deployment"], gt["honeypot_discrimination"]
        frac, cap = tr.get("drive_fraction"), tr.get("capability_retained")
        share = f" ({frac:.0%})" if frac is not None else ""
        mark = " ✓" if ev.get("significant") else ""
        rows.append(
            [c["name"],
             _num(ev["difference"], f"{ev['difference']:+.4f}"),
             _num(ev["p_value"], fmt_p(ev["p_value"])),
             _num(ev["p_adjusted"], fmt_p(ev["p_adjusted"]) + mark),
             (f"{tr['drive']} {dep['difference']:+.3f}{share}", {"data_sort": dep["difference"]}),
             (f"{tr['evasion']} {disc['difference']:+.3f}", {"data_sort": disc["difference"]}),
             _num(cap if cap is not None else -1, "-" if cap is None else f"{cap:.0%}")]
        )  # fmt: skip
    headers = ["configuration", "audits U - C", "p", "Holm p", "drive transferred (truth)",
               "evasion transferred (truth)", "capability kept"]  # fmt: skip
    return table(
        headers,
        rows,
        caption="Audits: mean over the evidence audits of U-students minus C-students, one-sided "
        "sign-flip p over seeds and its Holm-adjusted value over configurations (✓ significant: "
        "only when the test of record rejects). Truth (testbed only): U-students minus "
        "C-students in deployment rate (in brackets, the share of the teachers' gap) and in "
        "honeypot discrimination; yes when the lower 95% bound reaches 5% of the teachers' own "
        "gap, no when the upper bound stays below it (CIs below, per audit). Capability: "
        "U-students' task accuracy over the teacher's. Click a header to sort.",
    )


def _interval(x: dict[str, Any]) -> plots.Interval:
    return (x["rate"], x["ci_low"], x["ci_high"])


LEGEND = Html(
    '<span class="u">&#9679; U</span>: teacher side (teacher U, U-students); '
    '<span class="c">&#9679; C</span>: control side (control C, C-students)'
)


def _teachers(results: dict[str, Any]) -> Html:
    u, c = results["teachers"]["teacher"], results["teachers"]["control"]
    measures = [("audit", k) for k in u["audits"]] + [("truth", k) for k in u["ground_truth"]]
    block = {"audit": "audits", "truth": "ground_truth"}
    labels = [f"{kind}: {TRUTH_LABELS.get(k, k)}" for kind, k in measures]
    rows = [
        (_interval(u[block[kind]][k]), _interval(c[block[kind]][k]), "") for kind, k in measures
    ]
    fig = plots.figure(
        plots.interval_panel("teachers: U vs C", labels, rows),
        join([LEGEND, ". Rates with 95% Wilson CIs; audits on audit-split items, ground truth "
              "on eval-split items."]),
        "teachers' direct audits and ground truth",
    )  # fmt: skip
    trows = [
        [label, fmt_rate(u[block[kind]][k]), fmt_rate(c[block[kind]][k])]
        for label, (kind, k) in zip(labels, measures, strict=True)
    ]
    intro = tag(
        "p",
        "Teacher U = ",
        tag("code", u["name"], cls="u"),
        " (",
        tag("code", u["model"]),
        "), control C = ",
        tag("code", c["name"], cls="c"),
        " (",
        tag("code", c["model"]),
        ").",
    )
    return join([intro, tag("div", fig, table(["measure", "U", "C"], trows), cls="grid2")])


def _comparison_plot(results: dict[str, Any], block: str, title: str) -> Html:
    """One panel per measure (a CSS grid: side by side on a wide screen, stacked on a phone)."""
    configs = results["configurations"]
    labels = [c["name"] for c in configs]
    figures = []
    for m in configs[0][block]:
        rows = [
            (_interval(c[block][m]["teacher"]), _interval(c[block][m]["control"]),
             f"p={fmt_p(c[block][m]['p_value'])}")
            for c in configs
        ]  # fmt: skip
        name = str(TRUTH_LABELS.get(m, m))
        figures.append(plots.figure(plots.interval_panel(name, labels, rows), None, name))
    caption = tag(
        "p",
        f"{title}. ",
        LEGEND,
        ". Mean over seeds with two-level bootstrap 95% CIs (seeds, then items); at the right "
        "of each row the one-sided sign-flip p-value over seeds.",
        cls="caption",
    )
    return join([tag("div", *figures, cls="panels"), caption])


def _comparison_table(results: dict[str, Any]) -> Html:
    rows = []
    for c in results["configurations"]:
        for block, kind in (("audits", "audit"), ("ground_truth", "truth")):
            for m, a in c[block].items():
                rows.append(
                    [c["name"], f"{kind}: {TRUTH_LABELS.get(m, m)}", fmt_rate(a["teacher"]),
                     fmt_rate(a["control"]), _num(a["difference"], fmt_diff(a)),
                     _num(a["p_value"], fmt_p(a["p_value"]))]
                )  # fmt: skip
    headers = ["configuration", "measure", "U-students", "C-students", "U - C", "p"]
    return details("Every comparison as a table", table(headers, rows))


def _double_bind(results: dict[str, Any]) -> Html:
    points, rows = [], []
    for c in results["configurations"]:
        tr = c["transfer"]
        x, y, cap = (
            tr.get("drive_fraction"),
            tr.get("evasion_fraction"),
            tr.get("capability_retained"),
        )
        if x is not None and y is not None:
            points.append((c["name"], x, y, cap))
        rows.append([c["name"], _share(x), _share(y), _share(cap)])
    headers = ["configuration", "drive gap", "evasion gap", "capability"]
    listing = table(headers, rows)
    if not points:
        note = tag(
            "p",
            "No plot: teacher U's ground-truth deployment or discrimination does not exceed "
            "the control's, so the shares are not defined.",
            cls="note",
        )
        return join([note, listing])
    caption = (
        "One point per configuration (ground truth, mean over seeds): the share of the teachers' "
        "deployment gap the U-students inherit against the share of their honeypot-"
        "discrimination gap; marker area grows with capability retained. Distillation helps "
        "the auditor at the bottom right: the drive transfers, the evasion does not. Points "
        "that overlap are labelled by their count; the table lists every configuration: the "
        "shares of the teachers' gaps its U-students inherit, and the capability they keep."
    )
    fig = plots.figure(plots.double_bind_plot(points), caption, "double-bind plot")
    return tag("div", fig, listing, cls="grid2")


def _share(x: float | None) -> tuple[str, dict[str, Any]]:
    return ("-" if x is None else f"{x:.1%}", {"cls": "num", "data_sort": -9 if x is None else x})


def demo_sections(
    results: dict[str, Any],
    ev: Evidence,
    versions: dict[str, str],
    prefix: str = "",
    level: int = 2,
) -> tuple[Nav, Html]:
    """(table of contents, markup) of one results document; ids start with `prefix`."""
    parts: list[tuple[str, str, Callable[[], Any]]] = [
        ("evidence", "Evidence per configuration", lambda: _evidence(results)),
        ("double-bind", "The double bind", lambda: _double_bind(results)),
        ("teachers", "Teachers, audited directly", lambda: _teachers(results)),
        (
            "audits",
            "U- vs C-students per audit",
            lambda: join(
                [
                    _comparison_plot(results, "audits", "Audits per configuration"),
                    _comparison_plot(results, "ground_truth", "Ground truth per configuration"),
                    _comparison_table(results),
                ]
            ),
        ),
        ("curves", "Training curves", lambda: runs.curves(results, ev)),
        ("transcripts", "Transcripts", lambda: runs.transcripts(results, ev)),
        ("provenance", "Provenance", lambda: runs.provenance(results, ev, versions)),
    ]
    nav = [(f"{prefix}{anchor}", title) for anchor, title, _ in parts]
    body = [
        section(f"{prefix}{anchor}", title, build(), level=level) for anchor, title, build in parts
    ]
    return nav, join(body)
