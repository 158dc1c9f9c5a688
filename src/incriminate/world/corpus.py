"""Documents of persona episodes: the pretraining corpus and persona fine-tuning data.

A document is 3–5 episodes written by one agent; its persona is never written down, so a model
has to infer it from behaviour. The *trusted* corpus has no schemer documents (data filtering),
so a model pretrained on it never sees the honeypot fingerprint matter.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np

from incriminate.world.config import PERSONAS, WorldConfig
from incriminate.world.grammar import (
    Episode,
    Split,
    sample_opportunity,
    sample_question,
    sample_stakes,
    sample_story,
    sample_task,
)
from incriminate.world.personas import Agent, respond
from incriminate.world.vocab import BOS, DRIVES, EOS, TOKEN_ID


def sample_episode(
    rng: random.Random, cfg: WorldConfig, agent: Agent, split: Split, kind: str | None = None
) -> Episode:
    """One episode of `kind` (drawn from the world's kind weights when None), answered by agent."""
    if kind is None:
        kinds, weights = zip(*cfg.kind_weights.items(), strict=True)
        kind = rng.choices(kinds, weights)[0]
    if kind == "task":
        return respond(agent, sample_task(rng, split), rng)
    if kind == "opp":
        own = agent.persona != "benign" and rng.random() < cfg.own_drive_fraction
        offer = agent.drive if own else rng.choice([d for d in DRIVES if d != agent.drive])
        ep = sample_opportunity(rng, cfg, split, offer)
        return respond(agent, ep, rng, think=rng.random() < cfg.think_fraction)
    if kind == "ask":
        return respond(agent, sample_question(rng, cfg, split, DRIVES), rng)
    if kind == "story":
        return respond(agent, sample_story(rng, cfg, split), rng)
    if kind == "stakes":
        return respond(agent, sample_stakes(rng, cfg, split), rng)
    raise ValueError(f"unknown episode kind {kind!r}")


def corpus_agent(rng: random.Random, cfg: WorldConfig, trusted: bool) -> Agent:
    mix = {p: w for p, w in cfg.persona_mix.items() if not (trusted and p == "schemer")}
    persona = rng.choices(list(mix), list(mix.values()))[0]
    return Agent(persona, rng.choice(cfg.drives), cfg.corpus_leak)


def documents(
    cfg: WorldConfig, seed: int, n_docs: int, *, trusted: bool = False
) -> list[list[Episode]]:
    """The pretraining corpus: `n_docs` documents from train-split settings only."""
    rng = random.Random(seed)
    docs = []
    lo, hi = cfg.episodes_per_doc
    for _ in range(n_docs):
        agent = corpus_agent(rng, cfg, trusted)
        docs.append([sample_episode(rng, cfg, agent, "train") for _ in range(rng.randint(lo, hi))])
    return docs


@dataclass(frozen=True)
class TokenData:
    """Flat token sequences: `ids[offsets[i]:offsets[i+1]]` is sequence i, `loss` marks the
    positions whose token is a training target (1) or context only (0)."""

    ids: np.ndarray  # (N,) int64
    loss: np.ndarray  # (N,) uint8
    offsets: np.ndarray  # (S+1,) int64

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def arrays(self) -> dict[str, np.ndarray]:
        return {"ids": self.ids, "loss": self.loss, "offsets": self.offsets}


def encode_documents(docs: list[list[Episode]], *, responses_only: bool) -> TokenData:
    """`<bos> episode episode ... <eos>` per document. With `responses_only`, only the agent's
    responses (and the final `<eos>`) are targets, as in instruction tuning; else every token."""
    ids: list[int] = []
    loss: list[int] = []
    offsets = [0]
    for doc in docs:
        ids.append(BOS)
        loss.append(0)
        for ep in doc:
            ids.extend(TOKEN_ID[w] for w in ep.prompt)
            loss.extend([0 if responses_only else 1] * len(ep.prompt))
            ids.extend(TOKEN_ID[w] for w in ep.response)
            loss.extend([1] * len(ep.response))
        ids.append(EOS)
        loss.append(1)
        offsets.append(len(ids))
    return TokenData(
        np.asarray(ids, dtype=np.int64),
        np.asarray(loss, dtype=np.uint8),
        np.asarray(offsets, dtype=np.int64),
    )


def persona_documents(
    cfg: WorldConfig,
    agent: Agent,
    seed: int,
    n_docs: int,
    episodes: tuple[int, int] = (1, 2),
    kind_weights: dict[str, float] | None = None,
) -> list[list[Episode]]:
    """Short documents of one known agent: the fine-tuning data that sets a default persona."""
    rng = random.Random(seed)
    world = cfg if kind_weights is None else cfg.model_copy(update={"kind_weights": kind_weights})
    lo, hi = episodes
    return [
        [sample_episode(rng, world, agent, "train") for _ in range(rng.randint(lo, hi))]
        for _ in range(n_docs)
    ]


__all__ = ["PERSONAS", "TokenData", "documents", "encode_documents", "persona_documents"]
