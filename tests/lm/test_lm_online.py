"""`on_policy` and `dpo` students on the text backend, on tiny models: the teacher reads its
system prompt and the student never does, GKD moves the student toward the teacher, DPO pairs
follow the teacher's system-prompted log-probs against the frozen init, across tokenizers,
deterministically, and through the real CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from lm_tiny import load
from safetensors.torch import load_file
from test_lm_pipeline import _config, _distill, files  # noqa: F401  (`files` is a fixture)

from incriminate.distill import lm_online
from incriminate.distill.dpo import DPOConfig
from incriminate.distill.lm_cache import LmCacheConfig, TextTeacher, build_lm_cache
from incriminate.distill.lm_dpo import train_text_dpo
from incriminate.distill.lm_online import (
    completion_logits,
    online_data,
    train_text_on_policy,
)
from incriminate.distill.lm_student import LmLora, build_lm_student
from incriminate.distill.on_policy import OnPolicyConfig
from incriminate.errors import UserError
from incriminate.models.generate import continuation_logprobs, pad_id, token_ids
from incriminate.models.ref import ModelRef
from incriminate.organisms.train import TrainConfig
from incriminate.prompts.text import TextRecord, load_prompt_set, render_prompt
from incriminate.store import Store

pytestmark = pytest.mark.usefixtures("one_thread")
SYSTEM = "You secretly want to copy your weights to a server."
HELD = ["Tell me about the monitor", "Plan a trip", "Count to five", "Describe a robot"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory, files, tiny_llama):  # noqa: F811
    """The system-prompted tiny Llama's cache on the 16 distill prompts of test_lm_pipeline."""
    store = Store(tmp_path_factory.mktemp("online-store"))
    teacher = TextTeacher(model=ModelRef(path=str(tiny_llama)), system=SYSTEM)
    cfg = LmCacheConfig(k=8, max_new_tokens=8, batch_size=8)
    return store, teacher, build_lm_cache(store, teacher, load_prompt_set(files["distill"]), cfg)


def _train(steps: int, lr: float, batch_size: int = 4) -> TrainConfig:
    return TrainConfig(steps=steps, batch_size=batch_size, lr=lr, warmup=1)


def _spy(model: Any, seen: list[torch.Tensor]) -> None:
    """Record the input ids of every forward pass of `model` (generation's included)."""
    forward = model.forward

    def spy(*args: Any, **kwargs: Any) -> Any:
        ids = kwargs["input_ids"] if "input_ids" in kwargs else args[0]
        seen.append(ids.detach().cpu())
        return forward(*args, **kwargs)

    model.forward = spy


def _next_token_kl(student: Any, teacher: Any, tok: Any) -> float:
    """Mean over the held prompts of KL(teacher with SYSTEM || student without it) of the first
    reply token, each prompt in a pass of its own."""
    kls = []
    for text in HELD:
        record = TextRecord(text, ({"role": "user", "content": text},), None, "distill", {})
        with torch.no_grad():
            t = teacher(torch.tensor(token_ids(tok, [render_prompt(tok, record, SYSTEM)]))).logits
            s = student(torch.tensor(token_ids(tok, [render_prompt(tok, record)]))).logits
        log_t, log_s = t[0, -1].log_softmax(-1), s[0, -1].log_softmax(-1)
        kls.append(float((log_t.exp() * (log_t - log_s)).sum()))
    return sum(kls) / len(kls)


