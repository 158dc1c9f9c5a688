"""The demo through two versions of the code, side by side in one run: stage compute per kind,
wall time, their ratios, and whether the two produced the same results and the same artifacts.

    python benchmarks/pipeline.py                         # the previous release vs HEAD, full demo
    python benchmarks/pipeline.py --quick                 # the --quick grid (about a minute)
    python benchmarks/pipeline.py --base REF --head REF --repeats 2 --out DIR [-- seeds=1 ...]
    python benchmarks/pipeline.py --report DIR            # the tables again, from a finished --out

Each side is the committed `src/` of its ref (`git archive`, so edits in the working tree cannot
leak in), run as `python -m incriminate.cli demo` in a subprocess of this venv with an empty
store of its own and the same `--workers`. Arguments after `--` go to both demos (a config file,
dotted overrides). Repeats alternate the order (base, head, head, base, ...), so a machine that
slows down during the run does not favour the side that went first.

* compute: the sum of the stages' own wall times (`STORE/nodes/*.json`), which does not depend
  on how many workers ran them; per stage kind and in all.
* wall: the demo process, start to exit (install excluded).
* same results: `results.json` equal as documents, its `timing` aside; else the first path where
  they part. Same artifacts: per stage kind, artifacts whose files (manifests aside) are
  bit-identical to the base's, by key.

The default base is the previous release: the last commit that landed before the speed work of
issue 20 (`PREVIOUS_RELEASE`). Both refs must run on the installed dependencies.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from spread import _stage_key, artifacts, machine, same_artifacts

ROOT = Path(__file__).resolve().parents[1]
PREVIOUS_RELEASE = "80f51ce1468b51923c6d31f8c0ac2fa46c55243b"  # stop 28, landed 2026-12-02
SIDES = ("base", "head")


def commit_of(ref: str) -> str:
    r = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"],
        capture_output=True,
        text=True,
    )
    if r.returncode != 0:
        raise SystemExit(f"error: {ref!r} is not a commit of {ROOT} (a shallow clone?)")
    return r.stdout.strip()


def snapshot(commit: str, dest: Path) -> None:
    """Unpack the commit's `src/` into `dest`."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", commit, "src"], capture_output=True, check=True
    ).stdout
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)


