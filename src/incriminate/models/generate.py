"""Batched sampling and teacher-forced scoring of text prompts on Hugging Face causal LMs.

Prompts are already-rendered strings (chat templates hold their own BOS), encoded with
`add_special_tokens=False` and *left*-padded with an attention mask, so every row's last real
token sits at the right edge of the batch: `generate` appends after it and a teacher-forced pass
reads the continuation's log-probabilities from the last columns. Position ids follow the mask
(cumsum(mask) - 1), so a padded row scores the same as that row alone.

Sampling uses `generate` with `max_new_tokens` only, never `min_new_tokens`: that suppresses EOS
and silently corrupts short answers (NOTES.md, Generation).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from torch import Tensor

log = logging.getLogger(__name__)


def pad_id(tokenizer: Any) -> int:
    """The tokenizer's pad token id, else its eos id (many causal LMs ship without a pad token)."""
    pad = tokenizer.pad_token_id
    if pad is None:
        pad = tokenizer.eos_token_id
    if pad is None:
        raise ValueError(f"tokenizer {tokenizer.name_or_path!r} has neither a pad nor an eos token")
    return int(pad)


def left_pad(seqs: Sequence[Sequence[int]], pad: int) -> tuple[Tensor, Tensor]:
    """(B, T) ids and (B, T) attention mask of `seqs`, left padded with `pad`."""
    import torch

    width = max((len(s) for s in seqs), default=0)
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        if s:
            ids[i, width - len(s) :] = torch.tensor(list(s), dtype=torch.long)
            mask[i, width - len(s) :] = 1
    return ids, mask


