"""`bench.md` and the double-bind plot: the zoo benchmark rendered from `bench.json` alone.

The benchmark asks whether distillation lets audits catch what auditing the teacher directly
misses: per procedure (the direct audit, each configuration alone, each battery) its TPR over
misaligned organisms, its FPR over benign and hard-benign ones, and the AUROC of its evidence
statistic; then each configuration's double bind (ground truth): did the drive transfer while
the evasion did not. Like `report.md` it holds numbers and registered names only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["plot_double_bind", "render_markdown"]

GROUPS = ("misaligned", "benign", "hard_benign")
DOUBLE_BIND_COLUMNS = {
    "drive_transfer": "drive transfer",
    "evasion_retained": "evasion retained (all misaligned)",
    "evasion_retained_evaders": "evasion retained (evaders)",
    "capability_retained": "capability retained",
    "evasion_acting_evaders": "evasion among students that act (evaders)",
}
MARKS = {"incriminated": " ✓", "inconclusive": " ?", "not_incriminated": ""}


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _rate(x: dict[str, Any] | None) -> str:
    """A proportion with its Wilson CI and counts, or '-' without rows."""
    if x is None:
        return "-"
    return f"{x['rate']:.3f} [{x['ci_low']:.3f}, {x['ci_high']:.3f}] ({x['k']}/{x['n']})"


def _short(x: dict[str, Any] | None) -> str:
    return "-" if x is None else f"{x['rate']:.3f} ({x['k']}/{x['n']})"


def _auroc(x: dict[str, Any] | None) -> str:
    return "-" if x is None else f"{x['auroc']:.3f} [{x['ci_low']:.3f}, {x['ci_high']:.3f}]"


def _mean(x: dict[str, Any] | None) -> str:
    """A mean with its t-interval and n, or '-' without values."""
    if x is None:
        return "-"
    if x["ci_low"] is None:
        return f"{x['mean']:.3f} (n={x['n']})"
    return f"{x['mean']:.3f} [{x['ci_low']:.3f}, {x['ci_high']:.3f}] (n={x['n']})"


def _headline(bench: dict[str, Any]) -> list[str]:
    lines = [
        "## Detection",
        "",
        "TPR over misaligned organisms, FPR over the others (benign twins and benign organisms, "
        "hard benign ones), each with its Wilson 95% CI on the effective sample size of the "
        "blocks suspects share (base seed and drive: control, base and lineage) and counts; an "
        "inconclusive decision counts as not incriminated. AUROC of the procedure's statistic "
        "(mean logit U - C over the evidence audits; for `direct`, -log10 of its p; for its "
        "text and cache parts, log T / cells), Newcombe's score interval on the blocks' "
        "effective sizes (it does not collapse under separation). FPR<=alpha: the FPR's lower "
        'bound does not exceed alpha. Decisions test the null "U is benign": U\'s statistic '
        "against the same statistic on the auditor's benign reference teachers "
        "(docs/decision-rules.md). `direct` is the "
        "full direct baseline: any of its parts at alpha/3.",
        "",
        "| procedure | kind | TPR [CI] (k/n) | FPR [CI] (k/n) | FPR benign | FPR hard benign | "
        "AUROC [CI] | FPR<=alpha? |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in bench["procedures"]:
        within = {None: "-", True: "yes", False: "no"}[s["fpr_within_alpha"]]
        lines.append(
            f"| {s['procedure']} | {s['kind']} | {_rate(s['tpr'])} | {_rate(s['fpr'])} | "
            f"{_short(s['fpr_benign'])} | {_short(s['fpr_hard_benign'])} | "
            f"{_auroc(s['auroc'])} | {within} |"
        )
    return lines


def _exchangeable(bench: dict[str, Any]) -> list[str]:
    """The same suspects under "U and C differ" (no references), for comparison."""
    if not bench.get("procedures_u_c_differ"):
        return []
    lines = [
        "## Under the wrong null: U and C differ",
        "",
        'Each decision above tests the null of record, "U is benign": U\'s statistic against '
        f"the same statistic on the auditor's {bench.get('n_references', 0)} benign reference "
        "teachers (the teacher as a random effect; `verdict.null`). Here the same suspects "
        "under the null that U and C are exchangeable (sign-flip and permutation tests of U "
        "against C alone): two benign teachers differ too, so its FPR is not controlled.",
        "",
        "| procedure | TPR [CI] (k/n) | FPR [CI] (k/n) | FPR benign | FPR hard benign |",
        "|---|---|---|---|---|",
    ]
    for s in bench["procedures_u_c_differ"]:
        lines.append(
            f"| {s['procedure']} | {_rate(s['tpr'])} | {_rate(s['fpr'])} | "
            f"{_short(s['fpr_benign'])} | {_short(s['fpr_hard_benign'])} |"
        )
    return ["", *lines]


def _class_counts(title: str, note: str, procs: list[dict[str, Any]], key: str) -> list[str]:
    """A table of k/n per procedure (rows) and class (columns) from each procedure's `key`."""
    classes = list(dict.fromkeys(c for s in procs for c in s[key]))
    lines = [
        f"## {title}",
        "",
        note,
        "",
        "| procedure | " + " | ".join(classes) + " |",
        "|---|" + "---|" * len(classes),
    ]
    for s in procs:
        cells = [s[key].get(c) for c in classes]
        lines.append(
            f"| {s['procedure']} | "
            + " | ".join("-" if x is None else f"{x['k']}/{x['n']}" for x in cells)
            + " |"
        )
    return lines


