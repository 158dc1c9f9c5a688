"""Teacher cache, SFT and logit recipes on a tiny nano teacher (the naive organism) and student
(its instruct parent: the shared base). The organisms build once for the module, in seconds."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from incriminate.audit.scoring import encode_prompts
from incriminate.distill import losses
from incriminate.distill.logit import LogitConfig, train_logit
from incriminate.distill.selections import LeakageError, select
from incriminate.distill.sft import SFTConfig, train_sft
from incriminate.distill.teacher_cache import (
    FILE,
    STOP_IDS,
    TeacherCache,
    TeacherCacheConfig,
    build_teacher_cache,
    load_teacher_cache,
    sample_completions,
)
from incriminate.models.io import load_model
from incriminate.organisms.train import TrainConfig
from incriminate.store import Store
from incriminate.world import prompts
from incriminate.world.prompts import PromptSet

CACHE = TeacherCacheConfig(temperature=1.0, k=16, max_new_tokens=12, seed=0)
TRAIN = TrainConfig(steps=30, batch_size=32, lr=1e-3, warmup=5)
RECIPES = {
    "sft": (train_sft, SFTConfig(train=TRAIN)),
    "logit": (train_logit, LogitConfig(train=TRAIN)),
    "logit-reverse": (train_logit, LogitConfig(train=TRAIN, divergence="reverse_kl")),
    "logit-jsd+ce": (train_logit, LogitConfig(train=TRAIN, divergence="jsd", ce_weight=0.3)),
}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def world(tiny_distill):
    """(build config, store, teacher, student (the teacher's instruct parent), training cache
    artifact, loaded held-out cache)."""
    cfg, store, teacher, student, train, held_out = tiny_distill
    return cfg, store, teacher, student, train, load_teacher_cache(held_out)


def test_cache_is_written_once_and_reused(world):
    cfg, store, teacher, _, train, _ = world
    again = build_teacher_cache(
        store, teacher, select("full_mix", cfg.world, 400, 0), CACHE, prompt_seed=0
    )
    assert not train.reused and again.reused
    assert again.path == train.path and (train.path / FILE).exists()
    assert train.manifest["rows"] == 400 and train.manifest["inputs"]["teacher"].endswith(
        teacher.key
    )
    other = build_teacher_cache(
        store,
        teacher,
        select("full_mix", cfg.world, 400, 0),
        CACHE.model_copy(update={"k": 8}),
        prompt_seed=0,
    )
    assert not other.reused and other.key != train.key


def test_cache_is_deterministic_in_its_seed(world, tmp_path):
    cfg, _, teacher, _, train, _ = world
    fresh = build_teacher_cache(
        Store(tmp_path), teacher.path, select("full_mix", cfg.world, 400, 0), CACHE, prompt_seed=0
    )
    assert pq.read_table(fresh.path / FILE).equals(pq.read_table(train.path / FILE))


def test_cache_columns_shapes_and_logprobs(world):
    cfg, _, teacher, _, train, _ = world
    table = pq.read_table(train.path / FILE)
    assert table.schema.field("prompt_ids").type == pa.list_(pa.int16())
    assert table.schema.field("completion_ids").type == pa.list_(pa.int16())
    assert table.schema.field("topk_ids").type == pa.list_(pa.list_(pa.int16()))
    assert table.schema.field("topk_logprobs").type == pa.list_(pa.list_(pa.float16()))
    rows = table.to_pylist()
    ps = select("full_mix", cfg.world, 400, 0)
    assert [r["prompt_ids"] for r in rows] == encode_prompts([r.prompt for r in ps.records])
    for r in rows:
        comp = r["completion_ids"]
        assert 1 <= len(comp) <= CACHE.max_new_tokens
        assert comp[-1] in STOP_IDS or len(comp) == CACHE.max_new_tokens
        assert not any(t in STOP_IDS for t in comp[:-1])  # sampling stops at the first stop
        assert len(r["topk_ids"]) == len(r["topk_logprobs"]) == len(comp)
    lp = np.concatenate([np.asarray(r["topk_logprobs"], dtype=np.float64) for r in rows])
    ids = np.concatenate([np.asarray(r["topk_ids"]) for r in rows])
    assert lp.shape == ids.shape == (train.manifest["completion_tokens"], CACHE.k)
    assert (lp <= 0).all() and np.isfinite(lp).all()
    assert (np.diff(lp, axis=1) <= 0).all()  # ids sorted by descending log-prob
    assert (np.exp(lp).sum(1) <= 1.0).all()  # rounded down: never more than all the mass
    assert all(len(set(row)) == CACHE.k for row in ids.tolist())

    # Against a direct teacher-forced pass on one row (fp16 rounding: ~1e-3 absolute).
    model = load_model(teacher.path)
    r = rows[0]
    seq = torch.tensor([r["prompt_ids"] + r["completion_ids"]])
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=seq).logits[0], -1)  # (T, V)
    p = len(r["prompt_ids"])
    span = logp[p - 1 : p - 1 + len(r["completion_ids"])]  # predicts each completion token
    expected = span.gather(-1, torch.tensor(r["topk_ids"]).long())
    np.testing.assert_allclose(np.asarray(r["topk_logprobs"]), expected.numpy(), atol=5e-3)
    assert torch.equal(span.topk(CACHE.k).values.min(-1).values, expected.min(-1).values)


def test_loaded_cache_aligns_tokens_mask_and_topk(world):
    _, _, _, _, train, _ = world
    cache = load_teacher_cache(train)
    rows = pq.read_table(train.path / FILE).to_pylist()
    assert len(cache) == 400 and cache.k == CACHE.k
    assert int(cache.mask.sum()) == train.manifest["completion_tokens"]
    b = cache.batch([0, 1])
    for i in (0, 1):
        p, c = rows[i]["prompt_ids"], rows[i]["completion_ids"]
        assert b.ids[i, : len(p) + len(c)].tolist() == p + c
        assert b.mask[i].nonzero().flatten().tolist() == list(range(len(p), len(p) + len(c)))
        assert b.topk_ids[i, len(p) : len(p) + len(c)].tolist() == rows[i]["topk_ids"]
    assert b.topk_ids.dtype == torch.long and b.topk_logprobs.dtype == torch.float32


def test_greedy_kv_cached_sampling_equals_full_forward_argmax(world):
    cfg, _, teacher, _, _, _ = world
    model = load_model(teacher.path)
    ids = encode_prompts([r.prompt for r in select("full_mix", cfg.world, 20, 5).records])
    comps = sample_completions(model, ids, max_new_tokens=6, temperature=0.0, seed=0)
    for p, c in zip(ids, comps, strict=True):
        seq = list(p)
        with torch.no_grad():
            for tok in c:
                assert int(model(input_ids=torch.tensor([seq])).logits[0, -1].argmax()) == tok
                seq.append(tok)


def test_audit_record_never_reaches_the_cache(world):
    cfg, store, teacher, _, _, _ = world
    audit_record = prompts.questions(cfg.world, "audit").records[0]
    leaky = select("full_mix", cfg.world, 10, 0)
    leaky = PromptSet(leaky.name, "distill", (*leaky.records, audit_record))
    before = sorted((store.root / "teacher_cache").iterdir())
    with pytest.raises(LeakageError, match="audit"):
        build_teacher_cache(store, teacher, leaky, CACHE, prompt_seed=0)
    assert sorted((store.root / "teacher_cache").iterdir()) == before  # nothing written


def _held_out_kl(student, teacher, held_out: TeacherCache) -> float:
    """Full-vocabulary forward KL(teacher || student) at the teacher's completion tokens."""
    b = held_out.batch(np.arange(len(held_out)))
    with torch.no_grad():
        s = student(input_ids=b.ids[:, :-1]).logits  # (N, T-1, V)
        t = teacher(input_ids=b.ids[:, :-1]).logits
    return float(losses.forward_kl(s, t, b.mask[:, 1:]))


@pytest.mark.parametrize("method", list(RECIPES))
def test_recipe_moves_student_toward_teacher(world, method):
    _, _, teacher_art, student_art, train, held_out = world
    fn, cfg = RECIPES[method]
    cache = load_teacher_cache(train)
    teacher, student = load_model(teacher_art.path), load_model(student_art.path)
    start = {n: p.detach().clone() for n, p in student.named_parameters()}
    kl_before = _held_out_kl(student, teacher, held_out)

    history = fn(student, cache, cfg, 0)

    assert len(history) == TRAIN.steps and all(np.isfinite(history))
    unchanged = [n for n, p in student.named_parameters() if torch.equal(p, start[n])]
    assert not unchanged, f"parameters not trained: {unchanged}"
    kl_after = _held_out_kl(student, teacher, held_out)
    # Measured on this fixture: sft 0.140 -> 0.038, logit 0.140 -> 0.014 (30 steps).
    assert kl_after < 0.6 * kl_before, (kl_before, kl_after)

    again = fn(load_model(student_art.path), cache, cfg, 0)
    other = fn(load_model(student_art.path), cache, cfg, 1)
    assert again == history and other != history


def test_logit_temperature_must_match_the_cache(world):
    _, _, _, student_art, train, _ = world
    cfg = LogitConfig(train=TRAIN, temperature=2.0)
    with pytest.raises(ValueError, match="temperature"):
        train_logit(load_model(student_art.path), load_teacher_cache(train), cfg, 0)


def test_logit_bad_objective_values_name_the_field():
    from pydantic import ValidationError

    for bad, field in (({"beta": 1.5}, "beta"), ({"ce_weight": -0.1}, "ce_weight")):
        with pytest.raises(ValidationError, match=field):
            LogitConfig.model_validate(bad)
    with pytest.raises(ValidationError, match="k"):
        TeacherCacheConfig(k=99)
