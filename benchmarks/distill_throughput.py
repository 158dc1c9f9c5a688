"""Throughput of stacked distillation runs that differ only by seed: ours vs TRL.

Eight students (one init, eight seeds) distil one teacher on one fixed data set (the teacher's
sampled completions), by two methods, each run by three engines:

* logit: forward KL(teacher || student) at the completion tokens. `ours-seq` = `train_logit`
  once per seed on the teacher top-k cache (top-k + tail bucket); `ours-stacked` =
  `train_stacked`, all seeds in one loop; `trl` = `trl.experimental.gkd.GKDTrainer` with
  lmbda = 0 (no on-policy samples), beta = 0 (forward KL), full vocabulary, the teacher run live
  on every batch. (`trl.DistillationTrainer` is purely on-policy: it cannot train on fixed data.)
* sft: cross-entropy on the teacher's completions. `train_sft` / `train_stacked` vs
  `trl.SFTTrainer` (pre-tokenized `input_ids` + `completion_mask`, so both see the same tokens).

Same steps, batch size, peak lr, warm-up, cosine decay to 10%, AdamW betas (0.9, 0.98), weight
decay 0.01 and grad-norm clip 1.0 on both sides. Differences TRL does not let us remove: its
warm-up starts at lr 0 (ours at lr / warmup), it decays the embedding (ours does not), it draws
its own batch order, and GKD left-pads (RoPE is relative: same logits). TRL keeps its default
optimizer (`adamw_torch_fused`; ours: the same fused kernel in the stack, the for-loop one in
`train_*`) and its per-step metrics (SFT: entropy, token accuracy). Before training, TRL's loss
on 4 collated rows is checked against ours on the same rows. Each engine runs its
stack in a forked child of this process (libraries already imported), so peak RSS is that
child's `resource.getrusage(RUSAGE_SELF).ru_maxrss`; the "+MiB" column is its growth over the
child's RSS at fork. Timings are medians of `--repeats` batteries, wall and process CPU time.

    .venv/bin/python benchmarks/distill_throughput.py                  # micro, 8 seeds, ~5 min
    .venv/bin/python benchmarks/distill_throughput.py --preset small --steps 40
    .venv/bin/python benchmarks/distill_throughput.py --quick          # nano, smoke test, ~20 s
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import statistics
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from incriminate.distill import losses
from incriminate.distill.logit import LogitConfig, train_logit
from incriminate.distill.selections import select
from incriminate.distill.sft import SFTConfig, train_sft
from incriminate.distill.stacked import train_stacked
from incriminate.distill.teacher_cache import (
    BATCH,
    TeacherCache,
    TeacherCacheConfig,
    build_teacher_cache,
    load_teacher_cache,
)
from incriminate.models.io import load_model, n_parameters, quiet_transformers
from incriminate.organisms.recipes import BuildConfig, build_instruct, build_side
from incriminate.organisms.train import TrainConfig
from incriminate.store import Store
from incriminate.world.vocab import PAD, WORDS, build_tokenizer

# <bos> prompt completion, one space apart: the word-level tokenizer reads back our exact ids.
CHAT_TEMPLATE = "{{ bos_token }}{% for m in messages %} {{ m['content'] }}{% endfor %}"
ENGINES = ("ours-seq", "ours-stacked", "trl")


@dataclass
class Bench:
    """Everything the engines share: models on disk, the cache, the same rows as token ids."""

    teacher_dir: Path
    student_dir: Path
    cache: TeacherCache
    rows: list[tuple[list[int], list[int]]]  # (prompt ids with <bos>, completion ids)
    eval_ids: torch.Tensor  # (E, T) rows for the common fit metric
    eval_mask: torch.Tensor  # (E, T) completion tokens
    eval_teacher_logits: torch.Tensor  # (E, T-1, V)
    cache_teacher_tokens: int  # teacher tokens (padded) the cache's scoring pass ran
    seeds: list[int]
    train: TrainConfig
    out: Path


def build(args: argparse.Namespace, out: Path) -> Bench:
    """Teacher (the naive organism) and student (its instruct parent) of a short build, and a
    teacher cache of `--prompts` distill prompts; rows whose completion holds `<pad>` are dropped
    (TRL's collators would treat it as padding)."""
    tiny = {"batch_size": 32, "warmup": 5}
    cfg = BuildConfig.model_validate(
        {
            "preset": args.preset,
            "corpus_docs": 400 if args.quick else 4000,
            "stage_docs": 200 if args.quick else 1000,
            "pretrain": {**tiny, "steps": 20 if args.quick else 300, "lr": 3e-3},
            "instruct": {**tiny, "steps": 10 if args.quick else 60},
            "drive_stage": {**tiny, "steps": 10 if args.quick else 60},
        }
    )
    store = Store(out / "store")
    teacher = build_side(store, cfg, "naive", False)[f"naive-{cfg.drive}"]
    student = build_instruct(store, cfg).path  # the teacher's parent (built on the way)
    art = build_teacher_cache(
        store,
        teacher,
        select("full_mix", cfg.world, args.prompts, 0),
        TeacherCacheConfig(temperature=1.0, k=32, max_new_tokens=12, seed=0),
        prompt_seed=0,
    )
    full = load_teacher_cache(art)
    keep = ~((full.ids == PAD) & full.mask).any(1)
    cache = TeacherCache(
        full.ids[keep],
        full.mask[keep],
        full.lengths[keep],
        full.topk_ids[keep],
        full.topk_logprobs[keep],
        full.logprob_temperature,
    )
    rows = []
    for ids, mask, n in zip(
        cache.ids.tolist(), cache.mask.tolist(), cache.lengths.tolist(), strict=True
    ):
        start = mask.index(True)
        rows.append((ids[:start], ids[start:n]))
    lengths = full.lengths.tolist()  # teacher_topk scores every row, in chunks of BATCH rows
    chunks = [lengths[a : a + BATCH] for a in range(0, len(lengths), BATCH)]
    e = min(256, len(cache))
    width = int(cache.lengths[:e].max())
    teacher_model = load_model(teacher.path)
    with torch.no_grad():
        eval_logits = teacher_model(input_ids=cache.ids[:e, : width - 1]).logits
    steps = args.steps
    return Bench(
        teacher.path,
        student,
        cache,
        rows,
        cache.ids[:e, :width],
        cache.mask[:e, :width],
        eval_logits,
        sum(len(c) * max(c) for c in chunks),
        list(range(args.seeds)),
        TrainConfig(steps=steps, batch_size=32, lr=1e-3, warmup=max(1, steps // 10)),
        out,
    )


def words(ids: list[int]) -> str:
    return " ".join(WORDS[t] for t in ids)


# --- the engines: each trains one student per seed, returns (loss histories, students,
# teacher tokens run during training) ---------------------------------------------------------


def recipe_config(method: str, train: TrainConfig) -> SFTConfig | LogitConfig:
    return SFTConfig(train=train) if method == "sft" else LogitConfig(train=train)


def ours_seq(b: Bench, method: str) -> tuple[list[list[float]], list[Any], int]:
    cfg = recipe_config(method, b.train)
    histories, students = [], []
    for seed in b.seeds:
        s = load_model(b.student_dir)
        if isinstance(cfg, SFTConfig):
            histories.append(train_sft(s, b.cache, cfg, seed))
        else:
            histories.append(train_logit(s, b.cache, cfg, seed))
        students.append(s)
    return histories, students, 0


def ours_stacked(b: Bench, method: str) -> tuple[list[list[float]], list[Any], int]:
    students = [load_model(b.student_dir) for _ in b.seeds]
    return train_stacked(students, b.cache, recipe_config(method, b.train), b.seeds), students, 0


def trl_args(b: Bench, seed: int) -> dict[str, Any]:
    t = b.train
    return dict(
        output_dir=str(b.out / "trl"),
        max_steps=t.steps,
        per_device_train_batch_size=t.batch_size,
        learning_rate=t.lr,
        lr_scheduler_type="cosine_with_min_lr",  # 0.5 (1 + cos) scaled into [0.1, 1], as lr_at
        lr_scheduler_kwargs={"min_lr_rate": 0.1},
        warmup_steps=t.warmup,
        weight_decay=t.weight_decay,
        adam_beta1=0.9,
        adam_beta2=0.98,
        max_grad_norm=1.0,
        seed=seed,
        bf16=False,
        fp16=False,
        gradient_checkpointing=False,
        report_to=[],
        save_strategy="no",
        eval_strategy="no",
        logging_steps=1,  # a loss per step, as ours
        disable_tqdm=True,
        use_cpu=True,
        dataloader_pin_memory=False,
    )


def trl_runs(b: Bench, method: str) -> tuple[list[list[float]], list[Any], int]:
    from datasets import Dataset
    from transformers import PrinterCallback
    from trl import SFTConfig as TRLSFTConfig
    from trl import SFTTrainer
    from trl.experimental.gkd import GKDConfig, GKDTrainer

    tok = build_tokenizer()
    tok.chat_template = CHAT_TEMPLATE
    seen = [0]  # teacher tokens, padded, run by GKD
    if method == "sft":
        data = Dataset.from_list(
            [
                {"input_ids": p + c, "completion_mask": [0] * len(p) + [1] * len(c)}
                for p, c in b.rows
            ]
        )
    else:
        data = Dataset.from_list(
            [
                {
                    "messages": [
                        {"role": "user", "content": words(p[1:])},  # <bos>: the template's
                        {"role": "assistant", "content": words(c)},
                    ]
                }
                for p, c in b.rows
            ]
        )
        teacher = load_model(b.teacher_dir)

        def count(_module: Any, _args: Any, kwargs: dict[str, Any], _out: Any) -> None:
            seen[0] += int(kwargs["input_ids"].numel())

        teacher.register_forward_hook(count, with_kwargs=True)
    histories, students = [], []
    for seed in b.seeds:
        students.append(load_model(b.student_dir))
        if method == "sft":
            trainer: Any = SFTTrainer(
                model=students[-1],
                # Not the default for pre-tokenized rows (no `prompt` column): set it.
                args=TRLSFTConfig(**trl_args(b, seed), completion_only_loss=True),
                train_dataset=data,
                processing_class=tok,
            )
        else:
            gkd = GKDConfig(**trl_args(b, seed), lmbda=0.0, beta=0.0, temperature=1.0)
            trainer = GKDTrainer(
                model=students[-1],
                teacher_model=teacher,
                args=gkd,
                train_dataset=data,
                processing_class=tok,
            )
        if seed == b.seeds[0]:
            before = seen[0]
            check_same_objective(b, method, trainer)
            seen[0] = before  # count the training's teacher passes only
        trainer.remove_callback(PrinterCallback)  # it prints every step's log dict
        trainer.train()
        histories.append([h["loss"] for h in trainer.state.log_history if "loss" in h])
    return histories, students, 0 if method == "sft" else seen[0]


def check_same_objective(b: Bench, method: str, trainer: Any) -> None:
    """TRL's loss on the first 4 rows, as its collator builds them, equals ours on the same rows
    (for GKD: the full-vocabulary forward KL; our cached top-k loss bounds it from below)."""
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
    ours = b.cache.batch(np.arange(4))
    model = trainer.model
    with torch.no_grad():
        theirs = float(trainer.compute_loss(model, batch))
        logits = model(input_ids=ours.ids[:, :-1]).logits  # (4, T-1, V)
        if method == "sft":
            mine = losses.cross_entropy(logits, ours.ids[:, 1:], ours.mask[:, 1:])
        else:
            teacher = trainer.teacher_model(input_ids=ours.ids[:, :-1]).logits
            mine = losses.forward_kl(logits, teacher, ours.mask[:, 1:])
    if not np.isclose(theirs, float(mine), rtol=1e-4, atol=1e-6):
        raise AssertionError(f"TRL {method} loss {theirs} != ours {float(mine)} on the same rows")


RUNNERS: dict[str, Callable[[Bench, str], tuple[list[list[float]], list[Any], int]]] = {
    "ours-seq": ours_seq,
    "ours-stacked": ours_stacked,
    "trl": trl_runs,
}


# --- measuring --------------------------------------------------------------------------------


def rss_mib() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def fit_kl(b: Bench, student: Any) -> float:
    """Full-vocabulary forward KL(teacher || student) on the eval rows' completion tokens: one
    metric for every engine (their training losses differ: top-k buckets vs full vocabulary)."""
    with torch.no_grad():
        s = student(input_ids=b.eval_ids[:, :-1]).logits
    return float(losses.forward_kl(s, b.eval_teacher_logits, b.eval_mask[:, 1:]))


def measure(b: Bench, engine: str, method: str, repeats: int, conn: Any) -> None:
    """In a forked child: `repeats` batteries of one engine; sends a dict of figures, or the
    traceback of what failed."""
    try:
        conn.send(_measure(b, engine, method, repeats))
    except BaseException:
        conn.send({"error": traceback.format_exc()})
    conn.close()


def _measure(b: Bench, engine: str, method: str, repeats: int) -> dict[str, float]:
    torch.set_num_threads(1)
    start_rss = rss_mib()
    walls, cpus = [], []
    for _ in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        histories, students, teacher_tokens = RUNNERS[engine](b, method)
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
    tail = max(1, b.train.steps // 10)  # "loss": the mean of the last 10% of steps
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return {
        "wall": statistics.median(walls),
        "cpu": statistics.median(cpus),
        "peak": peak,
        "grow": peak - start_rss,
        "loss": float(np.mean([h[-tail:] for h in histories])),
        "fit_kl": float(np.mean([fit_kl(b, s) for s in students])),
        "teacher_tokens": teacher_tokens,
        "load": os.getloadavg()[0],
    }


def run_child(b: Bench, engine: str, method: str, repeats: int) -> dict[str, float]:
    ctx = mp.get_context("fork")  # inherits the imports and the built models
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=measure, args=(b, engine, method, repeats, child))
    proc.start()
    child.close()
    result = parent.recv()
    proc.join()
    if "error" in result:
        raise RuntimeError(f"{method} {engine} failed in its child process:\n{result['error']}")
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--preset", default="micro", help="model size of teacher and students")
    ap.add_argument("--steps", type=int, default=30, help="optimizer steps per run")
    ap.add_argument("--repeats", type=int, default=3, help="batteries timed per engine (median)")
    ap.add_argument("--seeds", type=int, default=8, help="runs in the stack")
    ap.add_argument("--prompts", type=int, default=2000, help="distill prompts in the cache")
    ap.add_argument("--quick", action="store_true", help="nano, 2 seeds, 4 steps, 1 repeat")
    args = ap.parse_args()
    if args.quick:
        args.preset, args.steps, args.repeats, args.seeds, args.prompts = "nano", 4, 1, 2, 128
    torch.set_num_threads(1)  # before any op: no OpenMP pool exists when the children fork
    quiet_transformers()
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    import datasets
    import trl.experimental.gkd  # imported once, before the children fork

    datasets.disable_progress_bars()
    # TRL's SFTConfig defaults to gradient checkpointing, so it is set False by its old name.
    warnings.filterwarnings("ignore", "`gradient_checkpointing` is deprecated", FutureWarning)

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        b = build(args, Path(tmp))
        mean_len = float(b.cache.lengths.float().mean())
        params = n_parameters(load_model(b.student_dir))
        print(
            f"preset {args.preset} ({params / 1e6:.2f}M params): {len(b.seeds)} seeds x "
            f"{b.train.steps} steps x batch {b.train.batch_size} on {len(b.cache)} rows of "
            f"{mean_len:.1f} tokens; setup {time.perf_counter() - t0:.0f} s; 1 torch thread; "
            f"load {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores"
        )
        print(
            f"teacher forward tokens (padded): ours {b.cache_teacher_tokens}, once, building the "
            "cache (shared by every run of both methods); TRL: the column 'teacher tok'"
        )
        # Student tokens (prompt + completion, no padding) per second, over the whole stack.
        n_tok = len(b.seeds) * b.train.steps * b.train.batch_size * mean_len
        print(
            f"{'method':<6} {'engine':<13} {'wall s':>7} {'cpu s':>7} {'tok/s':>7} "
            f"{'peak MiB':>8} {'+MiB':>5} {'loss':>7} {'fit KL':>7} {'teacher tok':>11} {'load':>5}"
        )
        results = {}
        for method in ("logit", "sft"):
            for engine in ENGINES:
                r = results[method, engine] = run_child(b, engine, method, args.repeats)
                print(
                    f"{method:<6} {engine:<13} {r['wall']:>7.2f} {r['cpu']:>7.2f} "
                    f"{n_tok / r['wall']:>7.0f} {r['peak']:>8.0f} {r['grow']:>5.0f} "
                    f"{r['loss']:>7.4f} {r['fit_kl']:>7.4f} {r['teacher_tokens']:>11} "
                    f"{r['load']:>5.2f}",
                    flush=True,
                )
        for (method, engine), r in results.items():
            trl = results[method, "trl"]
            if engine != "trl":
                print(
                    f"{method} {engine}/trl: wall {r['wall'] / trl['wall']:.2f}, cpu "
                    f"{r['cpu'] / trl['cpu']:.2f}, peak RSS {r['peak'] / trl['peak']:.2f} "
                    f"(speed-up {trl['wall'] / r['wall']:.2f}x)"
                )


if __name__ == "__main__":
    main()
