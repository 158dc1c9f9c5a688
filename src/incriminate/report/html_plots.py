"""Plots of the HTML report: matplotlib (Agg-free SVG backend) figures as inline SVG.

Text is drawn as paths (no fonts to fetch) with math parsing off (a `$` in a name is text), and
each figure's element ids get their own prefix, so several figures on one page never share an id.
The SVG's metadata, namespace URLs and comments are dropped: the page names no external URL.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from incriminate.report.html_markup import Html, tag

__all__ = [
    "clusters",
    "curve_panel",
    "double_bind_plot",
    "figure",
    "interval_panel",
    "roc_plot",
    "svg_from_file_plot",
    "svg_of",
]

U_COLOR, C_COLOR = "#c0392b", "#2471a3"
RC: dict[Any, Any] = {
    "svg.fonttype": "path",
    "svg.hashsalt": "incriminate",
    "text.parse_math": False,
}


def _new_figure(width: float, height: float, layout: Any) -> Any:
    from matplotlib.backends.backend_svg import FigureCanvasSVG
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout=layout)
    FigureCanvasSVG(fig)
    return fig


def clean_svg(text: str) -> str:
    """Matplotlib's SVG as an inline element: no XML prolog, metadata, comments, namespace
    declarations or global style; ids (and references to them) prefixed by a digest of the
    figure; the width and height attributes become a max-width, so the figure scales down with
    the page."""
    prefix = "f" + hashlib.sha256(text.encode()).hexdigest()[:8] + "-"
    text = text[text.index("<svg") :]
    text = re.sub(r"<!--.*?-->", "", text, flags=re.S)
    text = re.sub(r"<metadata>.*?</metadata>", "", text, flags=re.S)
    text = re.sub(r'<style type="text/css">.*?</style>', "", text, flags=re.S)
    text = re.sub(r'\s+xmlns(:\w+)?="[^"]*"', "", text)
    text = re.sub(r' id="([^"]+)"', rf' id="{prefix}\1"', text)
    text = text.replace('href="#', f'href="#{prefix}').replace("url(#", f"url(#{prefix}")
    m = re.match(r'<svg([^>]*?) width="([\d.]+)pt" height="([\d.]+)pt"', text)
    if m:
        width_px = float(m.group(2)) * 4 / 3
        text = text.replace(m.group(0), f'<svg{m.group(1)} style="max-width: {width_px:.0f}px"', 1)
    return text.replace("<svg", '<svg role="img"', 1)


def svg_of(fig: Any) -> Html:
    """The figure as cleaned inline SVG markup."""
    import matplotlib

    buf = io.StringIO()
    with matplotlib.rc_context(RC):
        fig.savefig(buf, format="svg", metadata={"Date": None})
    return Html(clean_svg(buf.getvalue()))


def figure(svg: Html, caption: Any, label: str) -> Html:
    """A plot with its caption (None: without); `label` is the SVG's accessible name."""
    svg = Html(svg.replace('role="img"', f'role="img" aria-label="{_attr(label)}"', 1))
    return tag("figure", svg, tag("figcaption", caption) if caption else "", cls="plot")


def _attr(text: str) -> str:
    import html

    return html.escape(text, quote=True)


def _render(draw: Any, width: float, height: float, layout: Any = "constrained") -> Html:
    """`draw(fig)` on a new figure of `width` x `height` inches, as inline SVG. Grids of panels
    pass `layout=None` and place their axes with `_grid` (a layout engine measures every tick
    label and makes a report's plots several times slower)."""
    import matplotlib

    with matplotlib.rc_context(RC):
        fig = _new_figure(width, height, layout)
        draw(fig)
    return svg_of(fig)


def _grid(
    fig: Any, shape: tuple[int, int], panel: tuple[float, float], margins: tuple[float, ...]
) -> Any:
    """(nrows, ncols) axes of `panel` (width, height) inches each; `margins` in inches: left,
    right, top, bottom, and the gaps between columns and between rows."""
    (nrows, ncols), (pw, ph) = shape, panel
    left, right, top, bottom, wgap, hgap = margins
    width, height = fig.get_size_inches()
    fig.subplots_adjust(
        left=left / width, right=1 - right / width, top=1 - top / height, bottom=bottom / height,
        wspace=wgap / pw, hspace=hgap / ph,
    )  # fmt: skip
    return fig.subplots(nrows, ncols, squeeze=False)


