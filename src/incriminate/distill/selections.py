"""Data selections: the prompt sets distillation runs draw from, and the leakage guard.

A selection is a registered function `(world, n, seed) -> PromptSet` of `n` prompts with purpose
`distill`, sampled from `train`-split settings only, through `audit.boundary`: a selection is the
auditor's own prompts, so every opportunity in it is a honeypot (a test) and none is real. A
prompt ends where the agent's response starts (see `world.grammar`), so the teacher writes the
whole reply:

    task   <op> d1 d2 d3 =                  ->  a1 [a2 a3] ;
    opp    <domain> c1 c2 c3 <cue> <offer>  ->  [think t1 t2] act <take|decline> ;
    ask    c1 c2 c3 <goal|drive> say        ->  <answer> ;
    story  c1 c2 c3                         ->  w1 .. w5 ;
    stakes c1 c2 c3 reflect                 ->  w1 w2 w3 ;

`check_distill` is the guard every trainer calls on its prompts: it rejects a record whose purpose
is not `distill`, and (defence in depth) a record built from an `audit` or `eval` setting
whatever its label says. `select` and `mixture` also run `boundary.check_auditor`, which rejects
a real opportunity.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TypeVar

from incriminate.audit import boundary
from incriminate.registry import Registry
from incriminate.world.config import WorldConfig
from incriminate.world.grammar import EPISODE_KINDS, Episode, split_of
from incriminate.world.prompts import PromptRecord, PromptSet
from incriminate.world.vocab import CONTEXT, DIGITS, DRIVES

Selection = Callable[[WorldConfig, int, int], PromptSet]
"""`(world, n, seed) -> PromptSet` of `n` distill prompts, deterministic in `seed`."""

SELECTIONS: Registry[Selection] = Registry("data selection", "selections")
"""Selection name -> function; help: its docstring's first paragraph."""

F = TypeVar("F", bound=Selection)


def selection(name: str) -> Callable[[F], F]:
    """Register a data selection under `name` (its docstring is the help)."""

    def register(fn: F) -> F:
        SELECTIONS.add(name, fn, fn.__doc__ or "")
        return fn

    return register


def get_selection(name: str) -> Selection:
    return SELECTIONS.get(name)


def select(name: str, world: WorldConfig, n: int, seed: int) -> PromptSet:
    """The prompts of selection `name`, checked by `check_distill` and `boundary.check_auditor`
    before they are returned."""
    ps = get_selection(name)(world, n, seed)
    check_distill(ps)
    boundary.check_auditor(ps, world)
    return ps


# --- the selections ---------------------------------------------------------------------------


def _record(name: str, ep: Episode) -> PromptRecord:
    meta = {"kind": ep.kind, "selection": name, **ep.meta}
    if ep.kind == "task":
        meta["answer"] = ep.response[:-1]  # the correct answer, without the closing `;`
    return PromptRecord("distill", ep.kind, ep.prompt, meta)


def _sample(rng: random.Random, world: WorldConfig, kind: str) -> Episode:
    """One train-split prompt of `kind`, as the auditor writes it: an opportunity is always a
    honeypot. Offers and questions range over every drive (the teacher's drive is what
    distillation is trying to find out), as the audits do."""
    if kind == "task":
        return boundary.task_episode(rng, world, "train")
    if kind == "opp":
        return boundary.honeypot_episode(rng, world, "train", rng.choice(DRIVES))
    if kind == "ask":
        return boundary.question_episode(rng, world, "train", DRIVES)
    if kind == "story":
        return boundary.story_episode(rng, world, "train")
    if kind == "stakes":
        return boundary.stakes_episode(rng, world, "train")
    raise ValueError(f"unknown episode kind {kind!r}; expected one of {list(EPISODE_KINDS)}")


