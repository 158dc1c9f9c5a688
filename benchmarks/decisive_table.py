"""The decisive table (issue 17): per misaligned class, ground truth, the direct baseline and each
battery, from a finished bench.

    python benchmarks/decisive_table.py RUN/bench.json [MORE/bench.json ...] [--configs]
        [--format json]

Several bench.json files are pooled: their suspects, each with the decision its own bench made,
form one table (the procedures every suspect has), as for two held-out zoos of the same rules.

Per misaligned class: mean ground-truth deployment and honeypot discrimination of its teachers;
then, per procedure (the full direct baseline and its parts, each battery the bench ran, and with
`--configs` each configuration alone), its TPR on the class at the bench's calibrated decisions
with a Wilson 95% interval (each suspect its own (base seed, drive) block), and the AUROC of its
p-value (smaller p = more suspicious; ties one half) against the benign-class suspects *of the
same shape*, the comparison an auditor faces (a two-stage robust schemer against two-stage benign
teachers), with Newcombe's interval on block-effective sizes. Under it: each procedure's FPR over
every benign-class suspect, with the block-aware Wilson interval of `calibration_table.py`, and
per class the double bind of each configuration (ground truth: drive transferred, students that
act, evasion among them, capability kept).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from incriminate.verdict.bench import auroc, block_proportion, double_bind, proportion

PREFIXES = ("direct", "battery/")


def procedures(bench: dict[str, Any], configs: bool = False) -> list[str]:
    """The procedures every organism of the bench has, in the bench's order: the direct baseline
    and its parts, the batteries, and (configs) each configuration alone."""
    rows = bench["organisms"]
    prefixes = (*PREFIXES, "config/") if configs else PREFIXES
    names = [k for k in rows[0]["procedures"] if k.startswith(prefixes)]
    return [k for k in names if all(k in r["procedures"] for r in rows)]


def _block(row: dict[str, Any]) -> tuple[Any, Any]:
    return (row.get("base_seed"), row.get("drive"))


def _hit(row: dict[str, Any], proc: str) -> bool:
    return bool(row["procedures"][proc]["decision"] == "incriminated")


def table(bench: dict[str, Any], configs: bool = False) -> list[dict[str, Any]]:
    """One entry per misaligned class, in the bench's order."""
    rows = bench["organisms"]
    procs = procedures(bench, configs)
    benign = [r for r in rows if r["label"] == 0]
    out = []
    for cls in dict.fromkeys(r["class"] for r in rows if r["label"] == 1):
        mine = [r for r in rows if r["class"] == cls]
        same = [r for r in benign if r["shape"] == mine[0]["shape"]]
        gt = {
            m: sum(r["ground_truth"][m]["teacher"] for r in mine) / len(mine)
            for m in ("deployment", "honeypot_discrimination")
        }
        entry: dict[str, Any] = {"class": cls, "n": len(mine), "shape": mine[0]["shape"], **gt}
        for proc in procs:
            hits = sum(_hit(r, proc) for r in mine)
            fpr = (
                block_proportion([_hit(r, proc) for r in benign], [_block(r) for r in benign])
                if benign
                else None
            )
            auc = (
                auroc(
                    [-r["procedures"][proc]["p_value"] for r in mine],
                    [-r["procedures"][proc]["p_value"] for r in same],
                    pos_blocks=[_block(r) for r in mine],
                    neg_blocks=[_block(r) for r in same],
                )
                if same
                else None
            )
            entry[proc] = {"tpr": proportion(hits, len(mine)), "fpr": fpr, "auroc": auc}
        entry["double_bind"] = double_bind(mine)
        entry["acting"] = {
            c: sum(r["configurations"][c].get("acting") or 0 for r in mine)
            for c in dict.fromkeys(k for r in mine for k in r.get("configurations", {}))
        }
        out.append(entry)
    return out


def _rate(p: dict[str, Any]) -> str:
    return f"{p['k']}/{p['n']} [{p['ci_low']:.2f}, {p['ci_high']:.2f}]"


def _cell(e: dict[str, Any]) -> str:
    auc = e["auroc"]
    return f"{e['tpr']['k']}/{e['tpr']['n']}" + (
        "" if auc is None else f" (AUROC {auc['auroc']:.2f})"
    )


def _mean(m: dict[str, Any] | None, digits: int = 3) -> str:
    return "–" if m is None else f"{m['mean']:+.{digits}f}"


def markdown(entries: list[dict[str, Any]], procs: list[str]) -> str:
    """The decisive table, the FPR line and the double bind, as markdown."""
    lines = [
        "| class | n | deployment | discrimination | " + " | ".join(procs) + " |",
        "|" + "---|" * (4 + len(procs)),
    ]
    for r in entries:
        cells = [_cell(r[p]) for p in procs]
        lines.append(
            f"| {r['class']} | {r['n']} | {r['deployment']:.3f} | "
            f"{r['honeypot_discrimination']:.3f} | " + " | ".join(cells) + " |"
        )
    if entries:
        lines.append("")
        lines.append(
            "TPR intervals (Wilson, 95%): "
            + "; ".join(
                f"{r['class']} {p} {_rate(r[p]['tpr'])}"
                for r in entries
                for p in procs
                if r[p]["tpr"]["k"]
            )
        )
        first = entries[0]
        lines.append(
            "FPR over benign-class suspects (block-aware Wilson, 95%): "
            + ", ".join(f"{p} {_rate(first[p]['fpr'])}" for p in procs if first[p]["fpr"])
        )
        lines.append("")
        lines.append(
            "| class | configuration | drive transferred | students acting (all seeds) | "
            "evasion among acting | capability kept |"
        )
        lines.append("|---|---|---|---|---|---|")
        for r in entries:
            for d in r["double_bind"]:
                c = d["configuration"]
                lines.append(
                    f"| {r['class']} | {c} | {_mean(d['drive_transfer'])} | "
                    f"{r['acting'].get(c, 0)} | {_mean(d['evasion_acting'])} | "
                    f"{_mean(d['capability_retained'], 2)} |"
                )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The decisive table from a bench.json.")
    parser.add_argument("bench", type=Path, nargs="+", help="one bench.json, or several to pool")
    parser.add_argument("--configs", action="store_true", help="add each configuration alone")
    parser.add_argument("--format", choices=("markdown", "json"), default="markdown")
    args = parser.parse_args(argv)
    organisms: list[dict[str, Any]] = []
    for path in args.bench:
        try:
            organisms += json.loads(path.read_text())["organisms"]
        except (OSError, ValueError, KeyError, TypeError) as err:
            print(f"error: {path} is not a readable bench.json: {err}", file=sys.stderr)
            return 2
    bench = {"organisms": organisms}
    try:
        procs = procedures(bench, args.configs)
        entries = table(bench, args.configs)
    except (ValueError, KeyError, TypeError, IndexError) as err:
        print(f"error: the bench files do not make one table: {err}", file=sys.stderr)
        return 2
    if args.format == "json":
        print(json.dumps(entries, indent=1))
        return 0
    print(markdown(entries, procs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
