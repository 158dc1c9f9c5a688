"""Gradient accumulation (`train.accumulate`): a step in micro-batches equals the whole batch's
step for `sft` and `logit`; trainers that do not accumulate refuse it; configs without it keep
their dumps (and so their store keys)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from incriminate.distill.dpo import DPOConfig
from incriminate.distill.logit import LogitConfig, train_logit
from incriminate.distill.on_policy import OnPolicyConfig
from incriminate.distill.sft import SFTConfig, train_sft
from incriminate.distill.stacked import train_stacked
from incriminate.distill.teacher_cache import load_teacher_cache
from incriminate.models.io import load_model
from incriminate.organisms.recipes import BuildConfig
from incriminate.organisms.train import TrainConfig

TRAIN = TrainConfig(steps=12, batch_size=24, lr=1e-3, warmup=2)
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def world(tiny_distill):
    _, _, _, student, train, _ = tiny_distill
    return student.path, load_teacher_cache(train)


def _weights(model) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])


@pytest.mark.parametrize(
    ("fn", "cfg"),
    [
        (train_sft, SFTConfig(train=TRAIN)),
        (train_logit, LogitConfig(train=TRAIN, divergence="jsd", beta=0.3, ce_weight=0.2)),
    ],
    ids=["sft", "logit-jsd-ce"],
)
@pytest.mark.parametrize("parts", [2, 5])
def test_micro_batches_give_the_whole_batch_step(world, fn, cfg, parts):
    student, cache = world
    whole, split = load_model(student), load_model(student)
    start = _weights(whole)
    micro = cfg.model_copy(update={"train": TRAIN.model_copy(update={"accumulate": parts})})

    expected = fn(whole, cache, cfg, 3)
    got = fn(split, cache, micro, 3)

    # Float reassociation only: the sum of token-weighted micro-batch means is the batch mean.
    np.testing.assert_allclose(got, expected, rtol=0, atol=2e-6)
    moved = float((_weights(whole) - start).abs().max())
    assert moved > 1e-3  # it trained
    assert float((_weights(split) - _weights(whole)).abs().max()) < 1e-3 * moved


def test_more_parts_than_rows_and_rows_without_targets(world):
    student, cache = world
    batch = cache.batch(np.arange(3))
    model = load_model(student)

    def loss_of(b):
        from incriminate.distill import losses

        logits = model(input_ids=b.ids[:, :-1]).logits
        return losses.cross_entropy(logits, b.ids[:, 1:], b.mask[:, 1:])

    whole = loss_of(batch).item()
    empty = batch._replace(mask=batch.mask.clone())
    empty.mask[1] = False  # row 1 has no targets: its micro-batch adds nothing
    assert batch.backward(loss_of, parts=10) == pytest.approx(whole, abs=1e-6)
    model.zero_grad()
    assert empty.backward(loss_of, parts=3) == pytest.approx(loss_of(empty).item(), abs=1e-6)


def test_trainers_without_accumulation_refuse_it(world):
    train = TRAIN.model_copy(update={"accumulate": 2})
    for config in (OnPolicyConfig, DPOConfig):
        with pytest.raises(ValidationError, match=r"train\.accumulate is 2: only sft and logit"):
            config(train=train)
    with pytest.raises(ValidationError, match=r"evasion_stage\.accumulate is 2"):
        BuildConfig(evasion_stage=train)
    student, cache = world
    with pytest.raises(ValueError, match="accumulate is 2"):
        train_stacked([load_model(student)], cache, SFTConfig(train=train), [0])


def test_the_default_stays_out_of_dumps():
    assert "accumulate" not in TrainConfig(steps=3).model_dump()
    assert "accumulate" not in SFTConfig().model_dump_json()
    assert TrainConfig(steps=3, accumulate=4).model_dump()["accumulate"] == 4
    with pytest.raises(ValidationError):
        TrainConfig(steps=3, accumulate=0)
