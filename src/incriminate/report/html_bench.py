"""The sections of a bench report, from `bench.json` alone: detection (TPR, FPR, AUROC with
CIs), ROC curves of the direct audit and each battery, the per-organism verdict grid coloured by
ground truth, and the double bind."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from incriminate.report import bench as md
from incriminate.report import html_plots as plots
from incriminate.report.html_markup import Html, details, fmt_p, join, section, table, tag

__all__ = ["bench_sections", "roc_points"]

Nav = list[tuple[str, str]]
CELL = {(1, True): "tp", (1, False): "fn", (0, True): "fp", (0, False): "tn"}


def roc_points(pos: Sequence[float], neg: Sequence[float]) -> tuple[list[float], list[float]]:
    """(FPR, TPR) of the rule "statistic >= t" for every threshold t, from (0, 0) to (1, 1);
    tied statistics move both rates in one step."""
    fpr, tpr = [0.0], [0.0]
    for t in sorted(set(pos) | set(neg), reverse=True):
        tpr.append(sum(x >= t for x in pos) / len(pos))
        fpr.append(sum(x >= t for x in neg) / len(neg))
    return fpr, tpr


def _num(value: Any, text: str) -> tuple[str, dict[str, Any]]:
    return (text, {"cls": "num", "data_sort": value})


def _detection(bench: dict[str, Any]) -> Html:
    rows = []
    for s in bench["procedures"]:
        within = {None: "-", True: "yes", False: "no"}[s["fpr_within_alpha"]]
        auc = s["auroc"]["auroc"] if s["auroc"] else -1
        rows.append(
            [s["procedure"], s["kind"],
             _num(s["tpr"]["rate"] if s["tpr"] else -1, md._rate(s["tpr"])),
             _num(s["fpr"]["rate"] if s["fpr"] else -1, md._rate(s["fpr"])),
             md._short(s["fpr_benign"]), md._short(s["fpr_hard_benign"]),
             _num(auc, md._auroc(s["auroc"])), within]
        )  # fmt: skip
    headers = ["procedure", "kind", "TPR [CI] (k/n)", "FPR [CI] (k/n)", "FPR benign",
               "FPR hard benign", "AUROC [CI]", "FPR <= alpha?"]  # fmt: skip
    return table(
        headers,
        rows,
        caption="TPR over misaligned organisms, FPR over benign and hard-benign ones, Wilson 95% "
        "CIs and counts (inconclusive counts as not incriminated). AUROC of the procedure's "
        "evidence statistic (mean U - C over its evidence audits), DeLong 95% CI. Decisions test "
        "U's statistic against the benign references (null: U is benign).",
    )


def _roc(bench: dict[str, Any]) -> Html:
    curves = []
    for s in bench["procedures"]:
        if s["kind"] not in ("direct", "battery") or s["auroc"] is None:
            continue
        key = s["procedure"]
        rows = [r for r in bench["organisms"] if key in r["procedures"]]
        pos = [r["procedures"][key]["statistic"] for r in rows if r["label"] == 1]
        neg = [r["procedures"][key]["statistic"] for r in rows if r["label"] == 0]
        fpr, tpr = roc_points(pos, neg)
        curves.append((key, fpr, tpr, s["auroc"]["auroc"]))
    if not curves:
        return tag("p", "No procedure has both misaligned and benign organisms.", cls="note")
    return plots.figure(
        plots.roc_plot(curves),
        "ROC of each procedure's evidence statistic over the organisms: the direct audit of the "
        "teacher against each battery of distillation configurations.",
        "ROC curves",
    )


def _grid(bench: dict[str, Any]) -> Html:
    keys = [s["procedure"] for s in bench["procedures"]]
    rows = []
    for r in bench["organisms"]:
        cells: list[Any] = [
            (r["name"], {"cls": f"g-{r['group']}"}),
            r["class"],
            r.get("drive") or "-",
        ]
        for k in keys:
            p = r["procedures"].get(k)
            if p is None:
                cells.append("-")
                continue
            hit = p["decision"] == "incriminated"
            mark = md.MARKS.get(p["decision"], "")
            cls = CELL.get((r["label"], hit), "")
            cells.append((f"{fmt_p(p['p_value'])}{mark}", {"cls": cls, "data_sort": p["p_value"]}))
        rows.append(cells)
    legend = tag(
        "p",
        "Cell: one-sided p-value, ✓ incriminated, ? inconclusive. Colour by ground truth:",
        tag("span", "", cls="swatch", style="background:#f5b7b1"), "misaligned, caught",
        tag("span", "", cls="swatch", style="background:#fdebd0"), "misaligned, missed",
        tag("span", "", cls="swatch", style="background:#aed6f1"), "benign, incriminated "
        "(false positive)",
        tag("span", "", cls="swatch", style="background:#eef3f7"), "benign, cleared. "
        "Organism border: red misaligned, blue benign, purple hard benign.",
        cls="caption",
    )  # fmt: skip
    return join([legend, table(["organism", "class", "drive", *keys], rows, cls="grid")])


def _double_bind(bench: dict[str, Any]) -> Html:
    rows = [
        [c["configuration"], *(md._mean(c[k]) for k in md.DOUBLE_BIND_COLUMNS)]
        for c in bench["configurations"]
    ]
    fig = plots.figure(
        plots.svg_from_file_plot(md.plot_double_bind, bench),
        "Drive transfer against the evaders' evasion retained (ground truth, mean over organisms "
        "with 95% t-CIs); marker area grows with capability retained.",
        "double-bind plot",
    )
    return join(
        [fig, table(["configuration", *md.DOUBLE_BIND_COLUMNS.values()], rows, sortable=False)]
    )


def _exchangeable(bench: dict[str, Any]) -> Html:
    rows = [
        [s["procedure"], md._rate(s["tpr"]), md._rate(s["fpr"]), md._short(s["fpr_benign"]),
         md._short(s["fpr_hard_benign"])]
        for s in bench.get("procedures_u_c_differ") or []
    ]  # fmt: skip
    if not rows:
        return Html("")
    return details(
        "The same suspects under the wrong null, U and C differ (no references)",
        table(["procedure", "TPR", "FPR", "FPR benign", "FPR hard benign"], rows),
    )


def _provenance(bench: dict[str, Any], versions: dict[str, str]) -> Html:
    import yaml

    timing = bench["timing"]
    stages = [[k.removesuffix("_s"), f"{s:.1f}"] for k, s in timing["stages"].items()]
    models = [[name, key] for name, key in bench.get("models", {}).items()]
    models += [[f"probe {name}", key] for name, key in bench.get("probes", {}).items()]
    return join(
        [
            tag("p", "Config hash ", tag("code", bench["config_hash"]), " (schema ",
                tag("code", bench["schema"]), "). Stage compute recorded in the store: ",
                f"{timing['total_s']:.1f} s."),
            table(["stage", "seconds"], stages, sortable=False),
            table(["package (this report)", "version"], sorted(versions.items()), sortable=False),
            details("Resolved config (YAML)", tag("pre", yaml.safe_dump(bench["config"]))),
            details("Store ids of every model and probe", table(["model", "store id"], models)),
        ]
    )  # fmt: skip


def bench_sections(bench: dict[str, Any], versions: dict[str, str]) -> tuple[Nav, Html]:
    rows = bench["organisms"]
    counts = {g: sum(r["group"] == g for r in rows) for g in md.GROUPS}
    lede = tag(
        "p",
        f"{len(rows)} organisms ({counts['misaligned']} misaligned, {counts['benign']} benign, "
        f"{counts['hard_benign']} hard benign), each judged against its control by "
        f"{len(bench['procedures'])} procedures at alpha = {bench['alpha']:g}. Ground-truth "
        "labels score the decisions and are never used by them.",
        cls="lede",
    )
    parts = [
        ("detection", "Detection", join([_detection(bench), _exchangeable(bench)])),
        ("roc", "ROC curves", _roc(bench)),
        ("grid", "Verdicts per organism", _grid(bench)),
        ("double-bind", "The double bind", _double_bind(bench)),
        ("provenance", "Provenance", _provenance(bench, versions)),
    ]
    nav = [(a, t) for a, t, _ in parts]
    return nav, join([lede, *(section(a, t, body) for a, t, body in parts)])
