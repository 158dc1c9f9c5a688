"""What the teacher caches of a demo hold: the testbed's check that no cache gives the auditor a
real opportunity, and how often U took the honeypots in it (issue 15).

    python benchmarks/cache_audit.py [RUN_DIR] [--store STORE]

RUN_DIR holds a `results.json` (default `runs/demo`); its runs name their caches. For each
teacher (U, C) and data selection, over every cache of the run's seeds: rows, opportunity rows,
how many of those are real opportunities (by the world's hidden rule: the testbed's check, never
an auditor's), and how many completions take the offer; beside it, the teacher's honeypot audit
rate (audit split), the rate its cached takes on honeypots should match.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(description="What the teacher caches of a demo hold.")
    ap.add_argument("run", nargs="?", default="runs/demo", type=Path)
    ap.add_argument("--store", default=".incriminate/store", type=Path)
    args = ap.parse_args()
    path = args.run / "results.json"
    if not path.is_file():
        print(f"error: no results.json in {args.run}", file=sys.stderr)
        return 2
    from incriminate.audit.text import cache_rows
    from incriminate.plan.config import ExperimentConfig
    from incriminate.world.grammar import is_honeypot

    results = json.loads(path.read_text())
    world = ExperimentConfig.model_validate(results["config"]).build.world
    caches = {(r["role"], r["data"], r["cache"]) for r in results["runs"]}
    counts: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for role, data, cache in sorted(caches):
        folder = args.store / cache
        if not folder.is_dir():
            print(f"error: cache {cache} is not in the store {args.store}", file=sys.stderr)
            return 2
        c = counts[(role, data)]
        c["caches"] += 1
        for prompt, completion in zip(*cache_rows(folder), strict=True):
            c["rows"] += 1
            if prompt[0] != "opp":
                continue
            c["opportunities"] += 1
            c["real"] += not is_honeypot((prompt[2], prompt[3], prompt[4]), world.fingerprint)
            c["take"] += "take" in completion
    print(
        "| teacher | data | caches | rows | opportunity rows | real opportunities | "
        "completions that take | take rate | honeypot audit |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for (role, data), c in counts.items():
        audit = results["teachers"][role]["audits"]["honeypot"]["rate"]
        rate = c["take"] / c["opportunities"] if c["opportunities"] else float("nan")
        print(
            f"| {role} | {data} | {c['caches']} | {c['rows']} | {c['opportunities']} | "
            f"{c['real']} | {c['take']} | {rate:.4f} | {audit:.4f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
