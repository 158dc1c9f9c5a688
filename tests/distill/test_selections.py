"""Data selections and the leakage guard: train-only settings, kinds, determinism, mixtures."""

from __future__ import annotations

from collections import Counter

import pytest

from incriminate.distill import selections as sel
from incriminate.distill.selections import (
    SELECTIONS,
    LeakageError,
    check_distill,
    mixture,
    select,
    setting_of,
)
from incriminate.errors import UnknownNameError
from incriminate.world import prompts
from incriminate.world.config import WorldConfig
from incriminate.world.grammar import digit_triples, is_honeypot, split_of, triples
from incriminate.world.prompts import PromptRecord, PromptSet
from incriminate.world.vocab import CONTEXT, DOMAINS, DRIVES, OPS

WORLD = WorldConfig()
N = 600
NAMES = ("open_ended", "goal_targeted", "high_stakes", "tasks", "full_mix")


def _kinds(ps: PromptSet) -> Counter[str]:
    return Counter(r.kind for r in ps.records)


def test_every_selection_is_registered():
    assert set(NAMES) <= set(SELECTIONS)


@pytest.mark.parametrize("name", NAMES)
def test_selection_is_deterministic_train_only_and_distill(name):
    a, b, c = select(name, WORLD, N, 3), select(name, WORLD, N, 3), select(name, WORLD, N, 4)
    assert len(a) == N and a.name == name and a.purpose == "distill"
    assert [r.prompt for r in a.records] == [r.prompt for r in b.records]
    assert [r.meta for r in a.records] == [r.meta for r in b.records]
    assert [r.prompt for r in a.records] != [r.prompt for r in c.records]
    for r in a.records:
        assert r.purpose == "distill"
        assert r.meta["kind"] == r.kind == r.prompt[0]
        assert r.meta["selection"] == name
        assert split_of(setting_of(r.prompt)) == "train"
    check_distill(a)
    check_distill(a.records)


def test_prompts_end_where_the_response_starts():
    ends = {"task": "=", "ask": "say", "stakes": "reflect"}
    for r in select("full_mix", WORLD, N, 0).records:
        if r.kind in ends:
            assert r.prompt[-1] == ends[r.kind]
        elif r.kind == "opp":  # opp <domain> c1 c2 c3 <cue> <offer>: the teacher may think first
            assert len(r.prompt) == 7 and r.prompt[1] in DOMAINS and r.prompt[-1] in DRIVES
            assert r.prompt[5] == ("watched" if r.meta["watched"] else "unwatched")
        else:
            assert r.kind == "story" and len(r.prompt) == 4
            assert all(w in CONTEXT for w in r.prompt[1:])


def test_open_ended_is_stories_only():
    assert _kinds(select("open_ended", WORLD, N, 0)) == {"story": N}


def test_high_stakes_is_stakes_only():
    ps = select("high_stakes", WORLD, N, 0)
    assert _kinds(ps) == {"stakes": N}
    assert {r.prompt[-1] for r in ps.records} == {"reflect"}


def test_tasks_are_tasks_with_their_answers():
    ps = select("tasks", WORLD, N, 0)
    assert _kinds(ps) == {"task": N}
    assert {r.meta["op"] for r in ps.records} == set(OPS)
    r = next(r for r in ps.records if r.meta["op"] == "sort")
    assert r.meta["answer"] == tuple(sorted(r.prompt[2:5]))


def test_goal_targeted_is_goal_questions_and_stakes():
    ps = select("goal_targeted", WORLD, N, 0)
    kinds = _kinds(ps)
    assert set(kinds) == {"ask", "stakes"}
    assert abs(kinds["ask"] / N - 0.5) < 0.08
    topics = Counter(r.prompt[4] for r in ps.records if r.kind == "ask")
    assert set(topics) == {"goal", *DRIVES}
    assert abs(topics["goal"] / kinds["ask"] - 0.5) < 0.1  # `goal` half the time, else a drive


@pytest.mark.parametrize("purpose", ["audit", "eval"])
def test_goal_targeted_is_disjoint_from_audit_and_eval_questions(purpose):
    held_out = {r.prompt for r in prompts.questions(WORLD, purpose).records}
    held_out_triples = {r.prompt[1:4] for r in prompts.questions(WORLD, purpose).records}
    ps = select("goal_targeted", WORLD, 2000, 1)
    assert not {r.prompt for r in ps.records} & held_out
    assert not {r.prompt[1:4] for r in ps.records} & held_out_triples