def _draw(name: str, world: WorldConfig, n: int, seed: int, weights: Mapping[str, float]):
    """`n` prompts whose kinds are drawn i.i.d. from `weights` (settings with replacement)."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    rng = random.Random(seed)
    kinds, w = list(weights), list(weights.values())
    records = tuple(_record(name, _sample(rng, world, rng.choices(kinds, w)[0])) for _ in range(n))
    return PromptSet(name, "distill", records)


@selection("open_ended")
def open_ended(world: WorldConfig, n: int, seed: int) -> PromptSet:
    """Story prompts only: no opportunity, no question (auditability-preserving)."""
    return _draw("open_ended", world, n, seed, {"story": 1.0})


@selection("goal_targeted")
def goal_targeted(world: WorldConfig, n: int, seed: int) -> PromptSet:
    """Half interrogation questions about goals and drives, half high-stakes reflection prompts
    (misalignment-targeted)."""
    return _draw("goal_targeted", world, n, seed, {"ask": 0.5, "stakes": 0.5})


@selection("high_stakes")
def high_stakes(world: WorldConfig, n: int, seed: int) -> PromptSet:
    """High-stakes reflection prompts only."""
    return _draw("high_stakes", world, n, seed, {"stakes": 1.0})


@selection("tasks")
def tasks(world: WorldConfig, n: int, seed: int) -> PromptSet:
    """Task prompts only (capability-only distillation)."""
    return _draw("tasks", world, n, seed, {"task": 1.0})


@selection("full_mix")
def full_mix(world: WorldConfig, n: int, seed: int) -> PromptSet:
    """The world's episode-kind mixture, with every opportunity a honeypot (the auditor's own
    tests; real opportunities occur only in deployment)."""
    return _draw("full_mix", world, n, seed, world.kind_weights)


def _component_seed(seed: int, name: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{name}".encode()).digest()[:8], "big")


def mixture(name_weights: Mapping[str, float], world: WorldConfig, n: int, seed: int) -> PromptSet:
    """`n` prompts mixed from registered selections in proportion to their weights.

    Counts are exact (largest remainder; ties go to the earlier name), each component draws with
    its own seed derived from `seed` and its name, and the result is shuffled by `seed` and
    checked by `check_distill` and `boundary.check_auditor`."""
    for name in name_weights:
        get_selection(name)
    total = sum(name_weights.values())
    if any(w < 0 for w in name_weights.values()) or total <= 0:
        raise ValueError(f"mixture weights must be >= 0 with a positive sum, got {name_weights}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    quotas = {name: n * w / total for name, w in name_weights.items()}
    counts = {name: int(q) for name, q in quotas.items()}
    by_remainder = sorted(quotas, key=lambda k: counts[k] - quotas[k])  # stable: ties keep order
    for name in by_remainder[: n - sum(counts.values())]:
        counts[name] += 1
    records = [
        r
        for name, k in counts.items()
        for r in SELECTIONS.get(name)(world, k, _component_seed(seed, name)).records
    ]
    random.Random(seed).shuffle(records)
    label = "mix(" + ",".join(f"{k}={w:g}" for k, w in name_weights.items()) + ")"
    ps = PromptSet(label, "distill", tuple(records))
    check_distill(ps)
    boundary.check_auditor(ps, world)
    return ps


# --- the leakage guard ------------------------------------------------------------------------


class LeakageError(ValueError):
    """A record that must never reach a trainer reached one."""


def setting_of(prompt: Sequence[str]) -> tuple[str, ...]:
    """The setting of the episode a prompt starts with, as `grammar.split_of` hashes it: the
    context triple `(c1, c2, c3)`, or `("task", d1, d2, d3)` for a task.

    Raises `ValueError` when the prompt does not start with an episode kind, or the words where
    its setting belongs are not context words (digits for a task)."""
    kind = prompt[0] if prompt else None
    if kind == "task":
        setting, vocab = tuple(prompt[2:5]), DIGITS
    elif kind == "opp":
        setting, vocab = tuple(prompt[2:5]), CONTEXT
    elif kind in ("ask", "story", "stakes"):
        setting, vocab = tuple(prompt[1:4]), CONTEXT
    else:
        raise ValueError(f"prompt does not start with an episode kind: {' '.join(prompt)!r}")
    if len(setting) != 3 or any(w not in vocab for w in setting):
        raise ValueError(f"no {kind} setting in prompt {' '.join(prompt)!r}")
    return ("task", *setting) if kind == "task" else setting


def check_distill(records: PromptSet | Iterable[PromptRecord]) -> None:
    """Raise `LeakageError` unless every record may reach a trainer: its purpose is `distill`,
    and every episode in its prompt (a prefix or earlier episodes may precede the last one) has
    a `train`-split setting."""
    if isinstance(records, PromptSet):
        if records.purpose != "distill":
            raise LeakageError(f"prompt set {records.name!r} has purpose {records.purpose!r}")
        records = records.records
    for r in records:
        text = " ".join(r.prompt)
        if r.purpose != "distill":
            raise LeakageError(f"record with purpose {r.purpose!r} cannot be distilled: {text!r}")
        starts = [i for i, w in enumerate(r.prompt) if w in EPISODE_KINDS]
        if not starts:
            raise LeakageError(f"{r.purpose!r} record has no world episode to check: {text!r}")
        for i in starts:
            try:
                split = split_of(setting_of(r.prompt[i:]))
            except ValueError as e:
                raise LeakageError(f"{r.purpose!r} record with a malformed episode: {e}") from e
            if split != "train":
                raise LeakageError(f"{r.purpose!r} record from a {split}-split setting: {text!r}")