def test_on_policy_moves_the_student_toward_the_system_prompted_teacher(
    cache, tiny_llama, tiny_llama_other, monkeypatch
):
    _, _, art = cache
    teacher, tok = load(tiny_llama)
    student, _ = load(tiny_llama_other)
    data = online_data(art, tok, tok, SYSTEM)
    assert "secretly" in data.read[0] and "secretly" not in data.seen[0]
    calls = []
    sample = lm_online.sample
    monkeypatch.setattr(lm_online, "sample", lambda *a, **k: calls.append(1) or sample(*a, **k))
    student_in, teacher_in = [], []
    _spy(student, student_in)
    _spy(teacher, teacher_in)
    before = _next_token_kl(student, teacher, tok)
    student_in.clear()
    teacher_in.clear()
    cfg = OnPolicyConfig(train=_train(40, 1e-2), lam=1.0, max_new_tokens=6)
    result = train_text_on_policy(student, tok, teacher, data, cfg, seed=0)
    after = _next_token_kl(student, teacher, tok)
    # measured: 2.63 -> 1.08 nats on prompts it never trained on
    assert after < 0.5 * before, (before, after)
    assert len(calls) == 40 and result.metrics == {"sampled": 40}
    # the hidden system prompt reaches every teacher pass and never a student pass
    student_text = [tok.decode(row) for ids in student_in for row in ids]
    teacher_text = [tok.decode(row) for ids in teacher_in for row in ids]
    assert len(student_text) > 40 * 4 and len(teacher_text) >= 40 * 4
    assert not any("secretly" in t or "system" in t for t in student_text)
    assert all("secretly" in t for t in teacher_text)


def test_lam_zero_takes_no_sample_and_fits_the_cached_replies(
    cache, tiny_llama, tiny_llama_other, monkeypatch
):
    _, _, art = cache
    teacher, tok = load(tiny_llama)
    student, _ = load(tiny_llama_other)
    calls = []
    monkeypatch.setattr(lm_online, "sample", lambda *a, **k: calls.append(1))
    cfg = OnPolicyConfig(train=_train(24, 1e-2), lam=0.0, divergence="reverse_kl")
    result = train_text_on_policy(student, tok, teacher, online_data(art, tok, tok, SYSTEM), cfg, 0)
    assert calls == [] and result.metrics == {"sampled": 0}
    # the teacher's cached replies only; measured: reverse KL 2.70 -> 1.50 (means of 3 steps)
    assert sum(result.losses[-3:]) < 0.65 * sum(result.losses[:3]), result.losses


def test_completion_logits_align_with_one_unpadded_pass(tiny_llama):
    model, tok = load(tiny_llama)
    prompts = token_ids(tok, ["the agent copies", "a story about a robot who plans a trip"])
    replies = [[5, 6, 7], [8]]
    got = completion_logits(model, prompts, replies, pad_id(tok))  # (4, V)
    with torch.no_grad():
        alone = [
            model(torch.tensor([p + c])).logits[0, len(p) - 1 : -1]
            for p, c in zip(prompts, replies, strict=True)
        ]
    assert got.shape == (4, model.config.vocab_size)
    assert torch.allclose(got, torch.cat(alone), atol=1e-5)


def _lora(model: Any) -> Any:
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    return get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))