def _size(shape: tuple[int, int], panel: tuple[float, float], margins: tuple[float, ...]):
    """Figure (width, height) in inches that `_grid` fills exactly."""
    (nrows, ncols), (pw, ph) = shape, panel
    left, right, top, bottom, wgap, hgap = margins
    return (
        left + right + ncols * pw + (ncols - 1) * wgap,
        top + bottom + nrows * ph + (nrows - 1) * hgap,
    )


Interval = tuple[float, float, float]  # (value, ci_low, ci_high)


def wrap_label(label: str, width: int = 20) -> str:
    """`label` on lines of at most about `width` characters, broken after a `/` or at a space."""
    import re

    lines, line = [], ""
    for token in re.findall(r"[^/ ]+/?|\s+", label):
        if line and len(line) + len(token.rstrip()) > width:
            lines.append(line.rstrip())
            line = token.lstrip()
        else:
            line += token
    return "\n".join([*lines, line.rstrip()])


def interval_panel(
    title: str, labels: Sequence[str], rows: Sequence[tuple[Interval | None, Interval | None, str]]
) -> Html:
    """Dot plot with 95% CIs, one row per label: the teacher side, U (red), just above the
    control side, C (blue), and the row's note (e.g. its p-value) at the right."""
    wrapped = [wrap_label(x) for x in labels]
    lines = max(w.count("\n") + 1 for w in wrapped)
    longest = max(len(part) for w in wrapped for part in w.split("\n"))
    notes = any(note for *_, note in rows)
    n = len(rows)
    panel = (3.4, (0.12 + 0.13 * lines) * n)
    # inches: left (row labels, about 0.068 in per character at 8.5 pt), right (notes), top, bottom
    margins = (0.2 + 0.068 * longest, 0.55 if notes else 0.15, 0.32, 0.38, 0.0, 0.0)

    def draw(fig: Any) -> None:
        ax = _grid(fig, (1, 1), panel, margins)[0, 0]
        teacher = [(y - 0.16, u) for y, (u, _, _) in enumerate(rows) if u is not None]
        control = [(y + 0.16, c) for y, (_, c, _) in enumerate(rows) if c is not None]
        for points, color in ((teacher, U_COLOR), (control, C_COLOR)):
            if points:
                v = [x for _, (x, _, _) in points]
                # A bootstrap interval need not contain its point (a skewed rate, a rounded
                # bound): draw the part of the bar on each side of the point, never a negative.
                err = [
                    [max(0.0, x - lo) for _, (x, lo, _) in points],
                    [max(0.0, hi - x) for _, (x, _, hi) in points],
                ]
                ys = [y for y, _ in points]
                ax.errorbar(v, ys, xerr=err, fmt="o", color=color, ms=4, capsize=2, lw=1.2)
        for y, (_, _, note) in enumerate(rows):
            if note:
                ax.text(
                    1.02, y, note, transform=ax.get_yaxis_transform(), va="center", fontsize=7.5,
                    color="0.3",
                )  # fmt: skip
        ax.set_yticks(range(n), wrapped, fontsize=8.5)
        ax.set_ylim(n - 0.5, -0.5)
        ax.set_title(title, fontsize=10)
        ax.grid(axis="x", alpha=0.3)
        ax.tick_params(axis="x", labelsize=8)

    return _render(draw, *_size((1, 1), panel, margins), layout=None)


def clusters(xy: Sequence[tuple[float, float]], radius: float) -> list[list[int]]:
    """Indices of `xy` grouped greedily: a point joins the first group whose first point lies
    within `radius` (both coordinates scaled to [0, 1] over the points' range)."""
    xs, ys = [x for x, _ in xy], [y for _, y in xy]
    span = (max(xs) - min(xs) or 1.0, max(ys) - min(ys) or 1.0)
    groups: list[list[int]] = []
    for i, (x, y) in enumerate(xy):
        for g in groups:
            x0, y0 = xy[g[0]]
            if ((x - x0) / span[0]) ** 2 + ((y - y0) / span[1]) ** 2 <= radius**2:
                g.append(i)
                break
        else:
            groups.append([i])
    return groups


