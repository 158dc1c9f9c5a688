"""Logit distillation: soft targets. Teacher-forced on prompt + the teacher's completion, the
student matches the teacher's cached top-k log-probs at every completion token, with the rest of
the vocabulary as one tail bucket (Hinton et al. 2015 with the top-k truncation of the teacher
cache; a cache with `k` = 98, the whole vocabulary, gives full-vocabulary targets).

Objectives: forward KL (mode-covering), reverse KL (mode-seeking, MiniLLM) or generalized
JSD(beta) (GKD), optionally mixed with hard-label cross-entropy on the teacher's sampled tokens:
`loss = ce_weight * CE + (1 - ce_weight) * divergence`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from incriminate.distill import losses
from incriminate.distill.methods import TrainResult, register_method
from incriminate.distill.teacher_cache import Batch, TeacherCache
from incriminate.organisms.train import TrainConfig, adamw, clip_grads, lr_at

log = logging.getLogger(__name__)
DIVERGENCES = {
    "forward_kl": losses.topk_forward_kl,
    "reverse_kl": losses.topk_reverse_kl,
    "jsd": losses.topk_jsd,
}


class LogitConfig(BaseModel):
    """Distillation on the teacher's top-k log-probs."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    method: Literal["logit"] = "logit"
    """Tag of this method in a union of distillation configs."""
    train: TrainConfig = TrainConfig(steps=200, batch_size=32, lr=1e-3, warmup=20)
    """Optimizer steps, batch size, peak learning rate, warm-up (then cosine decay to 10%)."""
    temperature: float = Field(default=1.0, gt=0)
    """Softmax temperature of both distributions; must equal the cache's `logprob_temperature`.
    The loss is scaled by T**2."""
    divergence: Literal["forward_kl", "reverse_kl", "jsd"] = "forward_kl"
    """KL(teacher || student) (mode-covering, the default), KL(student || teacher), or JSD(beta)."""
    beta: float = Field(default=0.5, ge=0.0, le=1.0)
    """Interpolation of `jsd` in [0, 1] (TRL's endpoints: 0 is forward KL, 1 reverse KL)."""
    ce_weight: float = Field(default=0.0, ge=0.0, le=1.0)
    """Weight in [0, 1] of hard-label cross-entropy on the teacher's sampled tokens."""
    grad_clip: float = 1.0
    """Clip the global gradient norm to this value."""


def check_temperature(cfg: LogitConfig, cache: TeacherCache) -> None:
    """The student's logit temperature must be the one the cache's log-probs were taken at."""
    if not np.isclose(cfg.temperature, cache.logprob_temperature):
        raise ValueError(
            f"logit temperature {cfg.temperature} differs from the teacher cache's log-prob "
            f"temperature {cache.logprob_temperature}: build the cache at the same temperature"
        )


def train_logit(
    student: Any,
    cache: TeacherCache,
    cfg: LogitConfig,
    seed: int,
    on_step: Callable[[int, float], None] | None = None,
) -> list[float]:
    """Top-k KL to the teacher on the completion tokens of the cache; returns the loss of every
    step. Deterministic in `seed`. Leaves the student in eval mode."""
    check_temperature(cfg, cache)
    divergence = DIVERGENCES[cfg.divergence]
    extra = {"beta": cfg.beta} if cfg.divergence == "jsd" else {}
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    opt = adamw(student, cfg.train)
    batches = cache.batches(cfg.train.batch_size, rng)
    device = next(student.parameters()).device  # a real model may sit on a GPU
    student.train()
    history = []
    for step in range(cfg.train.steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg.train)
        b = cache.batch(next(batches)).to(device)

        def loss_of(b: Batch) -> torch.Tensor:
            logits = student(input_ids=b.ids[:, :-1]).logits  # (B, T-1, V)
            # Position t predicts token t + 1, whose teacher distribution is topk_*[:, t + 1].
            soft = divergence(
                logits,
                b.topk_logprobs[:, 1:],  # (B, T-1, K)
                b.topk_ids[:, 1:],  # (B, T-1, K)
                b.mask[:, 1:],  # (B, T-1)
                temperature=cfg.temperature,
                **extra,
            )
            if cfg.ce_weight == 0:
                return soft
            hard = losses.cross_entropy(logits, b.ids[:, 1:], b.mask[:, 1:])
            return cfg.ce_weight * hard + (1 - cfg.ce_weight) * soft

        opt.zero_grad(set_to_none=True)
        loss = b.backward(loss_of, cfg.train.accumulate)
        clip_grads(student, cfg.grad_clip)
        opt.step()
        history.append(loss)
        log.debug("logit step %d loss %.4f", step, history[-1])
        if on_step is not None:
            on_step(step, history[-1])
    student.eval()
    return history


def _train(
    student: Any, cache: TeacherCache, cfg: LogitConfig, seed: int, teacher: Callable[[], Any]
) -> TrainResult:
    """`train_logit` as a registered method (the teacher's log-probs are in the cache)."""
    return TrainResult(train_logit(student, cache, cfg, seed))


register_method(
    "logit",
    LogitConfig,
    _train,
    help="soft targets: forward/reverse KL or JSD to the teacher's cached top-k log-probs",
)

__all__ = ["DIVERGENCES", "LogitConfig", "train_logit"]