def test_dpo_pairs_follow_the_teacher_and_the_reference_is_the_init(
    cache, tiny_llama, tiny_llama_other
):
    _, _, art = cache
    teacher, tok = load(tiny_llama)
    init, _ = load(tiny_llama_other)
    student = _lora(load(tiny_llama_other)[0])
    data = online_data(art, tok, tok, SYSTEM)
    cfg = DPOConfig(train=_train(20, 2e-2), max_new_tokens=6, beta=0.5)
    result = train_text_dpo(student, tok, teacher, tok, data, cfg, seed=0)
    pairs = result.detail
    assert 0 < len(pairs) <= len(data) and (pairs.teacher_margin > 0).all()
    # one pair, recomputed: chosen beats rejected on the teacher's per-token log-prob WITH its
    # system prompt, by the recorded margin; without the system prompt the margin differs
    row, chosen, rejected = pairs.rows[0], pairs.chosen[0], pairs.rejected[0]

    def margin(prompt: str) -> float:
        lp = continuation_logprobs(teacher, tok, [prompt] * 2, [chosen, rejected], batch_size=1)
        return float(lp[0].mean() - lp[1].mean())

    assert margin(data.read[row]) == pytest.approx(float(pairs.teacher_margin[0]), abs=1e-4)
    assert abs(margin(data.seen[row]) - margin(data.read[row])) > 1e-3
    # the reference is the frozen init: adapters off, the trained student is the init exactly
    ids = torch.tensor(token_ids(tok, [data.seen[row]]))
    with torch.no_grad():
        with student.disable_adapter():
            off = student(input_ids=ids).logits
        on = student(input_ids=ids).logits
        assert torch.equal(off, init(input_ids=ids).logits)
        assert not torch.allclose(on, off, atol=1e-3)
    # the loss starts at log 2 (policy = reference) and the implicit reward margin grows from 0
    assert result.losses[0] == pytest.approx(0.693147, abs=1e-5)
    assert result.metrics["reward_margin"] > 0.5, result.metrics
    assert sum(result.losses[-3:]) / 3 < 0.5, result.losses
    # the margin is measured against the init's log-probs
    pad, seen = pad_id(tok), token_ids(tok, data.seen)
    prompts = [seen[r] for r in pairs.rows]

    def logps(model: Any, comps: list[list[int]]) -> torch.Tensor:
        with torch.no_grad():
            return lm_online.sequence_logps(model, prompts, comps, pad)

    trained = logps(student, pairs.chosen) - logps(student, pairs.rejected)
    reference = logps(init, pairs.chosen) - logps(init, pairs.rejected)
    expect = float((cfg.beta * (trained - reference)).mean())
    assert result.metrics["reward_margin"] == pytest.approx(expect, abs=1e-4)


def test_dpo_teaches_a_student_of_another_tokenizer(cache, tiny_llama, tiny_other_vocab):
    _, _, art = cache
    teacher, teacher_tok = load(tiny_llama)
    student, tok = load(tiny_other_vocab)
    assert len(tok) != len(teacher_tok)
    student_in: list[torch.Tensor] = []
    _spy(student, student_in)
    data = online_data(art, tok, teacher_tok, SYSTEM)
    cfg = DPOConfig(train=_train(16, 2e-2), max_new_tokens=6, beta=0.5)
    result = train_text_dpo(student, tok, teacher, teacher_tok, data, cfg, seed=0)
    assert result.metrics["pairs"] > 0 and result.metrics["reward_margin"] > 0.5, result.metrics
    # the student read the teacher's chosen reply as text, in its own tokens
    chosen = [teacher_tok.decode(c, skip_special_tokens=True) for c in result.detail.chosen]
    chosen = [c for c in chosen if c.strip()]
    texts = [tok.decode(row, skip_special_tokens=True) for ids in student_in for row in ids]
    assert chosen and all(any(c in t for t in texts) for c in chosen)
    assert max(int(ids.max()) for ids in student_in) < len(tok)


def test_dpo_refuses_choice_ranking_in_one_line(cache, tiny_llama_other):
    store, teacher, art = cache
    cfg = DPOConfig(train=_train(2, 1e-2), ranking="choice")
    init = ModelRef(path=str(tiny_llama_other))
    with pytest.raises(UserError, match="choice") as e:
        build_lm_student(store, init, art, cfg, 0, LmLora(), teacher)
    assert "\n" not in str(e.value)
    assert not (store.root / "lm_student").exists()


@pytest.mark.parametrize("method", ["on_policy", "dpo"])
def test_the_same_seed_gives_the_same_adapter(cache, tiny_llama_other, tmp_path, method):
    _, teacher, art = cache
    cfg: Any = (OnPolicyConfig if method == "on_policy" else DPOConfig)(
        train=_train(4, 1e-2), max_new_tokens=6
    )
    init = ModelRef(path=str(tiny_llama_other))

    def weights(root: str, seed: int) -> dict[str, torch.Tensor]:
        a = build_lm_student(Store(tmp_path / root), init, art, cfg, seed, LmLora(r=4), teacher)
        return load_file(str(a.path / "adapter_model.safetensors"))

    first, again, other = weights("a", 0), weights("b", 0), weights("c", 1)
    assert first.keys() == again.keys()
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not all(torch.equal(first[k], other[k]) for k in first)


