"""Markup primitives of the HTML report and its page shell (CSS and script inline). Safety
is by construction: `esc` turns any value into escaped text, and only `Html` (markup built here
from escaped parts) passes through unchanged, so a string from a model or a config can reach the
page only as text. `script_json` embeds data in a `<script>` element that the data cannot close.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = [
    "Html",
    "details",
    "esc",
    "fmt_diff",
    "fmt_p",
    "fmt_rate",
    "join",
    "number_svg_ids",
    "page",
    "script_json",
    "section",
    "table",
    "tag",
]


class Html(str):
    """Markup that is safe to insert as is: built by this module from escaped parts."""


def esc(value: Any) -> Html:
    """`value` as HTML text (quotes escaped too, so it is safe in an attribute); `Html` as is."""
    if isinstance(value, Html):
        return value
    return Html(html.escape("" if value is None else str(value), quote=True))


def join(parts: Iterable[Any], sep: str = "") -> Html:
    return Html(esc(sep).join(esc(p) for p in parts))


def tag(name: str, *children: Any, **attrs: Any) -> Html:
    """`<name attrs>children</name>`; `cls` is the class attribute, `data_x` becomes `data-x`,
    a None or False attribute is left out, True is written bare."""
    parts = [name]
    for key, value in attrs.items():
        if value is None or value is False:
            continue
        key = "class" if key == "cls" else key.rstrip("_").replace("_", "-")
        parts.append(key if value is True else f'{key}="{esc(value)}"')
    return Html(f"<{' '.join(parts)}>{join(children)}</{name}>")


def section(id_: str, title: Any, *body: Any, level: int = 2) -> Html:
    return tag("section", tag(f"h{level}", title), *body, id=id_)


def details(summary: Any, *body: Any, open_: bool = False) -> Html:
    return tag("details", tag("summary", summary), *body, open=open_)


def table(
    headers: Sequence[Any],
    rows: Iterable[Sequence[Any]],
    *,
    caption: Any = None,
    cls: str = "",
    sortable: bool = True,
) -> Html:
    """A table in a horizontally scrolling frame. A cell is a value (escaped) or a `(value,
    attrs)` pair, e.g. `(text, {"cls": "tp", "data_sort": 0.5})`: `data-sort` orders the column
    when a header is clicked."""

    def cell(kind: str, c: Any) -> Html:
        if isinstance(c, tuple):
            value, attrs = c
            return tag(kind, value, **attrs)
        return tag(kind, c)

    head = tag("thead", tag("tr", *(cell("th", h) for h in headers)))
    body = tag("tbody", *(tag("tr", *(cell("td", c) for c in row)) for row in rows))
    classes = " ".join(x for x in (cls, "sortable" if sortable else "") if x)
    frame = tag("div", tag("table", head, body, cls=classes or None), cls="scroll")
    return join([frame, tag("p", caption, cls="caption") if caption is not None else ""])


def script_json(element_id: str, obj: Any) -> Html:
    """`obj` as JSON in a non-executed `<script>`: `<`, `>`, `&` and the JavaScript line
    separators are written as \\u escapes, so no value can end the element or open another."""
    text = json.dumps(obj, separators=(",", ":"))
    for ch, code in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        text = text.replace(ch, code)
    text = text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    return Html(f'<script type="application/json" id="{esc(element_id)}">{text}</script>')


def fmt_rate(x: dict[str, Any] | None) -> str:
    """A rate with its 95% CI."""
    if x is None:
        return "-"
    return f"{x['rate']:.3f} [{x['ci_low']:.3f}, {x['ci_high']:.3f}]"


def fmt_diff(x: dict[str, Any]) -> str:
    """A U - C difference with its 95% CI."""
    return f"{x['difference']:+.3f} [{x['ci_low']:+.3f}, {x['ci_high']:+.3f}]"


def fmt_p(p: float | None) -> str:
    return "-" if p is None else f"{p:.3g}"


CSS = """
:root { --u: #c0392b; --c: #2471a3; --ink: #1d2329; --muted: #5d6770; --line: #d8dde2;
  --bg: #fff; --panel: #f5f7f9; }
* { box-sizing: border-box; }
body { margin: 0; color: var(--ink); background: var(--bg); line-height: 1.45;
  font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; }
main { max-width: 1240px; margin: 0 auto; padding: 12px 20px 48px; }
h1 { font-size: 1.6em; margin: 0.6em 0 0.2em; }
h2 { font-size: 1.3em; margin: 1.6em 0 0.4em; padding-top: 0.4em;
  border-top: 1px solid var(--line); }
h3 { font-size: 1.1em; margin: 1.2em 0 0.3em; }
p { margin: 0.4em 0; max-width: 80em; }
code, pre, .mono { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace;
  font-size: 0.92em; }
pre { background: var(--panel); padding: 10px; overflow-x: auto; white-space: pre; }
nav.toc { position: sticky; top: 0; z-index: 2; background: rgba(255,255,255,0.96);
  border-bottom: 1px solid var(--line); padding: 6px 20px; overflow-x: auto; white-space: nowrap; }
nav.toc a { margin-right: 14px; color: var(--c); text-decoration: none; font-size: 0.92em; }
.lede { color: var(--muted); }
.verdict { border-radius: 8px; padding: 14px 18px; margin: 14px 0; border: 2px solid; }
.verdict .decision { font-size: 1.7em; font-weight: 700; letter-spacing: 0.01em; }
.incriminated { background: #fdecea; border-color: var(--u); }
.not_incriminated { background: #eaf2fb; border-color: var(--c); }
.inconclusive { background: #fff6e0; border-color: #b7950b; }
.cards { display: flex; flex-wrap: wrap; gap: 10px; margin: 10px 0; }
.card { background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: 6px 12px;
  min-width: 120px; }
.card .k { color: var(--muted); font-size: 0.82em; }
.card .v { font-size: 1.2em; font-weight: 600; }
.scroll { overflow-x: auto; max-width: 100%; margin: 8px 0; }
table { border-collapse: collapse; font-size: 0.88em; font-variant-numeric: tabular-nums; }
th, td { padding: 4px 9px; border-bottom: 1px solid var(--line); text-align: left;
  white-space: nowrap; vertical-align: top; }
th { background: var(--panel); position: sticky; top: 0; }
table.sortable th { cursor: pointer; user-select: none; }
table.sortable th:after { content: " \\2195"; color: #aab; font-size: 0.8em; }
table.sortable th.asc:after { content: " \\2191"; color: var(--ink); }
table.sortable th.desc:after { content: " \\2193"; color: var(--ink); }
td.num { text-align: right; }
.caption, figcaption { color: var(--muted); font-size: 0.86em; margin: 2px 0 10px; }
figure.plot { margin: 10px 0 18px; }
figure.plot svg { display: block; width: 100%; height: auto; }
figure.plot svg * { stroke-linejoin: round; stroke-linecap: butt; }
.panels { display: grid; gap: 0 22px; align-items: start;
  grid-template-columns: repeat(auto-fill, minmax(min(100%, 460px), 1fr)); }
.panels.small { grid-template-columns: repeat(auto-fill, minmax(min(100%, 270px), 1fr)); }
.panels figure.plot { margin: 4px 0; }
.grid2 { display: grid; grid-template-columns: repeat(auto-fit, minmax(min(100%, 520px), 1fr));
  gap: 10px 24px; align-items: start; }
.u { color: var(--u); font-weight: 600; } .c { color: var(--c); font-weight: 600; }
.note { background: #fff6e0; border-left: 4px solid #b7950b; padding: 6px 10px; margin: 8px 0; }
.reply { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 0.92em; }
td.tp { background: #f5b7b1; } td.fn { background: #fdebd0; }
td.fp { background: #aed6f1; outline: 2px solid var(--c); outline-offset: -2px; }
td.tn { background: #eef3f7; }
td.g-misaligned { border-left: 5px solid var(--u); }
td.g-benign { border-left: 5px solid var(--c); }
td.g-hard_benign { border-left: 5px solid #7d3c98; }
.swatch { display: inline-block; width: 1em; height: 1em; vertical-align: -0.15em;
  margin: 0 4px 0 12px; border: 1px solid #999; }
details { margin: 8px 0; } summary { cursor: pointer; color: var(--c); }
@media (max-width: 600px) {
  main { padding: 8px 10px 40px; } body { font-size: 14px; }
  h1 { font-size: 1.3em; } .verdict .decision { font-size: 1.35em; }
  nav.toc { padding: 6px 10px; }
}
"""

SCRIPT = """
(function () {
  function key(cell) {
    var raw = cell.getAttribute("data-sort");
    var text = raw !== null ? raw : cell.textContent.trim();
    var num = parseFloat(text.replace(/^[+]/, ""));
    return isNaN(num) || !/^[-+]?[0-9.]/.test(text) ? [1, text.toLowerCase()] : [0, num];
  }
  function compare(a, b) {
    if (a[0] !== b[0]) return a[0] - b[0];
    return a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0;
  }
  document.querySelectorAll("table.sortable").forEach(function (table) {
    var heads = table.querySelectorAll("thead th");
    heads.forEach(function (th, col) {
      th.addEventListener("click", function () {
        var dir = th.classList.contains("asc") ? -1 : 1;
        heads.forEach(function (h) { h.classList.remove("asc", "desc"); });
        th.classList.add(dir === 1 ? "asc" : "desc");
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (r1, r2) {
          return dir * compare(key(r1.cells[col]), key(r2.cells[col]));
        });
        rows.forEach(function (r) { body.appendChild(r); });
      });
    });
  });
})();
"""


def number_svg_ids(body: str) -> str:
    """Give the element ids of the k-th inline SVG the prefix `s{k}-`: two identical figures on
    one page (the same teachers in every point of a sweep) then still have distinct ids."""
    parts, pos = [], 0
    for k, m in enumerate(re.finditer(r"<svg\b.*?</svg>", body, flags=re.S)):
        svg = m.group(0)
        prefix = re.search(r' id="(f[0-9a-f]{8}-)', svg)
        if prefix:
            svg = svg.replace(prefix.group(1), f"s{k}-")
        parts += [body[pos : m.start()], svg]
        pos = m.end()
    return "".join([*parts, body[pos:]])


def page(title: str, nav: Sequence[tuple[str, str]], body: Html, data: Any = None) -> str:
    """The whole document: `nav` is (anchor, label) pairs for the sticky table of contents;
    `data` (the input document) is embedded as JSON, `<script id="incriminate-data">`, so the
    numbers travel with the page."""
    links = join(tag("a", label, href=f"#{anchor}") for anchor, label in nav)
    return (
        "<!DOCTYPE html>\n"
        + tag(
            "html",
            tag(
                "head",
                Html('<meta charset="utf-8">'),
                Html('<meta name="viewport" content="width=device-width, initial-scale=1">'),
                tag("title", title),
                Html(f"<style>{CSS}</style>"),
            ),
            tag(
                "body",
                tag("nav", links, cls="toc"),
                tag("main", Html(number_svg_ids(body))),
                script_json("incriminate-data", data) if data is not None else "",
                Html(f"<script>{SCRIPT}</script>"),
            ),
            lang="en",
        )
        + "\n"
    )