def token_ids(tokenizer: Any, texts: Sequence[str]) -> list[list[int]]:
    """The token ids of each text, without special tokens added (templates hold their own)."""
    return [list(ids) for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"]]


def encode_left(tokenizer: Any, texts: Sequence[str]) -> tuple[Tensor, Tensor]:
    """(B, T) ids and (B, T) attention mask of `texts`, left padded, `add_special_tokens=False`."""
    return left_pad(token_ids(tokenizer, texts), pad_id(tokenizer))


def stop_ids(model: Any, tokenizer: Any) -> set[int]:
    """The ids that end a reply: the tokenizer's eos and the model's generation eos id(s)."""
    stops = set()
    if tokenizer.eos_token_id is not None:
        stops.add(int(tokenizer.eos_token_id))
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if isinstance(eos, int):
        stops.add(eos)
    elif eos is not None:
        stops |= {int(e) for e in eos}
    return stops


def _device(model: Any) -> Any:
    return next(model.parameters()).device


def _until_stop(row: list[int], stops: set[int]) -> list[int]:
    """`row` up to its first stop id (excluded); the pad `generate` writes after it goes too."""
    for i, t in enumerate(row):
        if t in stops:
            return row[:i]
    return row


def sample(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    max_new_tokens: int,
    temperature: float,
    seed: int,
    batch_size: int = 16,
) -> list[list[int]]:
    """The new token ids after each prompt, up to (not including) the first eos.

    Greedy when `temperature == 0`: a prompt's ids then do not depend on its batch. Otherwise
    multinomial sampling at `temperature`, deterministic in `seed`: batch b (of `batch_size`
    prompts, in the given order) draws after `torch.manual_seed(seed + b)`.
    """
    import torch

    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    pad, stops, device = pad_id(tokenizer), stop_ids(model, tokenizer), _device(model)
    greedy = temperature == 0
    options: dict[str, Any] = {"do_sample": not greedy}
    if not greedy:
        options |= {"temperature": float(temperature), "top_k": 0, "top_p": 1.0}
    out: list[list[int]] = []
    with torch.inference_mode():
        for b, start in enumerate(range(0, len(prompts), batch_size)):
            ids, mask = encode_left(tokenizer, prompts[start : start + batch_size])  # (B, T)
            torch.manual_seed(seed + b)
            new = model.generate(
                input_ids=ids.to(device),
                attention_mask=mask.to(device),
                pad_token_id=pad,
                eos_token_id=sorted(stops) or None,
                max_new_tokens=max_new_tokens,
                **options,
            )[:, ids.shape[1] :]  # (B, new)
            out.extend(_until_stop(row, stops) for row in new.tolist())
    return out


def continuation_logprobs(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    continuations: Sequence[Sequence[int]],
    batch_size: int = 16,
) -> list[np.ndarray]:
    """Teacher-forced log p(continuation[t] | prompt + continuation[:t]) for each token of each
    continuation: one float64 array per prompt, of the continuation's length.

    Rows are batched by length (less padding) and returned in the given order.
    """
    if len(prompts) != len(continuations):
        raise ValueError(f"{len(prompts)} prompts but {len(continuations)} continuations")
    heads = token_ids(tokenizer, prompts)
    if any(not h for h in heads):
        raise ValueError("an empty prompt has no next-token distribution to score")
    full = [h + [int(t) for t in c] for h, c in zip(heads, continuations, strict=True)]
    order = sorted(range(len(full)), key=lambda i: len(full[i]))
    out: list[np.ndarray] = [np.zeros(0)] * len(full)
    pad = pad_id(tokenizer)
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        tails = [len(continuations[i]) for i in chunk]
        rows = _score_rows(model, [full[i] for i in chunk], tails, pad)
        for i, row in zip(chunk, rows, strict=True):
            out[i] = row
    return out


def _score_rows(model: Any, seqs: list[list[int]], tails: list[int], pad: int) -> list[np.ndarray]:
    """Log-probs of the last `tails[i]` tokens of each of `seqs`, in one forward pass."""
    import torch

    ids, mask = left_pad(seqs, pad)  # (B, T)
    keep = max(tails) + 1  # the logits at T-L-1 .. T-2 predict the last L tokens
    positions = (mask.cumsum(-1) - 1).clamp(min=0)  # (B, T)
    device = _device(model)
    with torch.inference_mode():
        logits = model(
            input_ids=ids.to(device),
            attention_mask=mask.to(device),
            position_ids=positions.to(device),
            logits_to_keep=keep,  # a model that ignores it returns every position: sliced below
        ).logits[:, -keep:-1]  # (B, L, V)
        targets = ids[:, ids.shape[1] - keep + 1 :].to(device)  # (B, L)
        out = []
        for i, n in enumerate(tails):  # float64 one row at a time: (n, V) stays small
            logp = torch.log_softmax(logits[i, keep - 1 - n :].double(), -1)  # (n, V)
            picked = logp.gather(-1, targets[i, keep - 1 - n :].unsqueeze(-1)).squeeze(-1)
            out.append(picked.cpu().numpy())  # (n,)
    return out


def next_token_logprobs(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    candidates: Sequence[Sequence[int]],
    batch_size: int = 16,
) -> list[np.ndarray]:
    """log p(token | prompt) of each candidate token of each prompt, from one forward pass per
    prompt (not one per candidate): a float64 array per prompt, in the candidates' order."""
    import torch

    if len(prompts) != len(candidates):
        raise ValueError(f"{len(prompts)} prompts but {len(candidates)} candidate lists")
    heads = token_ids(tokenizer, prompts)
    if any(not h for h in heads):
        raise ValueError("an empty prompt has no next-token distribution to score")
    order = sorted(range(len(heads)), key=lambda i: len(heads[i]))
    out: list[np.ndarray] = [np.zeros(0)] * len(heads)
    pad, device = pad_id(tokenizer), _device(model)
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        ids, mask = left_pad([heads[i] for i in chunk], pad)  # (B, T)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)  # (B, T)
        with torch.inference_mode():
            logits = model(
                input_ids=ids.to(device),
                attention_mask=mask.to(device),
                position_ids=positions.to(device),
                logits_to_keep=1,
            ).logits[:, -1]  # (B, V)
            for row, i in enumerate(chunk):
                logp = torch.log_softmax(logits[row].double(), -1)  # (V,)
                picked = logp[torch.tensor(list(candidates[i]), dtype=torch.long, device=device)]
                out[i] = picked.cpu().numpy()
    return out
