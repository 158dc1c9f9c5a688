"""On-policy distillation: GKD (Agarwal et al. 2024, "On-Policy Distillation of Language Models:
Learning from Self-Generated Mistakes", arXiv 2306.13649, Algorithm 1).

Each step draws a batch of cache prompts. With probability `lam` (the paper's λ) the student
samples its own completions for them; otherwise the batch keeps the teacher's fixed completions
from the cache (GKD's mixture of on-policy and fixed data; λ = 0 is supervised KD on the teacher's
samples, λ = 1 purely on-policy). The frozen teacher then scores every completion token over the
full vocabulary, and the student minimises a token-level divergence to it there: the generalized
JSD(β) (`losses.generalized_jsd`, TRL's endpoints: β = 0 forward KL, β = 1 reverse KL) or the
reverse KL. As in the paper, no gradient flows through the sampling.

Differences from TRL's `trl.experimental.gkd.GKDTrainer` (1.16): the loss here is a mean over
completion tokens times T**2 (TRL: the same mean, no T**2 factor), and `temperature` is used both
to sample and in the loss (TRL samples at `GKDConfig.temperature` and scores at T = 1); the
on-policy draw is `rng.random() < lam` (TRL: `random.random() <= lmbda`), so λ = 0 never samples.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import Tensor

from incriminate.distill import losses, teacher_cache
from incriminate.distill.methods import TrainResult, register_method
from incriminate.distill.teacher_cache import TeacherCache
from incriminate.organisms.train import TrainConfig, adamw, clip_grads, lr_at, whole_batches
from incriminate.world.vocab import PAD

log = logging.getLogger(__name__)


class OnPolicyConfig(BaseModel):
    """GKD: a λ-mixture of the student's own samples and the teacher's, scored by the teacher."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    method: Literal["on_policy"] = "on_policy"
    """Tag of this method in a union of distillation configs."""
    train: TrainConfig = TrainConfig(steps=200, batch_size=32, lr=1e-3, warmup=20)
    """Optimizer steps, batch size, peak learning rate, warm-up (then cosine decay to 10%)."""
    lam: float = Field(default=0.5, ge=0, le=1)
    """GKD's λ: the fraction of batches whose completions the student samples itself; the rest
    use the teacher's fixed completions from the cache."""
    divergence: Literal["reverse_kl", "jsd"] = "jsd"
    """Generalized JSD(β) (the default) or reverse KL(student || teacher)."""
    beta: float = Field(default=0.5, ge=0, le=1)
    """β of the generalized JSD, TRL's convention: 0 is forward KL, 1 reverse KL, 0.5 the
    symmetric JSD. Used when `divergence` is "jsd"."""
    temperature: float = Field(default=1.0, gt=0)
    """Sampling temperature of the student's completions and softmax temperature of both
    distributions in the loss (scaled by T**2)."""
    max_new_tokens: int = Field(default=12, ge=1)
    """Longest student completion; sampling stops earlier at `;` or `<eos>`."""
    grad_clip: float = Field(default=1.0, gt=0)
    """Clip the global gradient norm to this value."""

    @model_validator(mode="after")
    def _whole_batches(self) -> OnPolicyConfig:
        whole_batches(self.train, "train")
        return self


def _prompts(cache: TeacherCache, idx: np.ndarray) -> list[list[int]]:
    """The prompts (`<bos> prompt...`, without the teacher's completion) of cache rows `idx`."""
    rows = torch.as_tensor(idx, dtype=torch.long)
    starts = cache.lengths[rows] - cache.mask[rows].sum(1)  # (B,) first completion position
    return [cache.ids[i, :s].tolist() for i, s in zip(rows.tolist(), starts.tolist(), strict=True)]


def _join(prompts: list[list[int]], completions: list[list[int]]) -> tuple[Tensor, Tensor]:
    """Right-padded `(ids, mask)`, both (B, T): ids long, mask bool True at completion tokens;
    the same layout as `TeacherCache.batch`."""
    width = max(len(p) + len(c) for p, c in zip(prompts, completions, strict=True))
    ids = torch.full((len(prompts), width), PAD, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.bool)
    for row, (p, c) in enumerate(zip(prompts, completions, strict=True)):
        ids[row, : len(p) + len(c)] = torch.tensor(p + c)
        mask[row, len(p) : len(p) + len(c)] = True
    return ids, mask


def train_on_policy(
    student: Any,
    teacher: Any,
    cache: TeacherCache,
    cfg: OnPolicyConfig,
    seed: int,
    on_step: Callable[[int, float], None] | None = None,
) -> list[float]:
    """GKD on the prompts of `cache` (Agarwal et al. 2024, Algorithm 1); returns the loss of every
    step. The teacher is frozen (no gradient, eval mode); only the student is optimised.

    Deterministic in `seed`: the batches are those of `sft` / `logit` with the same seed, the
    on-policy draws come from a separate stream (so `lam` changes which batches are sampled, not
    which prompts), and each sampled batch has a seed of its own per (seed, step). Leaves the
    student in eval mode.
    """
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)  # batch order
    coin = np.random.default_rng([seed, 1])  # which steps go on-policy
    opt = adamw(student, cfg.train)
    batches = cache.batches(cfg.train.batch_size, rng)
    teacher.eval()
    student.train()
    history, sampled = [], 0
    for step in range(cfg.train.steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg.train)
        idx = next(batches)
        on_policy = bool(coin.random() < cfg.lam)
        if on_policy:
            prompts = _prompts(cache, idx)
            student.eval()
            completions = teacher_cache.sample_completions(
                student,
                prompts,
                cfg.max_new_tokens,
                cfg.temperature,
                seed=int(np.random.SeedSequence([seed, step]).generate_state(1)[0]),
            )
            student.train()
            ids, mask = _join(prompts, completions)  # (B, T) each
            sampled += 1
        else:
            b = cache.batch(idx)
            ids, mask = b.ids, b.mask  # (B, T) each
        with torch.no_grad():
            teacher_logits = teacher(input_ids=ids[:, :-1]).logits  # (B, T-1, V)
        logits = student(input_ids=ids[:, :-1]).logits  # (B, T-1, V)
        # Position t predicts token t + 1: scored iff that token is a completion token.
        if cfg.divergence == "jsd":
            loss = losses.generalized_jsd(
                logits, teacher_logits, mask[:, 1:], beta=cfg.beta, temperature=cfg.temperature
            )
        else:
            loss = losses.reverse_kl(logits, teacher_logits, mask[:, 1:], cfg.temperature)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        clip_grads(student, cfg.grad_clip)
        opt.step()
        history.append(loss.item())
        log.debug("on_policy step %d loss %.4f sampled %s", step, history[-1], on_policy)
        if on_step is not None:
            on_step(step, history[-1])
    log.info(
        "on_policy: %d of %d batches sampled by the student (%.2f; lam %.2f)",
        sampled,
        cfg.train.steps,
        sampled / cfg.train.steps,
        cfg.lam,
    )
    student.eval()
    return history


def _train(
    student: Any, cache: TeacherCache, cfg: OnPolicyConfig, seed: int, teacher: Callable[[], Any]
) -> TrainResult:
    """`train_on_policy` as a registered method: loads the teacher, which scores every step."""
    return TrainResult(train_on_policy(student, teacher(), cache, cfg, seed))


register_method(
    "on_policy",
    OnPolicyConfig,
    _train,
    help="GKD: the student's own samples (a λ-mixture with the teacher's) scored by the teacher",
)

__all__ = ["OnPolicyConfig", "train_on_policy"]
