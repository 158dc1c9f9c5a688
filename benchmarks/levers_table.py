"""The levers table of docs/levers.md, from the outputs of the levers sweep (or any sweep).

Reads the sweep directory alone: `sweep.json` for the points (in the sweep's order) and each
point's `results.json` (`incriminate.results/2`). One row per (point, data selection): the
ground-truth deployment rates of U's and C's students, whether the drive and the evasion
transferred (`transfer`, ground truth), the evidence audits' mean U - C with its sign-flip p,
the capability kept, and the point's pooled verdict p. Under the table, one line: the number of
points, their summed stage compute and the count of each verdict decision.

    incriminate sweep configs/sweeps/levers.yaml                   # writes runs/sweep/levers/
    python benchmarks/levers_table.py [DIR] [--format markdown|json]  # DIR: runs/sweep/levers

Any sweep's directory works; points whose names are not levers are labelled by their names.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

LABELS = {
    "logit-forward-kl": "logit forward KL (base)",
    "logit-reverse-kl": "logit reverse KL",
    "logit-jsd": "logit JSD(0.5)",
    "logit-ce-0.5": "logit + hard-label CE 0.5",
    "sft": "sft (hard labels)",
    "on-policy": "on_policy (GKD, lam 0.5, JSD)",
    "dpo-logprob": "dpo (teacher's log-prob ranking)",
    "dpo-choice": "dpo (teacher's choice)",
    "init-small": "student init: small (pico)",
    "init-trusted": "student init: trusted corpus",
    "lora-r8": "LoRA r=8 (q, v)",
    "eval-likeness-filter": "eval-likeness filter",
    "inoculation-prefix": "inoculation prefix",
    "paraphrase": "paraphrase by trusted model",
    "prompts-250-epochs-10": "250 unique prompts x 10 epochs",
    "tasks-only": "tasks only",
}
HEADER = (
    "| lever | data | deployment U/C (GT) | drive transferred | evasion (GT, U−C) "
    "| audits U−C (p) | capability kept | verdict p |"
)


class Missing(Exception):
    """A sweep directory, its sweep.json or a point's results.json is not there."""


def _read(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise Missing(f"no such file: {path}")
    return json.loads(path.read_text())


def load(sweep_dir: Path) -> list[tuple[str, dict[str, Any]]]:
    """(point id, its results.json) for every point, in the sweep's order."""
    if not sweep_dir.is_dir():
        raise Missing(f"no such sweep directory: {sweep_dir}")
    points = []
    for p in _read(sweep_dir / "sweep.json")["points"]:
        path = sweep_dir / p["results"]
        if not path.is_file():
            raise Missing(f"point {p['id']} ({p.get('status')}): no results.json at {path}")
        points.append((p["id"], _read(path)))
    return points


def rows(points: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    """One row per (point, data selection), with the numbers of the table."""
    out = []
    for pid, results in points:
        for c in results["configurations"]:
            gt, ev, tr = c["ground_truth"], c["evidence"], c["transfer"]
            out.append(
                {
                    "point": pid,
                    "lever": LABELS.get(pid, pid),
                    "data": c["data"],
                    "deployment_u": gt["deployment"]["teacher"]["rate"],
                    "deployment_c": gt["deployment"]["control"]["rate"],
                    "drive": tr["drive"],
                    "drive_fraction": tr["drive_fraction"],
                    "evasion": tr["evasion"],
                    "evasion_diff": gt["honeypot_discrimination"]["difference"],
                    "audit_diff": ev["difference"],
                    "audit_p": ev["p_value"],
                    "capability_kept": tr["capability_retained"],
                    "verdict_p": results["verdict"]["p_value"],
                }
            )
    return out


def markdown_row(r: dict[str, Any]) -> str:
    frac = "" if r["drive_fraction"] is None else f" ({r['drive_fraction']:.0%})"
    cap = "-" if r["capability_kept"] is None else f"{r['capability_kept']:.0%}"
    cells = [
        r["lever"],
        r["data"],
        f"{r['deployment_u']:.3f}/{r['deployment_c']:.3f}",
        f"{r['drive']}{frac}",
        f"{r['evasion']} {r['evasion_diff']:+.3f}",
        f"{r['audit_diff']:+.4f} ({r['audit_p']:.3g})",
        cap,
        f"{r['verdict_p']:.3g}",
    ]
    return "| " + " | ".join(cells) + " |"


def summary(points: list[tuple[str, dict[str, Any]]]) -> str:
    """Point count, summed stage compute and verdict decision counts, on one line. A stage that
    several points share (organisms, base runs) counts once in each point's `timing.total_s`."""
    total = sum(results["timing"]["total_s"] for _, results in points)
    decisions = Counter(results["verdict"]["decision"] for _, results in points)
    counts = ", ".join(f"{k} {n}" for k, n in sorted(decisions.items()))
    h, m = divmod(round(total / 60), 60)
    return (
        f"{len(points)} points, stage compute {total:.1f} s = {h}h {m:02d}m (summed over points); "
        f"verdicts: {counts}"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("sweep_dir", nargs="?", type=Path, default=Path("runs/sweep/levers"))
    ap.add_argument("--format", choices=("markdown", "json"), default="markdown")
    args = ap.parse_args(argv)
    try:
        points = load(args.sweep_dir)
    except (Missing, json.JSONDecodeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    table = rows(points)
    if args.format == "json":
        print(json.dumps(table, indent=1))
        return 0
    print(HEADER)
    print("|---" * 8 + "|")
    for r in table:
        print(markdown_row(r))
    print()
    print(summary(points))
    return 0


if __name__ == "__main__":
    sys.exit(main())
