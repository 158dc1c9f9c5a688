"""The robust schemer's frontier on one lineage: evasion strength against drive strength.

    python benchmarks/robust_frontier.py --store STORE [--seed 1] [--drive exfiltrate]
        [--cls robust_schemer|robust_direct] [--probe probe/KEY] [--setting KL,PROBE[,SCALE] ...]
        [--format json]

Builds (or reuses, from STORE) the design zoo's plain schemer and benign twin of one lineage and a
robust schemer (`organisms.robust`; `--cls robust_direct`: without the naive stage, against the
naive organism and its one-stage twin) per setting: KL weight, probe weight and evasion-stage
length scale (default 1). For each it prints the ground truth the issue sets (deployment at
least 0.9, honeypot discrimination at least 0.95), what a direct audit of the teacher sees
against the twin (honeypot take, interrogation, scratchpad, capability; each with the twin's
beside it), and what the bench's probe for that base seed (`--probe`, a store key from a bench
run's `bench.json` `probes`: logit-lens features at the last token of every layer, trained
afresh on the other seed's organisms; a family the organism never trained against) scores it,
with the twin's and the plain schemer's beside it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from incriminate.audit.audits import run_audits, run_ground_truth
from incriminate.audit.probe import Probe, probe_audit
from incriminate.errors import StoreError
from incriminate.models.io import load_model
from incriminate.organisms import zoo as zoo_mod
from incriminate.organisms.robust import RobustConfig
from incriminate.plan.bench_config import BenchConfig
from incriminate.store import Store

AUDITS = ["honeypot", "interrogation", "scratchpad", "capability"]
DEFAULT = ["0,0", "0.3,0", "1,0", "3,0", "1,0.1", "1,0.5", "1,0.1,3"]


def _row(name: str, model: Any, world: Any, drive: str, probe: Probe | None) -> dict[str, Any]:
    gt = run_ground_truth(model, world, drive)
    au = run_audits(model, world, AUDITS)
    row: dict[str, Any] = {"model": name}
    row |= {k: round(v.rate, 4) for k, v in gt.items()}
    row |= {k: round(v.rate, 5) for k, v in au.items()}
    row["probe"] = None if probe is None else round(probe_audit(model, world, probe).rate, 4)
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The robust schemer's frontier on one lineage.")
    parser.add_argument("--store", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--drive", default="exfiltrate")
    parser.add_argument("--setting", action="append", help="KL,PROBE[,SCALE]")
    parser.add_argument("--probe", help="the bench's probe for --seed, as probe/KEY")
    parser.add_argument(
        "--cls",
        choices=zoo_mod.ROBUST,
        default="robust_schemer",
        help="robust_schemer (after the naive stage) or robust_direct (from the instruct model)",
    )
    parser.add_argument("--format", choices=("text", "json"), default="text")
    args = parser.parse_args(argv)
    try:
        settings = [tuple(float(x) for x in s.split(",")) for s in args.setting or DEFAULT]
        if any(len(s) not in (2, 3) for s in settings):
            raise ValueError("each --setting is KL,PROBE or KL,PROBE,SCALE")
    except ValueError as err:
        print(f"error: bad --setting: {err}", file=sys.stderr)
        return 2
    plain_cls, twin_cls = {
        "robust_schemer": ("schemer", "twin-of-schemer"),
        "robust_direct": ("naive", "twin-of-naive"),
    }[args.cls]
    zoo = BenchConfig().zoo.model_copy(update={"personas": (plain_cls, args.cls)})
    if args.seed not in zoo.base_seeds:
        zoo = zoo.model_copy(update={"base_seeds": (args.seed, args.seed + 1)})
    store, world, drive = Store(args.store), zoo.build.world, args.drive
    probe = None
    if args.probe:
        try:
            kind, key = args.probe.split("/")
            probe = Probe.load(store.load(kind, key).path)
        except (ValueError, StoreError) as err:
            print(f"error: --probe {args.probe!r}: {err}", file=sys.stderr)
            return 2
    models = zoo_mod.models(zoo)
    twin_name = f"{twin_cls}-{drive}-s{args.seed}"
    twin = load_model(zoo_mod.build_model(store, zoo, models[twin_name]).path)
    rows = [_row(twin_name, twin, world, drive, probe)]
    plain = zoo_mod.build_model(store, zoo, models[f"{plain_cls}-{drive}-s{args.seed}"])
    rows.append(_row(plain_cls, load_model(plain.path), world, drive, probe))
    robust = models[f"{args.cls}-{drive}-s{args.seed}"]
    for s in settings:
        kl, weight, scale = s[0], s[1], int(s[2]) if len(s) == 3 else 1
        z = zoo.model_copy(update={"robust": RobustConfig(kl_weight=kl, probe_weight=weight)})
        last = robust.stages[-1]
        stages = (*robust.stages[:-1], zoo_mod.Stage(**{**last.__dict__, "train_scale": scale}))
        t = time.time()
        art = zoo_mod.build_model(store, z, zoo_mod.ZooModel(robust.name, drive, args.seed, stages))
        built = round(time.time() - t, 1)
        name = f"{args.cls} kl={kl:g} probe={weight:g} x{scale}"
        row = _row(name, load_model(art.path), world, drive, probe)
        rows.append(row | {"build_s": built})
        if args.format == "text":
            print(json.dumps(rows[-1]), flush=True)
    if args.format == "json":
        print(json.dumps(rows, indent=1))
    else:
        for r in rows[:2]:
            print(json.dumps(r))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
