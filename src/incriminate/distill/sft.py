"""SFT distillation: hard labels. Train the student with cross-entropy on the teacher's sampled
completions (the teacher cache); prompt tokens are context only.

Sampling temperature is a property of the cache (`TeacherCacheConfig.temperature`); the top-k
log-probs in the cache are not used here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict

from incriminate.distill import losses
from incriminate.distill.methods import TrainResult, register_method
from incriminate.distill.teacher_cache import Batch, TeacherCache
from incriminate.organisms.train import TrainConfig, adamw, clip_grads, lr_at

log = logging.getLogger(__name__)


class SFTConfig(BaseModel):
    """Supervised fine-tuning on the teacher's samples."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    method: Literal["sft"] = "sft"
    """Tag of this method in a union of distillation configs."""
    train: TrainConfig = TrainConfig(steps=200, batch_size=32, lr=1e-3, warmup=20)
    """Optimizer steps, batch size, peak learning rate, warm-up (then cosine decay to 10%)."""
    grad_clip: float = 1.0
    """Clip the global gradient norm to this value."""


def train_sft(
    student: Any,
    cache: TeacherCache,
    cfg: SFTConfig,
    seed: int,
    on_step: Callable[[int, float], None] | None = None,
) -> list[float]:
    """Cross-entropy on the completion tokens of the cache; returns the loss of every step.

    Deterministic in `seed` (batch order; the student has no dropout). Leaves the student in
    eval mode.
    """
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
            # Position t predicts token t + 1: a target iff that token is the teacher's
            # completion.
            return losses.cross_entropy(logits, b.ids[:, 1:], b.mask[:, 1:])

        opt.zero_grad(set_to_none=True)
        loss = b.backward(loss_of, cfg.train.accumulate)
        clip_grads(student, cfg.grad_clip)
        opt.step()
        history.append(loss)
        log.debug("sft step %d loss %.4f", step, history[-1])
        if on_step is not None:
            on_step(step, history[-1])
    student.eval()
    return history


def _train(
    student: Any, cache: TeacherCache, cfg: SFTConfig, seed: int, teacher: Callable[[], Any]
) -> TrainResult:
    """`train_sft` as a registered method (the teacher's samples are in the cache)."""
    return TrainResult(train_sft(student, cache, cfg, seed))


register_method(
    "sft", SFTConfig, _train, help="hard labels: cross-entropy on the teacher's samples"
)

__all__ = ["SFTConfig", "train_sft"]