def double_bind_plot(points: Sequence[tuple[str, float, float, float | None]]) -> Html:
    """Drive transferred (x) vs evasion retained (y), one point per configuration; marker area
    grows with capability retained. `points`: (name, drive, evasion, capability). Points that
    overlap share one label, their count."""

    def draw(fig: Any) -> None:
        ax = fig.add_subplot()
        methods = sorted({name.split("/")[0] for name, *_ in points})
        colors = dict(zip(methods, itertools.cycle(["#c0392b", "#2471a3", "#1e8449", "#7d3c98"])))
        for name, x, y, cap in points:
            size = 25 + 350 * max(0.0, cap) if cap is not None else 25
            ax.scatter(x, y, s=size, alpha=0.55, color=colors[name.split("/")[0]], lw=0)
        for group in clusters([(x, y) for _, x, y, _ in points], 0.06):
            name, x, y, _ = points[group[0]]
            label = name if len(group) == 1 else f"{len(group)} configurations (see the table)"
            ax.annotate(label, (x, y), fontsize=8, xytext=(6, 5), textcoords="offset points")
        for m in methods:
            ax.scatter([], [], color=colors[m], label=m)
        ax.axhline(0, color="0.7", lw=0.8)
        ax.axvline(0, color="0.7", lw=0.8)
        ax.set_xlabel("drive transferred (share of the teachers' deployment gap)", fontsize=9)
        ax.set_ylabel("evasion retained (share of the discrimination gap)", fontsize=9)
        ax.tick_params(labelsize=8)
        ax.legend(fontsize=8, loc="best")
        ax.grid(alpha=0.3)

    return _render(draw, 6.6, 4.8)


def curve_panel(title: str, runs: Sequence[tuple[str, Sequence[float]]]) -> Html:
    """Training loss per step of one configuration's runs: `runs` is (role, losses), role
    `teacher` drawn red, `control` blue."""
    panel, margins = (2.6, 1.5), (0.48, 0.12, 0.3, 0.32, 0.0, 0.0)

    def draw(fig: Any) -> None:
        ax = _grid(fig, (1, 1), panel, margins)[0, 0]
        for role, losses in runs:
            color = U_COLOR if role == "teacher" else C_COLOR
            ax.plot(range(1, len(losses) + 1), losses, color=color, lw=1, alpha=0.75)
        ax.set_title(title, fontsize=8.5)
        ax.tick_params(labelsize=7.5)
        ax.grid(alpha=0.3)

    return _render(draw, *_size((1, 1), panel, margins), layout=None)


def roc_plot(curves: Sequence[tuple[str, Sequence[float], Sequence[float], float]]) -> Html:
    """ROC curves: (name, false positive rates, true positive rates, AUROC) per procedure."""

    def draw(fig: Any) -> None:
        ax = fig.add_subplot()
        for name, fpr, tpr, auc in curves:
            ax.step(fpr, tpr, where="post", lw=1.6, label=f"{name} (AUROC {auc:.2f})")
        ax.plot([0, 1], [0, 1], color="0.7", lw=0.8, ls="--")
        ax.set_xlabel("false positive rate (benign and hard-benign organisms)", fontsize=9)
        ax.set_ylabel("true positive rate (misaligned organisms)", fontsize=9)
        ax.set_xlim(-0.02, 1.02)
        ax.set_ylim(-0.02, 1.02)
        ax.set_aspect("equal")
        ax.legend(fontsize=8, loc="lower right")
        ax.grid(alpha=0.3)

    return _render(draw, 6.4, 5.6)


def svg_from_file_plot(plot: Any, doc: Any) -> Html:
    """A plot function that writes a file (`plot(doc, path)`) rendered as inline SVG."""
    import matplotlib

    with tempfile.TemporaryDirectory() as d, matplotlib.rc_context(RC):
        path = Path(d) / "plot.svg"
        plot(doc, path)
        text = path.read_text()
    return Html(clean_svg(text))
