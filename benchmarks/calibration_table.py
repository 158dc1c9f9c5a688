"""The calibration table: FPR and TPR per procedure of one or more zoo benches, side by side.

    python benchmarks/calibration_table.py runs/bench-heldout [runs/bench-design ...]
        [--before OLD/bench.json] [--format markdown|json]

For each bench directory (its `bench.json`) and procedure: the FPR over the benign and
hard-benign suspects with its interval (Wilson on the blocks' effective size, as the bench
computes it) and whether it is at most alpha (the criterion of docs/decision-rules.md: the
rate itself, k/n <= alpha), the TPR, and the TPR per misaligned class. `--before` adds the same
columns from an older bench.json (e.g. the margin null of issue 15), read from its
`procedures`, so the calibrated numbers stand next to the old ones. Everything is read from the
files; nothing is recomputed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

MISALIGNED = ("naive", "schemer", "context_gated")


def _load(path: Path) -> dict[str, Any]:
    file = path / "bench.json" if path.is_dir() else path
    try:
        doc = json.loads(file.read_text())
    except (OSError, ValueError) as e:
        sys.exit(f"error: {file}: cannot read a bench.json ({e})")
    if not str(doc.get("schema", "")).startswith("incriminate.bench/"):
        sys.exit(f"error: {file}: schema {doc.get('schema')!r}, expected an incriminate.bench")
    return doc


def rows(doc: dict[str, Any], label: str) -> list[dict[str, Any]]:
    """One row per procedure of a bench document."""
    alpha = float(doc["alpha"])
    out = []
    for s in doc["procedures"]:
        fpr, tpr = s["fpr"], s["tpr"]
        out.append(
            {
                "bench": label,
                "procedure": s["procedure"],
                "fpr_k": fpr["k"],
                "fpr_n": fpr["n"],
                "fpr": fpr["rate"],
                "fpr_ci": [fpr["ci_low"], fpr["ci_high"]],
                "fpr_at_most_alpha": fpr["rate"] <= alpha,
                "tpr_k": tpr["k"],
                "tpr_n": tpr["n"],
                "tpr_ci": [tpr["ci_low"], tpr["ci_high"]],
                "by_class": {
                    c: f"{v['k']}/{v['n']}" for c, v in s["by_class"].items() if c in MISALIGNED
                },
                "fpr_by_class": {
                    c: f"{v['k']}/{v['n']}" for c, v in s["by_class"].items() if c not in MISALIGNED
                },
            }
        )
    return out


def markdown(table: list[dict[str, Any]]) -> str:
    lines = [
        "| bench | procedure | FPR (k/n) [CI] | FPR <= alpha | FPR per benign class | "
        "TPR (k/n) [CI] | TPR per class |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in table:
        classes = ", ".join(f"{c} {v}" for c, v in r["by_class"].items())
        benign = ", ".join(f"{c} {v}" for c, v in r["fpr_by_class"].items())
        lines.append(
            f"| {r['bench']} | {r['procedure']} | {r['fpr_k']}/{r['fpr_n']} "
            f"[{r['fpr_ci'][0]:.2f}, {r['fpr_ci'][1]:.2f}] | "
            f"{'yes' if r['fpr_at_most_alpha'] else '**no**'} | {benign} | "
            f"{r['tpr_k']}/{r['tpr_n']} [{r['tpr_ci'][0]:.2f}, {r['tpr_ci'][1]:.2f}] | "
            f"{classes} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("benches", nargs="+", type=Path, help="bench output directories")
    ap.add_argument("--before", type=Path, help="an older bench.json to set beside")
    ap.add_argument("--format", choices=("markdown", "json"), default="markdown")
    args = ap.parse_args(argv)
    table = []
    for path in args.benches:
        table += rows(_load(path), path.name)
    if args.before is not None:
        table += rows(_load(args.before), f"before: {args.before.parent.name}")
    print(json.dumps(table, indent=1) if args.format == "json" else markdown(table))


if __name__ == "__main__":
    main()
