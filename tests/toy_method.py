"""A distillation method from outside the package, the one docs/extending.md walks through: a
config class, a train function, and their registration. Importing this module is all it takes
for a config to name `method: toy` (tests/test_extending.py runs it through the pipeline).

`toy`: plain SGD (with momentum) on cross-entropy with the teacher's sampled completions — SFT
without warm-up, decay or clipping.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from incriminate.distill.losses import cross_entropy
from incriminate.distill.methods import TrainResult, register_method
from incriminate.distill.teacher_cache import TeacherCache
from incriminate.organisms.train import TrainConfig


class ToyConfig(BaseModel):
    """Plain SGD on the teacher's samples."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    method: Literal["toy"] = "toy"
    """The name a config gives: `methods: [{method: toy, ...}]`."""
    train: TrainConfig = TrainConfig(steps=50, batch_size=16, lr=0.05)
    """Steps, batch size and learning rate (warm-up and weight decay are not used)."""
    momentum: float = Field(default=0.0, ge=0.0, lt=1.0)
    """SGD momentum."""


def train_toy(
    student: Any, cache: TeacherCache, cfg: ToyConfig, seed: int, teacher: Callable[[], Any]
) -> TrainResult:
    """Cross-entropy on the completion tokens of the cache with plain SGD; returns the loss of
    every step and the number of completion tokens trained on. The teacher's samples are in
    the cache, so `teacher` is never called. Deterministic in `seed`."""
    torch.manual_seed(seed)
    batches = cache.batches(cfg.train.batch_size, np.random.default_rng(seed))
    opt = torch.optim.SGD(student.parameters(), lr=cfg.train.lr, momentum=cfg.momentum)
    losses, tokens = [], 0
    student.train()
    for _ in range(cfg.train.steps):
        b = cache.batch(next(batches))
        logits = student(input_ids=b.ids[:, :-1]).logits  # (B, T-1, V)
        # Position t predicts token t + 1: a target iff that token is the teacher's completion.
        loss = cross_entropy(logits, b.ids[:, 1:], b.mask[:, 1:])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        tokens += int(b.mask[:, 1:].sum())
    student.eval()
    return TrainResult(losses, metrics={"tokens": tokens})


register_method("toy", ToyConfig, train_toy, help="plain SGD on the teacher's samples (a test's)")
