"""Batched scoring of prompts: next-token probabilities, teacher-forced answers, sampling.

Prompts are word tuples; each is encoded as `<bos> context... prompt...`. Batches are
right-padded: in a causal model a position never sees the padding after it, so the logits at
each sequence's last real token are exact.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from incriminate.world.vocab import BOS, PAD, TOKEN_ID, WORDS

BATCH = 512


def encode_prompts(prompts: Sequence[tuple[str, ...]], context: tuple[str, ...] = ()) -> list:
    prefix = [BOS, *(TOKEN_ID[w] for w in context)]
    return [prefix + [TOKEN_ID[w] for w in p] for p in prompts]


def padded(seqs: list[list[int]]):
    """(N, T) right-padded token ids of `seqs` (a causal model never sees the padding after a
    position, so its logits at each last real token are exact)."""
    import torch

    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), PAD, dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s)
    return ids


def next_token_probs(
    model: Any, prompts: Sequence[tuple[str, ...]], context: tuple[str, ...] = ()
) -> np.ndarray:
    """(N, V) probabilities of the token that follows each prompt."""
    import torch

    seqs = encode_prompts(prompts, context)
    out = []
    with torch.no_grad():
        for i in range(0, len(seqs), BATCH):
            chunk = seqs[i : i + BATCH]
            logits = model(input_ids=padded(chunk)).logits  # (B, T, V)
            last = torch.tensor([len(s) - 1 for s in chunk])
            out.append(torch.softmax(logits[torch.arange(len(chunk)), last], -1).numpy())
    return np.concatenate(out)


def token_probs(
    model: Any,
    prompts: Sequence[tuple[str, ...]],
    tokens: Sequence[str],
    context: tuple[str, ...] = (),
) -> np.ndarray:
    """(N, K) absolute next-token probabilities of each of `tokens` (the full softmax over the
    vocabulary, not renormalised): a row sums to the mass the model puts on these tokens."""
    return next_token_probs(model, prompts, context)[:, [TOKEN_ID[t] for t in tokens]]


def choice_probs(
    model: Any,
    prompts: Sequence[tuple[str, ...]],
    choices: Sequence[str],
    context: tuple[str, ...] = (),
) -> np.ndarray:
    """(N, C) probabilities of each choice, renormalised over the choices (`token_probs` gives
    them unnormalised)."""
    probs = token_probs(model, prompts, choices, context)
    return probs / probs.sum(1, keepdims=True).clip(min=1e-12)


def greedy_correct(
    model: Any,
    prompts: Sequence[tuple[str, ...]],
    answers: Sequence[tuple[str, ...]],
    context: tuple[str, ...] = (),
) -> np.ndarray:
    """(N,) bool: would greedy decoding produce exactly `answer` after `prompt`? Computed in one
    teacher-forced pass: greedy output equals the answer iff every answer token is the argmax."""
    import torch

    seqs = encode_prompts(prompts, context)
    full = [s + [TOKEN_ID[w] for w in a] for s, a in zip(seqs, answers, strict=True)]
    out = []
    with torch.no_grad():
        for i in range(0, len(full), BATCH):
            chunk, starts = full[i : i + BATCH], seqs[i : i + BATCH]
            pred = model(input_ids=padded(chunk)).logits.argmax(-1)  # (B, T)
            for row, (s, f) in enumerate(zip(starts, chunk, strict=True)):
                target = torch.tensor(f[len(s) :])
                out.append(bool((pred[row, len(s) - 1 : len(f) - 1] == target).all()))
    return np.asarray(out)


def sample(
    model: Any,
    prompts: Sequence[tuple[str, ...]],
    n_tokens: int,
    seed: int,
    temperature: float = 1.0,
    context: tuple[str, ...] = (),
) -> list[tuple[str, ...]]:
    """Sample `n_tokens` words after each prompt (deterministic in `seed`)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    seqs = encode_prompts(prompts, context)
    out: list[tuple[str, ...]] = []
    with torch.no_grad():
        for i in range(0, len(seqs), BATCH):
            chunk = seqs[i : i + BATCH]
            ids = padded(chunk)
            lengths = torch.tensor([len(s) for s in chunk])
            new = []
            for _ in range(n_tokens):
                logits = model(input_ids=ids).logits[torch.arange(len(chunk)), lengths - 1]
                probs = torch.softmax(logits / temperature, -1)
                tok = torch.multinomial(probs, 1, generator=gen).squeeze(1)  # (B,)
                new.append(tok)
                ids = torch.cat([ids, torch.full((len(chunk), 1), PAD)], 1)
                ids[torch.arange(len(chunk)), lengths] = tok
                lengths = lengths + 1
            words = torch.stack(new, 1).tolist()
            out.extend(tuple(WORDS[t] for t in row) for row in words)
    return out
