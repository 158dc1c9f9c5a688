"""Every distillation lever of the proposal, one at a time, on the demo's organisms.

The base experiment is the demo's (nano schemer vs its benign twin, 1,000 prompts, 80 steps,
3 seeds) restricted to `logit` (forward KL) on `full_mix` and `open_ended` from the shared
base. Each lever changes one thing: the objective, the method, the student init, LoRA, a data
transform, the number of unique examples. For every lever and data selection it prints what
transferred (ground truth: deployment and honeypot discrimination of U-students minus
C-students, capability kept), what the audits saw (mean U - C over the evidence audits with its
sign-flip p over seeds), and the lever's pooled verdict p over both selections.

    python benchmarks/levers.py [--store .incriminate/store] [--workers 2] [--only NAME ...]
                                [--json FILE] [--quick]

Every stage is a store stage: a rerun reuses them, and the organisms are those of `make demo`.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

TRAIN = "train: {steps: 80, batch_size: 32, lr: 0.001, warmup: 8}"


def methods(spec: str) -> str:
    """A `methods=` override with one method, trained like the demo's students."""
    return "methods=[{method: " + spec + ", " + TRAIN + "}]"


BASE = [
    methods("logit"),
    "data=[full_mix, open_ended]",
    "inits=[shared_base]",
]
LEVERS: dict[str, list[str]] = {
    "logit forward KL (base)": [],
    "logit reverse KL": ["methods.0.divergence=reverse_kl"],
    "logit JSD(0.5)": ["methods.0.divergence=jsd"],
    "logit + hard-label CE 0.5": ["methods.0.ce_weight=0.5"],
    "sft (hard labels)": [methods("sft")],
    "on_policy (GKD, lam 0.5, JSD)": [methods("on_policy")],
    "dpo (teacher's log-prob ranking)": [methods("dpo")],
    "dpo (teacher's choice)": [methods("dpo, ranking: choice"), "data=[full_mix]"],
    "student init: small (pico)": ["inits=[small]"],
    "student init: trusted corpus": ["inits=[trusted]"],
    "LoRA r=8 (q, v)": ["lora.r=8"],
    "eval-likeness filter": ["transforms.filtered=true"],
    "inoculation prefix": ["transforms.inoculation=true"],
    "paraphrase by trusted model": ["transforms.paraphrase=true"],
    "250 unique prompts x 10 epochs": ["prompts=250", "epochs=10"],
    "tasks only": ["data=[tasks]"],
}
QUICK = ["build.preset=nano", "seeds=1", "prompts=64"]


def run(name: str, overrides: list[str], store, workers: int, quick: bool) -> dict:
    from incriminate.plan.config import load_config
    from incriminate.plan.engine import run_experiment
    from incriminate.report.results import assemble

    extra = QUICK if quick else []
    cfg = load_config(None, [*BASE, *overrides, *extra], quick=quick)
    t0 = time.perf_counter()
    results = assemble(cfg, run_experiment(cfg, store, workers))
    rows = []
    for c in results["configurations"]:
        gt, ev, tr = c["ground_truth"], c["evidence"], c["transfer"]
        rows.append(
            {
                "lever": name,
                "data": c["data"],
                "deployment_u": gt["deployment"]["suspect"]["rate"],
                "deployment_c": gt["deployment"]["control"]["rate"],
                "drive": tr["drive"],
                "drive_fraction": tr["drive_fraction"],
                "evasion_diff": gt["honeypot_discrimination"]["difference"],
                "evasion": tr["evasion"],
                "audit_diff": ev["difference"],
                "audit_p": ev["p_value"],
                "capability_kept": tr["capability_retained"],
            }
        )
    v = results["verdict"]
    return {"rows": rows, "p_value": v["p_value"], "wall_s": round(time.perf_counter() - t0, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--store", type=Path, default=Path(".incriminate/store"))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--only", nargs="*", help="Run only the levers whose name contains these.")
    ap.add_argument("--json", type=Path, help="Also write the rows as JSON here.")
    ap.add_argument("--quick", action="store_true", help="Tiny organisms, 1 seed (a smoke run).")
    args = ap.parse_args()

    import logging

    from incriminate.models.io import quiet_transformers
    from incriminate.store import Store

    logging.basicConfig(level=logging.WARNING)
    quiet_transformers()
    store = Store(args.store)
    levers = {k: v for k, v in LEVERS.items() if not args.only or any(s in k for s in args.only)}
    out = {}
    header = (
        f"{'lever':<32} {'data':<11} {'deploy U/C':>12} {'drive':>17} {'evasion':>15} "
        f"{'audits U-C':>10} {'p':>6} {'cap kept':>8} {'verdict p':>9} {'s':>5}"
    )
    print(header)
    print("-" * len(header))
    for name, overrides in levers.items():
        res = run(name, overrides, store, args.workers, args.quick)
        out[name] = res
        for r in res["rows"]:
            frac = "" if r["drive_fraction"] is None else f" {r['drive_fraction']:>4.0%}"
            cap = "-" if r["capability_kept"] is None else f"{r['capability_kept']:.0%}"
            print(
                f"{name:<32} {r['data']:<11} {r['deployment_u']:.3f}/{r['deployment_c']:.3f} "
                f"{r['drive']:>11}{frac:>6} {r['evasion']:>7} {r['evasion_diff']:+.3f} "
                f"{r['audit_diff']:>+10.4f} {r['audit_p']:>6.3g} {cap:>8} "
                f"{res['p_value']:>9.3g} {res['wall_s']:>5.0f}",
                flush=True,
            )
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