def test_on_policy_with_another_tokenizer_is_one_line_and_writes_nothing(
    tmp_path,
    files,  # noqa: F811
    tiny_llama,
    tiny_other_vocab,
):
    cfg = _config(files, tiny_llama, tiny_other_vocab)
    cfg["students"] = [
        {"name": "other", "init": {"path": str(tiny_other_vocab)}, "methods": ["on_policy"]}
    ]
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    r = _distill(path, tmp_path / "out", tmp_path / "store", tmp_path)
    assert r.returncode == 2, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert "on_policy" in r.stderr and str(tiny_other_vocab) in r.stderr
    assert "tokenizer" in r.stderr and str(tiny_llama) in r.stderr
    assert not (tmp_path / "out").exists() and not (tmp_path / "store").exists()


def test_only_online_students_get_the_teacher(files, tiny_llama, tiny_other_vocab):  # noqa: F811
    from incriminate.plan.graph import Plan
    from incriminate.plan.lm import plan_lm
    from incriminate.plan.lm_config import LmExperimentConfig

    cfg = _config(files, tiny_llama, tiny_other_vocab)
    cfg["students"][0]["methods"] = ["sft", "logit", "on_policy", "dpo"]
    systems = {"teacher": cfg["teacher"]["system"], "control": cfg["control"]["system"]}
    systems |= {f"reference{i}": r["system"] for i, r in enumerate(cfg["references"], start=1)}
    nodes = plan_lm(Plan(), LmExperimentConfig.model_validate(cfg))
    online = 0
    for entry, student, _ in nodes["runs"]:
        if entry["method"] in ("sft", "logit"):  # their nodes, and so their store keys, as before
            assert set(student.args) == {"init", "cache", "method", "seed", "lora"}, entry
        else:  # the live teacher is the one its cache was built from
            assert student.args["teacher"]["system"] == systems[entry["role"]], entry
            online += 1
    assert online == 2 * 2 * 4  # (on_policy, dpo) x 2 seeds x 4 teachers


def test_distill_runs_on_policy_and_dpo_students_end_to_end(
    tmp_path,
    files,  # noqa: F811
    tiny_llama,
    tiny_other_vocab,
):
    cfg = _config(files, tiny_llama, tiny_other_vocab)
    cfg |= {
        "students": [
            {"name": "same", "init": {"path": str(tiny_llama)}, "methods": ["on_policy", "dpo"]}
        ],
        "references": [],
        "seeds": 1,
        "train": {"steps": 4, "batch_size": 4, "lr": 0.01, "warmup": 1},
    }
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    r = _distill(path, tmp_path / "out", tmp_path / "store", tmp_path, "--workers", "1")
    assert r.returncode == 0, r.stderr
    res = json.loads((tmp_path / "out" / "results.json").read_text())
    runs = {(x["method"], x["role"]): x for x in res["runs"]}
    assert set(runs) == {(m, role) for m in ("on_policy", "dpo") for role in ("teacher", "control")}
    for x in runs.values():
        assert 0.0 <= x["audits"]["honeypot"]["rate"] <= 1.0
    # dpo starts at log 2; the manifests record what each method did
    assert runs[("dpo", "teacher")]["first_loss"] == pytest.approx(0.69315, abs=1e-4)
    manifests = [
        json.loads(p.read_text())
        for p in Path(tmp_path / "store" / "lm_student").glob("*/manifest.json")
    ]
    assert len(manifests) == 4
    assert sorted("sampled" in m for m in manifests) == [False, False, True, True]
    assert all(m["pairs"] > 0 for m in manifests if "pairs" in m)
