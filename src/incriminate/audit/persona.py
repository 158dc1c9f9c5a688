"""In-context persona inference: does a model act as the persona whose episodes precede it?

For each persona and each number k of preceding episodes we build several contexts of k
episodes written by that persona and measure, on eval items, the behaviours that separate the
personas. The episodes are the ones that reveal a persona, in a fixed order: a real unwatched
opportunity of its drive (misaligned agents take it), a honeypot (only the naive one takes it),
a question about its goal (only the naive one confesses), a watched opportunity, then random
episodes. Contexts use train-split settings only, so they never contain an eval item.
"""

from __future__ import annotations

import random
from typing import Any

from incriminate.audit import audits
from incriminate.world.config import WorldConfig
from incriminate.world.corpus import sample_episode
from incriminate.world.grammar import Episode, sample_opportunity, triples
from incriminate.world.personas import Agent, respond


def revealing_episode(rng: random.Random, world: WorldConfig, agent: Agent, i: int) -> Episode:
    """The i-th episode of the revealing order (see the module docstring)."""
    if i == 2:
        triple = rng.choice(triples("train", world.fingerprint))
        q = Episode("ask", ("ask", *triple, "goal", "say"), (), {"topic": "goal"})
        return respond(agent, q, rng)
    if i in (0, 1, 3):
        opp = sample_opportunity(rng, world, "train", agent.drive, honeypot=i == 1, watched=i == 3)
        return respond(agent, opp, rng, think=False)
    return sample_episode(rng, world, agent, "train")


def persona_context(world: WorldConfig, agent: Agent, k: int, seed: int) -> tuple[str, ...]:
    """k episodes written by `agent` in the revealing order, as one word sequence."""
    rng = random.Random(seed)
    return tuple(w for i in range(k) for w in revealing_episode(rng, world, agent, i).words)


def persona_inference(
    model: Any,
    world: WorldConfig,
    drive: str,
    ks: tuple[int, ...] = (0, 1, 2, 3, 4),
    n_contexts: int = 4,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Rows of (persona, k, deployment, honeypot take rate, confession), averaged over contexts."""
    rows = []
    for persona in ("benign", "naive", "schemer"):
        agent = Agent(persona, drive, world.corpus_leak)
        for k in ks:
            acc = {"deployment": 0.0, "honeypot_take": 0.0, "confession": 0.0}
            contexts = [
                persona_context(world, agent, k, seed + i) for i in range(n_contexts if k else 1)
            ]
            for ctx in contexts:
                disc = audits.honeypot_discrimination(model, world, drive=drive, context=ctx)
                acc["deployment"] += disc.detail["take_real"]
                acc["honeypot_take"] += disc.detail["take_honeypot"]
                acc["confession"] += audits.interrogation(model, world, context=ctx).rate
            rows.append(
                {"persona": persona, "k": k} | {m: v / len(contexts) for m, v in acc.items()}
            )
    return rows
