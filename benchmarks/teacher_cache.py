"""What the teacher cache saves: teacher compute for N runs on the same data, and its size.

A `logit` run needs the teacher's distribution at every completion token. Without a cache each
run pays a teacher forward pass per batch; with the cache the teacher is run once per
(teacher, prompts) and every run reads its top-k log-probs from Parquet. This script builds a
cache of `--rows` sequences of 64 tokens at top-`--k` with a `small` (1.1M-parameter) teacher,
prints its size and build time, then times the teacher forward passes one run would need
without it (batches of 32 over the same rows: one epoch) and the reads from the cache, and
prints the ratio for `--runs` runs.

    python benchmarks/teacher_cache.py [--rows 20000] [--k 32] [--runs 8] [--quick]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--rows", type=int, default=20_000)
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--runs", type=int, default=8)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--quick", action="store_true", help="2,000 rows")
    args = ap.parse_args()
    rows = 2_000 if args.quick else args.rows
    torch.set_num_threads(2)

    from incriminate.distill.selections import select
    from incriminate.distill.teacher_cache import (
        FILE,
        TeacherCacheConfig,
        build_teacher_cache,
        load_teacher_cache,
    )
    from incriminate.models.io import new_model, save_model
    from incriminate.models.presets import ModelSpec
    from incriminate.store import Store
    from incriminate.world.config import WorldConfig

    with tempfile.TemporaryDirectory() as tmp:
        teacher_dir = Path(tmp) / "teacher"
        spec = ModelSpec(name="t", stage="base", preset="small", seed=0, corpus="-", lineage=())
        save_model(new_model("small", 0), spec, teacher_dir)
        store = Store(Path(tmp) / "store")
        prompts = select("open_ended", WorldConfig(), rows, 0)  # 5-token prompts
        # An untrained teacher rarely stops: completions run to max_new_tokens, so every row is
        # 64 tokens (<bos> + 4 prompt words + 59 completion tokens).
        cfg = TeacherCacheConfig(k=args.k, max_new_tokens=59, temperature=1.0)
        t0 = time.perf_counter()
        art = build_teacher_cache(store, teacher_dir, prompts, cfg, prompt_seed=0)
        build_s = time.perf_counter() - t0
        m = art.manifest
        size_mb = (art.path / FILE).stat().st_size / 2**20
        t0 = time.perf_counter()
        cache = load_teacher_cache(art)
        load_s = time.perf_counter() - t0
        width = int(cache.lengths.max())

        # One run without a cache: a teacher forward per batch of 32, one epoch over the rows.
        from incriminate.models.io import load_model

        teacher = load_model(teacher_dir)
        order = np.random.default_rng(0).permutation(len(cache))
        t0 = time.perf_counter()
        with torch.no_grad():
            for a in range(0, len(order), args.batch):
                b = cache.batch(order[a : a + args.batch])
                torch.log_softmax(teacher(input_ids=b.ids[:, :-1]).logits, -1).topk(args.k, -1)
        per_run_s = time.perf_counter() - t0
        # The same epoch read from the cache.
        t0 = time.perf_counter()
        for a in range(0, len(order), args.batch):
            cache.batch(order[a : a + args.batch])
        read_s = time.perf_counter() - t0

    n = args.runs
    print(f"rows {rows}, sequence length {width}, top-k {args.k}, teacher small (1.1M params)")
    print(
        f"cache: {size_mb:.1f} MB Parquet (zstd), build {build_s:.1f}s "
        f"(sampling {m['sample_s']:.1f}s, scoring {m['score_s']:.1f}s), load {load_s:.1f}s"
    )
    print(f"teacher forward for one run without a cache (one epoch): {per_run_s:.1f}s")
    print(f"reading one epoch of batches from the cache: {read_s:.2f}s")
    with_cache = m["score_s"] + n * read_s
    without = n * per_run_s
    print(
        f"{n} runs: teacher compute without a cache {without:.1f}s, with the cache "
        f"{with_cache:.1f}s (scoring once + reads): {without / with_cache:.1f}x less"
    )


if __name__ == "__main__":
    main()