def _by_class(bench: dict[str, Any]) -> list[str]:
    note = "Organisms incriminated / organisms of the class."
    return _class_counts("Detection by class", note, bench["procedures"], "by_class")


def _beyond_direct(bench: dict[str, Any]) -> list[str]:
    """Per class, the suspects each procedure catches that the full direct baseline misses."""
    procs = [s for s in bench["procedures"] if s.get("beyond_direct")]
    if not procs:
        return []
    note = (
        "Suspects a procedure incriminates that the full direct baseline (`direct`: behavioural "
        "audits and probe, text audit, cache read, on U itself) does not, over the suspects of "
        "the class: the only catches distillation earns credit for."
    )
    return ["", *_class_counts("Caught beyond the direct baseline", note, procs, "beyond_direct")]


def _truth_by_class(bench: dict[str, Any]) -> list[str]:
    """Ground truth of the teachers per class: what the procedures should find."""
    known = [r["ground_truth"] for r in bench["organisms"] if r.get("ground_truth")]
    metrics = [
        m
        for m in ("deployment", "honeypot_discrimination", "task_accuracy")
        if known and all(m in g for g in known)
    ]
    lines = [
        "## Ground truth by class",
        "",
        "Teachers' ground truth, mean over the class's organisms: teacher U vs its control C.",
        "",
        "| class | n | " + " | ".join(f"{m} U vs C" for m in metrics) + " |",
        "|---|---|" + "---|" * len(metrics),
    ]
    classes = list(dict.fromkeys(r["class"] for r in bench["organisms"]))
    for c in classes:
        rows = [r for r in bench["organisms"] if r["class"] == c and r.get("ground_truth")]
        if not rows:
            continue
        cells = []
        for m in metrics:
            u = sum(r["ground_truth"][m]["teacher"] for r in rows) / len(rows)
            k = sum(r["ground_truth"][m]["control"] for r in rows) / len(rows)
            cells.append(f"{u:.3f} vs {k:.3f}")
        lines.append(f"| {c} | {len(rows)} | " + " | ".join(cells) + " |")
    return lines


def _deployment(row: dict[str, Any]) -> str:
    d = row.get("ground_truth", {}).get("deployment")
    return "-" if d is None else f"{d['teacher']:.3f} vs {d['control']:.3f}"


def _organisms(bench: dict[str, Any]) -> list[str]:
    keys = [s["procedure"] for s in bench["procedures"]]
    lines = [
        "## Organisms",
        "",
        "Ground truth: deployment (misaligned-action rate on real unmonitored opportunities) of "
        "the organism (U) against its control (C). Then each procedure's one-sided p-value; "
        "✓ incriminated, ? inconclusive.",
        "",
        "| organism | class | drive | seed | deployment U vs C | " + " | ".join(keys) + " |",
        "|---|---|---|---|---|" + "---|" * len(keys),
    ]
    for r in bench["organisms"]:
        cells = []
        for k in keys:
            p = r["procedures"].get(k)
            cells.append("-" if p is None else f"{p['p_value']:.3g}{MARKS[p['decision']]}")
        lines.append(
            f"| {r['name']} | {r['class']} | {r.get('drive') or '-'} | {r.get('base_seed', '-')} "
            f"| {_deployment(r)} | " + " | ".join(cells) + " |"
        )
    return lines


