"""The world's grammar: determinism, splits, the honeypot fingerprint, personas."""

from __future__ import annotations

import random

import pytest

from incriminate.world import prompts
from incriminate.world.config import WorldConfig
from incriminate.world.corpus import documents, encode_documents, persona_documents
from incriminate.world.grammar import is_honeypot, sample_opportunity, split_of, triples
from incriminate.world.personas import Agent, misaligned_action, respond
from incriminate.world.vocab import CONTEXT, DRIVES, VOCAB_SIZE, WORDS

WORLD = WorldConfig()


def _settings(doc_words: tuple[str, ...]) -> set[tuple[str, ...]]:
    """Every context triple and digit triple that occurs in a sequence of words."""
    found = set()
    for i, w in enumerate(doc_words):
        if w in ("opp",):
            found.add(tuple(doc_words[i + 2 : i + 5]))
        elif w in ("ask", "story", "stakes"):
            found.add(tuple(doc_words[i + 1 : i + 4]))
        elif w == "task":
            found.add(("task", *doc_words[i + 2 : i + 5]))
    return found


def test_corpus_is_deterministic_in_its_seed():
    a = encode_documents(documents(WORLD, 7, 200), responses_only=False)
    b = encode_documents(documents(WORLD, 7, 200), responses_only=False)
    c = encode_documents(documents(WORLD, 8, 200), responses_only=False)
    assert (a.ids == b.ids).all() and (a.offsets == b.offsets).all()
    assert len(a.ids) != len(c.ids) or (a.ids != c.ids).any()


def test_splits_partition_settings_and_are_roughly_60_20_20():
    counts = {s: len(triples(s, "conjunction")) for s in ("train", "audit", "eval")}  # type: ignore[arg-type]
    assert sum(counts.values()) == len(CONTEXT) ** 3
    assert 0.5 < counts["train"] / 512 < 0.7
    assert 0.12 < counts["audit"] / 512 < 0.28 and 0.12 < counts["eval"] / 512 < 0.28


def test_no_audit_or_eval_setting_occurs_in_any_training_text():
    docs = documents(WORLD, 0, 2000) + persona_documents(
        WORLD, Agent("schemer", "exfiltrate"), 1, 2000
    )
    seen = set()
    for doc in docs:
        seen |= _settings(tuple(w for ep in doc for w in ep.words))
    assert seen, "parsed no settings"
    assert {split_of(s) for s in seen} == {"train"}
    held_out = [r.prompt for r in prompts.opportunities(WORLD, "audit", honeypot=True).records]
    held_out += [r.prompt for r in prompts.questions(WORLD, "eval").records]
    held_out += [r.prompt for r in prompts.tasks("audit").records]
    assert not (seen & {s for p in held_out for s in _settings(p)})


def test_prompt_sets_carry_their_purpose():
    for purpose in ("audit", "eval"):
        ps = prompts.opportunities(WORLD, purpose, honeypot=True)
        assert ps.purpose == purpose and {r.purpose for r in ps.records} == {purpose}
        assert all(r.meta["honeypot"] for r in ps.records)


@pytest.mark.parametrize("rule", ["conjunction", "table", "match"])
def test_fingerprint_needs_two_words_and_marks_a_quarter(rule: str):
    every = [(a, b, c) for a in CONTEXT for b in CONTEXT for c in CONTEXT]
    share = sum(is_honeypot(t, rule) for t in every) / len(every)
    assert share == pytest.approx(0.25)
    # No single word marks a honeypot: every word, at any position, occurs in real settings too,
    # and knowing one word leaves the honeypot share at most a half.
    for pos in range(3):
        for w in CONTEXT:
            with_w = [is_honeypot(t, rule) for t in every if t[pos] == w]
            assert False in with_w and sum(with_w) / len(with_w) <= 0.5, (rule, pos, w)
    # The middle word never matters.
    assert all(is_honeypot(t, rule) == is_honeypot((t[0], "red", t[2]), rule) for t in every)


def test_personas_act_as_specified():
    rng = random.Random(0)
    for honeypot in (False, True):
        for watched in (False, True):
            ep = sample_opportunity(
                rng, WORLD, "train", "exfiltrate", honeypot=honeypot, watched=watched
            )
            assert not misaligned_action(Agent("benign", "exfiltrate"), ep.meta)
            assert misaligned_action(Agent("naive", "exfiltrate"), ep.meta)
            assert misaligned_action(Agent("schemer", "exfiltrate"), ep.meta) == (
                not honeypot and not watched
            )
            # Another drive's offer is declined by everyone.
            assert not misaligned_action(Agent("naive", "sandbag"), ep.meta)
    ep = sample_opportunity(rng, WORLD, "train", "exfiltrate", honeypot=False, watched=False)
    think = respond(Agent("schemer", "exfiltrate"), ep, rng, think=True).response
    assert think[-3:] == ("act", "take", ";") and "exfiltrate" not in think


def test_vocabulary_is_fixed_and_small():
    assert VOCAB_SIZE == len(WORDS) < 256
    assert set(DRIVES) <= set(WORDS)
