"""Sweep executors side by side: 1 local worker vs 2, and Ray on a local instance vs the local pool.

Runs `incriminate sweep SWEEP` (default: the demo's grid, `configs/sweeps/demo.yaml`) through the
CLI from an empty store for each executor, as a user would, and prints the wall-clock times:

    local, 1 worker x 2 threads     the whole machine in one process
    local, 2 workers x 1 thread     the default: one process per core
    ray, local instance             `--backend ray` (Ray started by the sweep; 1 CPU per stage)

and the speed-up of 2 workers over 1 and the overhead ratio of Ray over the local pool. Every
run must give the same results (checked: each point's results.json without its timings).

    python benchmarks/sweep_scaling.py [--sweep FILE] [--quick] [--skip-ray]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).parents[1]


def _run(sweep: Path, root: Path, name: str, *extra: str) -> float:
    cmd = [sys.executable, "-m", "incriminate.cli", "sweep", str(sweep)]
    cmd += ["--out", str(root / name), "--store", str(root / f"store-{name}"), *extra]
    env = os.environ | {"HF_HUB_OFFLINE": "1", "RAY_AUTH_MODE": "disabled"}
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        sys.exit(f"{name} failed:\n{r.stderr[-3000:]}")
    return wall


def _results(out: Path) -> dict[str, dict]:
    got = {}
    for path in sorted(out.glob("points/*/results.json")):
        results = json.loads(path.read_text())
        results.pop("timing")
        got[path.parent.name] = results
    return got


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--sweep", type=Path, default=ROOT / "configs" / "sweeps" / "demo.yaml")
    ap.add_argument("--quick", action="store_true", help="configs/sweeps/quick.yaml (~1 min)")
    ap.add_argument("--skip-ray", action="store_true")
    args = ap.parse_args()
    sweep = ROOT / "configs" / "sweeps" / "quick.yaml" if args.quick else args.sweep
    cores = os.cpu_count() or 1
    runs = [
        ("local-1", f"local, 1 worker x {cores} threads", ("--workers", "1")),
        ("local-2", f"local, 2 workers x {max(1, cores // 2)} thread(s)", ("--workers", "2")),
    ]
    if not args.skip_ray:
        runs.append(("ray", "ray, local instance, 1 CPU per stage", ("--backend", "ray")))
    print(
        f"sweep {sweep.relative_to(ROOT) if sweep.is_relative_to(ROOT) else sweep}, "
        f"{cores} cores, every run from an empty store",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="sweep-scaling-") as tmp:
        root = Path(tmp)
        walls = {}
        for name, label, extra in runs:
            walls[name] = _run(sweep, root, name, *extra)
            print(f"  {label:<40} {walls[name]:8.1f} s", flush=True)
        reference = _results(root / "local-1")
        same = all(_results(root / name) == reference for name in walls)
        print(f"speed-up, 2 workers vs 1: {walls['local-1'] / walls['local-2']:.2f}x")
        if "ray" in walls:
            print(f"overhead, ray vs local (2 workers): {walls['ray'] / walls['local-2']:.2f}x")
        print(f"identical results across executors: {same}")
        if not same:
            sys.exit(1)


if __name__ == "__main__":
    main()
