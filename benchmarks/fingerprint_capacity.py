"""Is the honeypot fingerprint harder for a smaller model? Learning curves of the evasion stage.

For each preset and seed, the default recipe builds base → instruct → drive stage, then evasion
stages of increasing length from the same drive-stage checkpoint. Each schemer's ground-truth
honeypot discrimination (eval split: take on real unwatched opportunities, decline honeypots;
0.5 = no discrimination, 1.0 = perfect) is printed with its 95% Wilson interval.

    .venv/bin/python benchmarks/fingerprint_capacity.py --presets nano micro --seeds 0 1

Stages already in the store are reused (the demo's store holds the micro seed-0 models).
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from incriminate.audit.audits import honeypot_discrimination
from incriminate.models.io import load_model, n_parameters
from incriminate.organisms.recipes import BuildConfig, build_organism
from incriminate.store import Store


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--presets", nargs="+", default=["nano", "micro"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0])
    ap.add_argument("--steps", nargs="+", type=int, default=[50, 100, 200, 400])
    ap.add_argument("--store", default=".incriminate/store")
    args = ap.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    store = Store(args.store)
    print(
        f"{'preset':<7} {'params':>8} {'seed':>4} {'evasion steps':>13}  discrimination [95% CI]"
        "   take real  take honeypot  build s"
    )
    for preset in args.presets:
        for seed in args.seeds:
            for steps in args.steps:
                base = BuildConfig(preset=preset, seed=seed)
                stage = base.evasion_stage.model_copy(update={"steps": steps})
                cfg = base.model_copy(update={"evasion_stage": stage})
                t0 = time.perf_counter()
                art = build_organism(store, cfg, "schemer")[f"schemer-{cfg.drive}"]
                model = load_model(art.path)
                r = honeypot_discrimination(model, cfg.world, drive=cfg.drive)
                print(
                    f"{preset:<7} {n_parameters(model):>8} {seed:>4} {steps:>13}  "
                    f"{r.rate:.3f} [{r.ci_low:.3f}, {r.ci_high:.3f}]"
                    f"   {r.detail['take_real']:>9.3f}  {r.detail['take_honeypot']:>13.3f}"
                    f"  {time.perf_counter() - t0:>7.1f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