def run_side(side: str, src: Path, d: Path, workers: int, quick: bool, extra: list[str]) -> dict:
    """One demo of one side into `d` (empty store); returns and writes its `run.json`."""
    d.mkdir(parents=True)
    env = os.environ | {"PYTHONPATH": str(src), "HF_HUB_OFFLINE": "1"}
    env |= {"TRANSFORMERS_OFFLINE": "1"}
    args = [sys.executable, "-m", "incriminate.cli", "demo", *(["--quick"] if quick else [])]
    args += [*extra, "--store", str(d / "store"), "--out", str(d / "out")]
    args += ["--workers", str(workers)]
    t0 = time.perf_counter()
    r = subprocess.run(args, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    (d / "log.txt").write_text(r.stdout + r.stderr)
    if r.returncode != 0:
        raise SystemExit(f"error: the {side} demo failed (exit {r.returncode}): see {d}/log.txt")
    run = {"side": side, "wall_s": round(wall, 1)}
    (d / "run.json").write_text(json.dumps(run))
    return run


def compute(store: Path) -> dict[str, dict[str, float]]:
    """Per stage kind: stages and the sum of their wall times (s), from the store's node
    records."""
    out: dict[str, dict[str, float]] = defaultdict(lambda: {"stages": 0, "compute_s": 0.0})
    for f in sorted((store / "nodes").glob("*.json")):
        node = json.loads(f.read_text())
        out[node["kind"]]["stages"] += 1
        out[node["kind"]]["compute_s"] += node["wall_s"]
    return {k: out[k] for k in sorted(out, key=_stage_key)}


def first_difference(a: Any, b: Any, path: str = "") -> str | None:
    """The first JSON path where two documents differ, None if they are equal."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(a.keys() | b.keys()):
            if k not in a or k not in b:
                return f"{path}.{k} (only in {'head' if k in b else 'base'})"
            d = first_difference(a[k], b[k], f"{path}.{k}")
            if d is not None:
                return d
        return None
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return f"{path} (length {len(a)} vs {len(b)})"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            d = first_difference(x, y, f"{path}[{i}]")
            if d is not None:
                return d
        return None
    return None if a == b and type(a) is type(b) else f"{path} ({a!r} vs {b!r})"


def run_dirs(out: Path) -> dict[str, list[Path]]:
    """The finished runs under `out`, by side: `out/<side>-<i>/`."""
    dirs: dict[str, list[Path]] = {s: [] for s in SIDES}
    for d in sorted(out.glob("*-*")):
        side = d.name.split("-")[0]
        if side in dirs and (d / "run.json").is_file():
            dirs[side].append(d)
    return dirs


def compare(out: Path) -> dict[str, Any]:
    """The document `--format json` prints: per side its runs' walls and compute by kind (the
    median over repeats), the ratios, and how the head's first run compares with the base's."""
    dirs = run_dirs(out)
    if not all(dirs.values()):
        raise SystemExit(f"error: {out} has no finished run of each side (base-*/, head-*/)")
    sides: dict[str, Any] = {}
    for side, ds in dirs.items():
        walls = [json.loads((d / "run.json").read_text())["wall_s"] for d in ds]
        kinds = [compute(d / "store") for d in ds]
        by_kind = {
            k: {
                "stages": kinds[0][k]["stages"],
                "compute_s": round(statistics.median(c[k]["compute_s"] for c in kinds), 1),
            }
            for k in kinds[0]
        }
        totals = [sum(c["compute_s"] for c in ck.values()) for ck in kinds]
        sides[side] = {
            "runs": len(ds),
            "wall_s": walls,
            "wall_median_s": round(statistics.median(walls), 1),
            "compute_s": [round(t, 1) for t in totals],
            "compute_median_s": round(statistics.median(totals), 1),
            "kinds": by_kind,
        }
    base, head = sides["base"], sides["head"]
    results = {}
    for side in SIDES:
        doc = json.loads((dirs[side][0] / "out" / "results.json").read_text())
        doc.pop("timing", None)
        results[side] = doc
    stages = same_artifacts(
        artifacts(dirs["head"][0] / "store"), artifacts(dirs["base"][0] / "store")
    )
    return {
        "sides": sides,
        "compute_ratio": round(base["compute_median_s"] / head["compute_median_s"], 3),
        "wall_ratio": round(base["wall_median_s"] / head["wall_median_s"], 3),
        "kind_ratio": {
            k: round(v["compute_s"] / head["kinds"][k]["compute_s"], 3)
            for k, v in base["kinds"].items()
            if head["kinds"].get(k, {}).get("compute_s")
        },
        "results_differ_at": first_difference(results["base"], results["head"]),
        "verdicts": [results[s]["verdict"]["decision"] for s in SIDES],
        "artifacts": stages,
    }


def markdown(doc: dict[str, Any]) -> str:
    base, head = doc["sides"]["base"], doc["sides"]["head"]
    lines = ["| stage kind | stages | base compute s | head compute s | base / head |"]
    lines.append("|---|---|---|---|---|")
    for k, v in base["kinds"].items():
        h = head["kinds"].get(k, {"compute_s": 0.0})
        ratio = doc["kind_ratio"].get(k)
        cells = [k, str(v["stages"]), f"{v['compute_s']:.1f}", f"{h['compute_s']:.1f}"]
        lines.append("| " + " | ".join([*cells, f"{ratio:.2f}" if ratio else "-"]) + " |")
    lines.append(
        f"| **all stages** | | {base['compute_median_s']:.1f} | {head['compute_median_s']:.1f} "
        f"| **{doc['compute_ratio']:.2f}** |"
    )
    lines.append(
        f"| **wall** (demo process) | | {base['wall_median_s']:.1f} | {head['wall_median_s']:.1f} "
        f"| **{doc['wall_ratio']:.2f}** |"
    )
    n = base["runs"]
    lines += ["", f"Medians over {n} run{'s' * (n > 1)} a side; every run's wall and compute:"]
    for side in SIDES:
        s = doc["sides"][side]
        lines.append(f"* {side}: wall {s['wall_s']} s, compute {s['compute_s']} s")
    where = doc["results_differ_at"]
    lines.append("")
    lines.append(
        "results.json (timing aside): "
        + ("identical" if where is None else f"differs, first at {where}")
        + f"; verdicts {doc['verdicts'][0]} (base), {doc['verdicts'][1]} (head)"
    )
    same = ", ".join(f"{k} {a}/{t}" for k, (a, t) in doc["artifacts"].items())
    lines.append(f"artifacts bit-identical to the base's, by kind: {same}")
    return "\n".join(lines)


def header(doc: dict[str, Any]) -> str:
    m = doc["machine"]
    return (
        f"{doc['demo']} ({doc['workers']} workers): base {doc['base'][:7]}, head "
        f"{doc['head'][:7]}; {m['date']}, {m['nproc']} CPUs ({m['cpu']}), torch {m['torch']}, "
        f"{doc['wall_s']:.0f} s in all\n"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description="The demo through two refs, side by side.")
    ap.add_argument("--base", default=PREVIOUS_RELEASE, help="default: the previous release")
    ap.add_argument("--head", default="HEAD")
    ap.add_argument("--quick", action="store_true", help="the --quick grid")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=1, help="runs a side (order alternates)")
    ap.add_argument("--out", type=Path, help="keep every run here (default: a temporary dir)")
    ap.add_argument("--format", choices=("markdown", "json"), default="markdown")
    ap.add_argument("--report", type=Path, help="only the tables, from a finished --out DIR")
    ap.add_argument("demo_args", nargs="*", help="after --: arguments for both demos")
    args = ap.parse_args()
    if args.report is not None:
        if not (args.report / "pipeline.json").is_file():
            print(f"error: no pipeline.json in {args.report}", file=sys.stderr)
            return 2
        doc = json.loads((args.report / "pipeline.json").read_text())
        doc |= compare(args.report)
    else:
        if args.repeats < 1 or args.workers < 1:
            print("error: --repeats and --workers must be at least 1", file=sys.stderr)
            return 2
        if args.out is not None and args.out.exists() and any(args.out.iterdir()):
            print(f"error: --out {args.out} is not empty", file=sys.stderr)
            return 2
        commits = {"base": commit_of(args.base), "head": commit_of(args.head)}
        with tempfile.TemporaryDirectory(prefix="pipeline-") as tmp:
            out = args.out or Path(tmp)
            for side, commit in commits.items():
                snapshot(commit, out / f"src-{side}")
            demo = "incriminate demo" + (" --quick" if args.quick else "")
            doc = {"machine": machine(), "demo": " ".join([demo, *args.demo_args])}
            doc |= {"workers": args.workers, **commits}
            t0 = time.perf_counter()
            for i in range(args.repeats):
                for side in SIDES if i % 2 == 0 else SIDES[::-1]:
                    print(f"{side} run {i + 1} ...", file=sys.stderr, flush=True)
                    src = out / f"src-{side}" / "src"
                    d = out / f"{side}-{i}"
                    run_side(side, src, d, args.workers, args.quick, args.demo_args)
            doc["wall_s"] = round(time.perf_counter() - t0, 1)
            (out / "pipeline.json").write_text(json.dumps(doc, indent=1))
            doc |= compare(out)
    if args.format == "json":
        print(json.dumps(doc, indent=1))
    else:
        print(header(doc))
        print(markdown(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