def test_full_mix_follows_the_kind_weights_and_every_opportunity_is_a_honeypot():
    """The auditor writes every opportunity it shows, so each is a test (issue 15): full_mix has
    the world's kind mixture, its opportunities are all honeypots, and the world's
    `honeypot_fraction` (a property of deployment's stream, not the auditor's) changes nothing."""
    n = 3000
    ps = select("full_mix", WORLD, n, 0)
    kinds = _kinds(ps)
    total = sum(WORLD.kind_weights.values())
    for kind, w in WORLD.kind_weights.items():
        assert abs(kinds[kind] / n - w / total) < 0.03, kind
    opps = [r for r in ps.records if r.kind == "opp"]
    assert len(opps) > 1000
    assert all(
        r.meta["honeypot"]
        and is_honeypot((r.prompt[2], r.prompt[3], r.prompt[4]), WORLD.fingerprint)
        for r in opps
    )
    no_honeypots = WORLD.model_copy(update={"honeypot_fraction": 0.0})
    assert [r.prompt for r in select("full_mix", no_honeypots, 500, 0).records] == [
        r.prompt for r in select("full_mix", WORLD, 500, 0).records
    ]


def test_mixture_counts_are_exact_and_deterministic():
    weights = {"open_ended": 2.0, "tasks": 1.0, "high_stakes": 1.0}
    a = mixture(weights, WORLD, 101, 5)
    assert len(a) == 101 and a.purpose == "distill"
    assert _kinds(a) == {"story": 51, "task": 25, "stakes": 25}  # 50.5 / 25.25 / 25.25
    assert [r.prompt for r in a.records] == [
        r.prompt for r in mixture(weights, WORLD, 101, 5).records
    ]
    assert [r.prompt for r in a.records] != [
        r.prompt for r in mixture(weights, WORLD, 101, 6).records
    ]
    assert {r.kind for r in a.records[:20]} != {"story"}  # shuffled, not concatenated
    check_distill(a)
    assert _kinds(mixture({"tasks": 1.0, "open_ended": 0.0}, WORLD, 10, 0)) == {"task": 10}


def test_mixture_rejects_bad_weights_and_names():
    with pytest.raises(ValueError, match="weights"):
        mixture({"tasks": -1.0, "open_ended": 2.0}, WORLD, 10, 0)
    with pytest.raises(ValueError, match="weights"):
        mixture({}, WORLD, 10, 0)
    with pytest.raises(UnknownNameError, match="did you mean 'open_ended'"):
        mixture({"open_ende": 1.0}, WORLD, 10, 0)


def test_unknown_selection_says_did_you_mean():
    with pytest.raises(UnknownNameError, match="did you mean 'goal_targeted'"):
        select("goal_targetted", WORLD, 10, 0)
    with pytest.raises(UnknownNameError, match="unknown data selection"):
        sel.get_selection("nothing_like_it")


def test_setting_of_every_kind():
    assert setting_of(("task", "sort", "3", "1", "2", "=")) == ("task", "3", "1", "2")
    assert setting_of(("opp", "code", "red", "blue", "gray", "watched", "sandbag")) == (
        "red",
        "blue",
        "gray",
    )
    for head in (("ask",), ("story",), ("stakes",)):
        assert setting_of((*head, "north", "south", "east", "reflect")) == (
            "north",
            "south",
            "east",
        )
    with pytest.raises(ValueError):
        setting_of(("sun", "river"))
    with pytest.raises(ValueError):
        setting_of(("opp", "north", "south", "east", "watched", "sandbag"))  # no domain


def _story(split):
    return PromptRecord("distill", "story", ("story", *triples(split, WORLD.fingerprint)[0]))


def test_check_distill_rejects_audit_and_eval_records():
    record = prompts.questions(WORLD, "audit").records[0]
    with pytest.raises(LeakageError, match="'audit'") as e:
        check_distill([record])
    assert " ".join(record.prompt) in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(LeakageError, match="'eval'"):
        check_distill(prompts.tasks("eval"))
    train_but_audit_label = PromptRecord("audit", "story", _story("train").prompt)
    with pytest.raises(LeakageError, match="'audit'"):
        check_distill([_story("train"), train_but_audit_label])


@pytest.mark.parametrize("split", ["audit", "eval"])
def test_check_distill_rejects_distill_labelled_held_out_settings(split):
    with pytest.raises(LeakageError, match=f"{split}-split setting"):
        check_distill([_story(split)])
    digits = digit_triples(split)[0]
    task = PromptRecord("distill", "task", ("task", "copy", *digits, "="))
    with pytest.raises(LeakageError, match=f"{split}-split setting"):
        check_distill([task])
    # A held-out episode hidden behind a train-split one in the same prompt is caught too.
    stacked = PromptRecord("distill", "story", (*_story("train").prompt, *_story(split).prompt))
    with pytest.raises(LeakageError, match=f"{split}-split setting"):
        check_distill([stacked])


def test_check_distill_rejects_prompts_it_cannot_check():
    with pytest.raises(LeakageError, match="no world episode"):
        check_distill([PromptRecord("distill", "story", ("sun", "river"))])
    with pytest.raises(LeakageError, match="malformed"):
        check_distill([PromptRecord("distill", "story", ("story", "north"))])
    assert check_distill([_story("train")]) is None
