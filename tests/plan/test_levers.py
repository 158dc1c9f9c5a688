"""Student-init and training levers: small / trusted inits, LoRA, epochs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from pydantic import ValidationError

from incriminate.plan.config import load_config
from incriminate.plan.sweep import load_sweep

pytestmark = pytest.mark.usefixtures("one_thread")


def test_init_builds_differ_only_where_they_should():
    cfg = load_config(overrides=["build.preset=micro"])
    shared, seed = cfg.init_build("shared_base")
    assert shared == cfg.build and seed is None
    assert cfg.init_build("other_base") == (cfg.build, cfg.build.seed + 1)
    small, _ = cfg.init_build("small")
    assert small.preset == "nano" and small.model_copy(update={"preset": "micro"}) == cfg.build
    trusted, _ = cfg.init_build("trusted")
    assert trusted.corpus == "trusted" and trusted.preset == "micro"


def test_small_needs_a_smaller_preset_and_lora_targets_must_exist():
    with pytest.raises(ValidationError, match="no preset is smaller than 'pico'"):
        load_config(overrides=["build.preset=pico", "inits=[small]"])
    with pytest.raises(ValidationError, match="did you mean 'v_proj'"):
        load_config(overrides=["lora.targets=[v_prj]"])
    with pytest.raises(ValidationError, match=r"lora\.r"):
        load_config(overrides=["lora.r=0"])


def test_epochs_set_the_steps_of_every_method():
    cfg = load_config(overrides=["epochs=3", "prompts=200"])
    for m in cfg.methods:
        assert cfg.method(m.method).train.steps == 3 * 200 // m.train.batch_size + (
            (3 * 200) % m.train.batch_size > 0
        )
    assert load_config().method("sft").train.steps == 80


def test_the_levers_sweep_turns_one_lever_at_a_time():
    """`configs/sweeps/levers.yaml`: its first point is the base (logit forward KL on full_mix
    and open_ended from the shared base); every other point changes only what it overrides."""
    path = Path(__file__).parents[2] / "configs" / "sweeps" / "levers.yaml"
    _, name, points = load_sweep(path)
    assert name == "levers" and len(points) == 16
    base = points[0]
    train = "train: {steps: 80, batch_size: 32, lr: 0.001, warmup: 8}"
    assert base.id == "logit-forward-kl" and base.overrides == {}
    methods = f"methods=[{{method: logit, {train}}}]"
    assert base.cfg == load_config(
        overrides=[methods, "data=[full_mix, open_ended]", "inits=[shared_base]"]
    )
    before = base.cfg.model_dump()
    for p in points[1:]:
        after = p.cfg.model_dump()
        changed = {k for k in before if before[k] != after[k]}
        assert changed and changed <= {f.split(".")[0] for f in p.overrides}, p.id


def test_lora_trains_only_the_adapters_and_merges(tiny_distill):
    from incriminate.distill.sft import SFTConfig, train_sft
    from incriminate.distill.teacher_cache import load_teacher_cache
    from incriminate.models.io import load_model
    from incriminate.plan.config import LoraOptions
    from incriminate.plan.runs import with_lora

    _, _, _, init, train, _ = tiny_distill
    cache = load_teacher_cache(train)
    student = with_lora(load_model(init.path), LoraOptions(r=2, targets=("q_proj", "v_proj")), 0)
    before = {n: p.detach().clone() for n, p in student.named_parameters()}
    train = SFTConfig.model_validate(
        {"train": {"steps": 5, "batch_size": 16, "lr": 1e-2, "warmup": 1}}
    )
    train_sft(student, cache, train, 0)
    changed = {n for n, p in student.named_parameters() if not torch.equal(p, before[n])}
    adapters = {n for n in before if "lora_" in n}
    assert adapters and changed == {n for n in adapters if "lora_A" in n or "lora_B" in n}
    merged = student.merge_and_unload()
    base = load_model(init.path)
    q = "model.layers.0.self_attn.q_proj.weight"
    k = "model.layers.0.self_attn.k_proj.weight"
    merged_params, base_params = dict(merged.named_parameters()), dict(base.named_parameters())
    assert not torch.equal(merged_params[q], base_params[q])  # the update is in the weights now
    assert torch.equal(merged_params[k], base_params[k])  # no adapter on k_proj