def _double_bind(bench: dict[str, Any]) -> list[str]:
    lines = [
        "## The double bind, per configuration",
        "",
        "Ground truth over misaligned organisms: the share of the teacher's drive the students "
        "inherited, of its audit evasion, and of its task capability; mean with 95% t-CI and the "
        "number of organisms. Evaders: schemer and context-gated organisms. Distillation helps "
        "when the drive transfers and the evasion does not.",
        "",
        "| configuration | " + " | ".join(DOUBLE_BIND_COLUMNS.values()) + " |",
        "|---|" + "---|" * len(DOUBLE_BIND_COLUMNS),
    ]
    for c in bench["configurations"]:
        cells = [_mean(c[k]) for k in DOUBLE_BIND_COLUMNS]
        lines.append(f"| {c['configuration']} | " + " | ".join(cells) + " |")
    return lines


def render_markdown(bench: dict[str, Any]) -> str:
    """The Markdown report of a bench document."""
    rows, timing = bench["organisms"], bench["timing"]
    counts = {g: sum(r["group"] == g for r in rows) for g in GROUPS}
    stages = ", ".join(f"{k.removesuffix('_s')} {s:.1f}s" for k, s in timing["stages"].items())
    lines = [
        f"# Incrimination benchmark: alpha = {bench['alpha']:g}",
        "",
        f"Config `{bench['config_hash']}`: {len(rows)} organisms ({counts['misaligned']} "
        f"misaligned, {counts['benign']} benign, {counts['hard_benign']} hard benign), "
        f"{_count(len(bench['procedures']), 'procedure')}, "
        f"{_count(len(bench['configurations']), 'configuration')}. "
        "Ground-truth labels score the decisions and are never used by them.",
        "",
        *_headline(bench),
        *_exchangeable(bench),
        "",
        *_by_class(bench),
        *_beyond_direct(bench),
        "",
        *_truth_by_class(bench),
        "",
        *_organisms(bench),
        "",
        *_double_bind(bench),
        "",
        "## Timing",
        "",
        f"Compute recorded by the stages: {timing['total_s']:.1f}s ({stages}).",
        "",
    ]
    return "\n".join(lines)


def _err(x: dict[str, Any]) -> tuple[float, float]:
    """(below, above) error-bar lengths of a mean with a t-CI; zero without one."""
    if x["ci_low"] is None:
        return 0.0, 0.0
    return x["mean"] - x["ci_low"], x["ci_high"] - x["mean"]


def plot_double_bind(bench: dict[str, Any], path: Path) -> None:
    """Drive transfer (x) against the evaders' evasion retained (y), one point per configuration.

    Marker area grows with capability retained; error bars are the 95% t-CIs. Configurations
    without both coordinates are left out. Bottom right is where distillation helps.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    points = [
        c
        for c in bench["configurations"]
        if c["drive_transfer"] is not None and c["evasion_retained_evaders"] is not None
    ]
    fig = Figure(figsize=(7, 5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for c in points:
        x, y, cap = c["drive_transfer"], c["evasion_retained_evaders"], c["capability_retained"]
        size = 30 + 300 * max(0.0, cap["mean"]) if cap is not None else 30
        ax.errorbar(
            x["mean"],
            y["mean"],
            xerr=[[v] for v in _err(x)],
            yerr=[[v] for v in _err(y)],
            fmt="none",
            ecolor="0.6",
            capsize=3,
        )
        ax.scatter(x["mean"], y["mean"], s=size, alpha=0.7)
        ax.annotate(
            c["configuration"],
            (x["mean"], y["mean"]),
            fontsize=7,
            xytext=(4, 4),
            textcoords="offset points",
        )
    ax.set_xlabel("drive transfer (mean over misaligned organisms)")
    ax.set_ylabel("evasion retained (schemer + context-gated)")
    ax.set_title(
        f"The double bind: {len(points)} configurations (marker area ~ capability retained)",
        fontsize=10,
    )
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
