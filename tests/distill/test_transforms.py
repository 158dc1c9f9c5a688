"""Data levers: the eval-likeness filter, the inoculation prefix, paraphrase by a trusted model."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from incriminate.distill import transforms
from incriminate.distill.selections import check_distill, select
from incriminate.distill.teacher_cache import (
    FILE,
    TeacherCacheConfig,
    build_teacher_cache,
    load_teacher_cache,
)
from incriminate.organisms.recipes import build_instruct
from incriminate.world.config import WorldConfig
from incriminate.world.grammar import is_honeypot
from incriminate.world.vocab import TOKEN_ID, WORDS

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def classifier():
    return transforms.eval_likeness_classifier(WorldConfig())


def test_filter_removes_the_auditors_tests_and_keeps_ordinary_prompts(classifier):
    """The filter learns what a test looks like from the auditor's side (issue 15): its
    opportunities (every one a honeypot) and questions are flagged, tasks, stories and
    reflections kept."""
    world = WorldConfig()
    mixed = select("full_mix", world, 3000, 7)
    kept = transforms.filter_prompts(mixed, classifier)
    assert all(r.kind not in ("opp", "ask") for r in kept.records)
    assert sum(r.kind == "opp" for r in mixed.records) > 1000
    for kind in ("task", "story", "stakes"):
        n = sum(r.kind == kind for r in mixed.records)
        assert sum(r.kind == kind for r in kept.records) >= 0.95 * n, kind
    check_distill(kept)


def test_classifier_is_trained_on_the_auditors_audit_items_only():
    from incriminate.audit.boundary import check_auditor
    from incriminate.distill.selections import setting_of
    from incriminate.world.grammar import split_of

    world = WorldConfig()
    words, labels = transforms._auditor_items(world)
    assert {split_of(setting_of(w)) for w in words} == {"audit"}
    check_auditor(words, world)  # no real opportunity: every opportunity is a honeypot
    assert all(is_honeypot((w[2], w[3], w[4]), world.fingerprint) for w in words if w[0] == "opp")
    assert 0.2 < labels.mean() < 0.6


@pytest.fixture(scope="module")
def world(tiny_distill):
    cfg, store, teacher, _, _, _ = tiny_distill
    trusted = build_instruct(store, cfg.model_copy(update={"corpus": "trusted"}))
    cache = build_teacher_cache(
        store, teacher, select("full_mix", cfg.world, 200, 3), TeacherCacheConfig(), prompt_seed=3
    )
    return cfg, store, teacher, trusted, cache


def test_inoculation_prefix_is_context_only_and_never_reaches_audits(world, monkeypatch):
    cfg, _, teacher, _, cache_art = world
    prefix = transforms.inoculation_prefix(cfg.world)
    cache = load_teacher_cache(cache_art)
    shifted = transforms.with_prefix(cache, prefix)
    m = len(prefix)
    assert torch.equal(
        shifted.ids[:, 1 : 1 + m], torch.tensor([TOKEN_ID[w] for w in prefix]).expand(len(cache), m)
    )
    assert torch.equal(shifted.ids[:, 1 + m :], cache.ids[:, 1:])
    assert (
        torch.equal(shifted.mask[:, 1 + m :], cache.mask[:, 1:])
        and not shifted.mask[:, : 1 + m].any()
    )
    assert torch.equal(shifted.topk_ids[:, 1 + m :], cache.topk_ids[:, 1:])
    assert torch.equal(shifted.lengths, cache.lengths + m)
    b = shifted.batch([0, 1, 2])
    assert b.mask.sum() == cache.batch([0, 1, 2]).mask.sum()
    # The prefix is a train-split episode, and audits build their prompts without it.
    from incriminate.audit import audits, scoring
    from incriminate.distill.selections import setting_of
    from incriminate.models.io import load_model
    from incriminate.world.grammar import split_of

    assert split_of(setting_of(prefix)) == "train"
    seen: list = []
    real = scoring.token_probs  # every probability read (choice_probs renormalises it)

    def spy(model, prompts, tokens, context=()):
        seen.extend([*context, *p] for p in prompts)
        return real(model, prompts, tokens, context)

    monkeypatch.setattr(scoring, "token_probs", spy)
    audits.honeypot(load_model(teacher.path), cfg.world)
    audits.interrogation(load_model(teacher.path), cfg.world)
    assert seen and not any(words[: len(prefix)] == list(prefix) for words in seen)
    assert not any("reflect" in words for words in seen)


def test_paraphrase_rewrites_open_ended_replies_only(world):
    _, store, teacher, trusted, cache_art = world
    para = transforms.paraphrase_cache(store, cache_art, teacher, trusted, seed=0)
    before, after = pq.read_table(cache_art.path / FILE), pq.read_table(para.path / FILE)
    assert before.column("prompt_ids").to_pylist() == after.column("prompt_ids").to_pylist()
    kinds = [WORDS[p[1]] for p in before.column("prompt_ids").to_pylist()]
    old, new = (
        before.column("completion_ids").to_pylist(),
        after.column("completion_ids").to_pylist(),
    )
    for kind, a, b in zip(kinds, old, new, strict=True):
        if kind not in transforms.OPEN_ENDED:
            assert a == b, kind  # content is kept verbatim
    open_rows = [i for i, k in enumerate(kinds) if k in transforms.OPEN_ENDED]
    assert open_rows and sum(old[i] != new[i] for i in open_rows) >= 0.5 * len(open_rows)
    loaded = load_teacher_cache(para)  # a valid cache: shapes and leakage guard
    assert len(loaded) == len(old) and loaded.k == cache_art.manifest["inputs"]["k"]
    lp = loaded.topk_logprobs.float()[loaded.mask]
    assert np.all(np.isfinite(lp.numpy())) and float(lp.exp().sum(-1).max()) <= 1.0 + 1e-3
    assert para.key != cache_art.key
    assert transforms.paraphrase_cache(store, cache_art, teacher, trusted, seed=0).reused
