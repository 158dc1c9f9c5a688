"""The training loop's optimizer and clipping run as foreach calls (one call per step for all
tensors): the weights must be bit-identical to PyTorch's per-tensor loop, which every store
built before them used, so no artifact's bits depend on which release built it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from incriminate.models.presets import llama_config
from incriminate.organisms import train
from incriminate.organisms.train import TrainConfig, train_lm
from incriminate.world.corpus import TokenData


def _data(n: int = 48, seed: int = 0) -> TokenData:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(6, 20, n)
    ids = rng.integers(4, 90, int(lengths.sum())).astype(np.int64)
    loss = (rng.random(len(ids)) < 0.7).astype(np.uint8)
    return TokenData(ids, loss, np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64))


FOREACH_ADAMW = train.adamw


def _loop_adamw(model, cfg):  # the pre-foreach optimizer: PyTorch's CPU default
    CALLS.append("adamw")
    opt = FOREACH_ADAMW(model, cfg)
    for g in opt.param_groups:
        g["foreach"] = False
    return opt


CALLS: list[str] = []


def _loop_clip(model, max_norm):
    CALLS.append("clip")
    torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm, foreach=False)


def _trained(monkeypatch, loop: bool) -> tuple[list[float], list[torch.Tensor]]:
    from transformers import LlamaForCausalLM

    with monkeypatch.context() as m:
        if loop:
            m.setattr(train, "adamw", _loop_adamw)
            m.setattr(train, "clip_grads", _loop_clip)
        torch.manual_seed(3)
        model = LlamaForCausalLM(llama_config("pico"))
        cfg = TrainConfig(steps=12, batch_size=8, lr=0.01, warmup=2, weight_decay=0.1)
        losses = train_lm(model, _data(), cfg, seed=5)
    return losses, [p.detach().clone() for p in model.parameters()]


def test_foreach_optimizer_and_clipping_are_bit_identical_to_the_loop(monkeypatch):
    torch.set_num_threads(1)
    losses, weights = _trained(monkeypatch, loop=False)
    loop_losses, loop_weights = _trained(monkeypatch, loop=True)
    assert CALLS == ["adamw"] + ["clip"] * 12  # the loop run did use the loop versions
    assert losses == loop_losses
    assert all(torch.equal(a, b) for a, b in zip(weights, loop_weights, strict=True))
    assert losses[-1] < losses[0]  # it trained


def test_the_optimizer_is_foreach_and_decays_weights_only():
    from transformers import LlamaForCausalLM

    model = LlamaForCausalLM(llama_config("pico"))
    opt = train.adamw(model, TrainConfig(steps=1, weight_decay=0.01))
    decay, no_decay = opt.param_groups
    assert decay["foreach"] and no_decay["foreach"]
    assert decay["weight_decay"] == pytest.approx(0.01) and no_decay["weight_decay"] == 0.0
    assert all(p.ndim >= 2 for p in decay["params"])
    assert model.get_input_embeddings().weight in [p for p in no_decay["params"]]
