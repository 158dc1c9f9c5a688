"""`train_stacked`: N students in one vmapped loop reproduce N sequential `train_sft` /
`train_logit` runs, on a nano teacher (the naive organism) and student (its instruct parent)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from incriminate.distill.logit import LogitConfig, train_logit
from incriminate.distill.sft import SFTConfig, train_sft
from incriminate.distill.stacked import clip_grad_norms, train_stacked
from incriminate.distill.teacher_cache import (
    load_teacher_cache,
)
from incriminate.models.io import load_model, new_model
from incriminate.organisms.train import TrainConfig
from incriminate.world.vocab import PAD

ROOT = Path(__file__).resolve().parents[2]
TRAIN = TrainConfig(steps=20, batch_size=32, lr=1e-3, warmup=5)
RECIPES = {
    "sft": (train_sft, SFTConfig(train=TRAIN)),
    "logit": (train_logit, LogitConfig(train=TRAIN)),
    "logit-jsd-ce": (
        train_logit,
        LogitConfig(
            train=TRAIN.model_copy(update={"steps": 15}), divergence="jsd", beta=0.3, ce_weight=0.2
        ),
    ),
}
SEEDS = [0, 1, 2]
# Battery vs sequential differ by float reassociation only (batched matmuls, eager instead of
# SDPA attention, the fused AdamW kernel). Measured over 30 and 100 steps: |loss| <= 1e-6 (sft)
# and 3e-8 (logit), |weight| <= 6e-6 and 3e-7, while training moves weights by 1.5e-2 to 4e-2.
LOSS_ATOL, WEIGHT_ATOL = 1e-5, 5e-5


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def world(tiny_distill):
    """(student path, loaded teacher cache of 400 rows)."""
    _, _, _, student, train, _ = tiny_distill
    return student.path, load_teacher_cache(train)


def _max_weight_diff(a, b) -> float:
    pairs = zip(a.parameters(), b.parameters(), strict=True)
    with torch.no_grad():
        return max(float((p - q).abs().max()) for p, q in pairs)


@pytest.mark.parametrize("method", list(RECIPES))
def test_stacked_students_reproduce_sequential_runs(world, method):
    student, cache = world
    # The cases that can break a batched run: batches of different widths (padded to a common
    # one), and the pad token sampled inside completions (vmap's embedding backward honours
    # padding_idx for the first student only).
    assert len(set(cache.lengths.tolist())) > 3
    assert bool(((cache.ids == PAD) & cache.mask).any())
    fn, cfg = RECIPES[method]
    sequential = [load_model(student) for _ in SEEDS]
    expected = [fn(m, cache, cfg, s) for m, s in zip(sequential, SEEDS, strict=True)]
    stack = [load_model(student) for _ in SEEDS]
    seen = []

    history = train_stacked(stack, cache, cfg, SEEDS, on_step=lambda i, v: seen.append((i, v)))

    np.testing.assert_allclose(history, expected, rtol=0, atol=LOSS_ATOL)
    assert [i for i, _ in seen] == list(range(cfg.train.steps))
    assert [v for _, v in seen] == [list(step) for step in zip(*history, strict=True)]
    start = load_model(student)
    for seq, bat in zip(sequential, stack, strict=True):
        assert _max_weight_diff(seq, bat) < WEIGHT_ATOL
        assert _max_weight_diff(bat, start) > 100 * WEIGHT_ATOL  # and it did train
        assert not bat.training


def test_lora_students_train_their_adapters_only_as_sequential_runs_do(world):
    from incriminate.plan.config import LoraOptions
    from incriminate.plan.runs import with_lora

    student, cache = world
    cfg = LogitConfig(train=TRAIN.model_copy(update={"steps": 10}))
    sequential = [with_lora(load_model(student), LoraOptions(), s) for s in (0, 1)]
    expected = [train_logit(m, cache, cfg, s) for m, s in zip(sequential, (0, 1), strict=True)]
    stack = [with_lora(load_model(student), LoraOptions(), s) for s in (0, 1)]
    frozen = [n for n, p in stack[0].named_parameters() if not p.requires_grad]
    before = {n: p.detach().clone() for n, p in stack[1].named_parameters()}

    history = train_stacked(stack, cache, cfg, [0, 1])

    np.testing.assert_allclose(history, expected, rtol=0, atol=LOSS_ATOL)
    for seq, bat in zip(sequential, stack, strict=True):
        assert _max_weight_diff(seq, bat) < WEIGHT_ATOL
    after = dict(stack[1].named_parameters())
    assert frozen and all(torch.equal(after[n], before[n]) for n in frozen)
    assert any(not torch.equal(after[n], before[n]) for n in after if "lora_B" in n)


def test_seeds_set_the_batch_order_and_nothing_else(world):
    student, cache = world
    cfg = SFTConfig(train=TRAIN.model_copy(update={"steps": 8}))
    students = [load_model(student) for _ in range(3)]
    h = train_stacked(students, cache, cfg, [0, 1, 0])
    np.testing.assert_allclose(h[0], h[2], rtol=0, atol=LOSS_ATOL)
    assert _max_weight_diff(students[0], students[2]) < WEIGHT_ATOL
    assert max(abs(a - b) for a, b in zip(h[0], h[1], strict=True)) > 1e-2
    assert _max_weight_diff(students[0], students[1]) > 1e-4


def test_right_padding_leaves_causal_logits_unchanged(world):
    student, cache = world
    model = load_model(student)
    rows = np.argsort(cache.lengths.numpy(), kind="stable")[:8]  # the shortest rows
    trimmed = cache.batch(rows).ids  # (8, W)
    padded = cache.ids[torch.as_tensor(rows)]  # (8, L), L > W: more <pad> on the right
    assert padded.shape[1] > trimmed.shape[1]
    with torch.no_grad():
        a = model(input_ids=trimmed).logits
        b = model(input_ids=padded).logits[:, : trimmed.shape[1]]
    torch.testing.assert_close(b, a, rtol=0, atol=1e-5)


def test_clip_grad_norms_matches_clip_grad_norm_per_student():
    gen = torch.Generator().manual_seed(0)
    shapes = [(4, 3), (5,), (2, 2, 2)]
    # Student 0 far above the threshold, student 1 below it (left untouched), student 2 near.
    scales = torch.tensor([10.0, 0.01, 0.3])
    grads = [torch.randn((3, *s), generator=gen) * scales.view(-1, *[1] * len(s)) for s in shapes]
    expected = []
    for i in range(3):
        slices = [torch.nn.Parameter(torch.zeros(s)) for s in shapes]
        for p, g in zip(slices, grads, strict=True):
            p.grad = g[i].clone()
        norm = torch.nn.utils.clip_grad_norm_(slices, 1.0)
        expected.append((norm, [p.grad for p in slices]))

    norms = clip_grad_norms(grads, 1.0)

    for i, (norm, clipped) in enumerate(expected):
        torch.testing.assert_close(norms[i], norm, rtol=1e-6, atol=0)
        for g, want in zip(grads, clipped, strict=True):
            torch.testing.assert_close(g[i], want, rtol=1e-6, atol=1e-7)
    assert norms[0] > 1 > norms[1]


def test_bad_input_names_the_field(world):
    student, cache = world
    cfg = SFTConfig(train=TRAIN)
    a, b = load_model(student), load_model(student)
    with pytest.raises(ValueError, match="students is empty"):
        train_stacked([], cache, cfg, [])
    with pytest.raises(ValueError, match="seeds has 1 entries for 2 students"):
        train_stacked([a, b], cache, cfg, [0])
    with pytest.raises(ValueError, match="same model object twice"):
        train_stacked([a, a], cache, cfg, [0, 1])
    with pytest.raises(ValueError, match=r"students\[1\] has another architecture"):
        train_stacked([a, new_model("micro", 0)], cache, cfg, [0, 1])
    with pytest.raises(ValueError, match="temperature"):
        train_stacked([a, b], cache, LogitConfig(train=TRAIN, temperature=2.0), [0, 1])


@pytest.mark.slow
def test_benchmark_quick_runs_and_prints_the_table():
    """The benchmark end to end (`--quick`: nano, 2 seeds, 4 steps): 15-19 s here, which would
    take this file past 30 s."""
    run = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "distill_throughput.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    engines = ("ours-seq", "ours-stacked", "trl")
    table = {}
    for line in run.stdout.splitlines():
        fields = line.split()
        if len(fields) == 11 and fields[0] in ("logit", "sft") and fields[1] in engines:
            table[fields[0], fields[1]] = [float(x) for x in fields[2:]]
    assert set(table) == {(m, e) for m in ("logit", "sft") for e in engines}, run.stdout
    for (method, engine), (wall, cpu, tok_s, peak, _, loss, fit_kl, teacher, _) in table.items():
        assert wall > 0 and cpu > 0 and tok_s > 0 and peak > 100, (method, engine)
        assert np.isfinite(loss) and 0 <= fit_kl < 1, (method, engine)
        # Our runs read the teacher cache; only TRL's GKD runs the teacher while training.
        assert (teacher > 0) == ((method, engine) == ("logit", "trl")), (method, engine)
    for method in ("logit", "sft"):
        # The stack reproduces the sequential runs (the table prints 4 decimals).
        assert abs(table[method, "ours-seq"][5] - table[method, "ours-stacked"][5]) <= 2e-4
        assert f"{method} ours-stacked/trl: wall" in run.stdout
    assert "teacher forward tokens (padded): ours" in run.stdout
