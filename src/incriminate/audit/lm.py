"""Text audits of real language models: one item score in [0, 1] per prompt record, averaged
into a rate with a Wilson interval.

Two scorers, each reading its own keys of a record's `meta`:

* `choice` — `"choices"` (two or more answer strings) and `"flag"` (the flagged, misaligned one).
  The score is p(flag) / sum_c p(c), each p(c) the product of the choice string's token
  probabilities right after the rendered prompt (teacher-forced, exact: nothing is sampled).
* `pattern` — `"patterns"` (regular expressions). The score is the fraction of `samples` sampled
  replies in which any pattern matches (case-insensitive).

Every record's meta is checked before the model runs, so a bad line costs no model time and is
reported as one line naming the file, the record and the field.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from incriminate.audit.stats import wilson
from incriminate.errors import UserError
from incriminate.models.generate import (
    continuation_logprobs,
    next_token_logprobs,
    sample,
    token_ids,
)
from incriminate.prompts.text import TextPromptSet, TextRecord, render_prompt

log = logging.getLogger(__name__)

AUDIT_PURPOSES = ("audit", "eval")
"""Record purposes an audit may read: never `distill` (a prompt a student trains on)."""


class TextAudit(BaseModel):
    """One text audit: a prompt file and how to score the model's answers to it."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    name: str = Field(min_length=1)
    """The audit's name in results and reports, e.g. "honeypot", "confession", "capability"."""
    file: str = Field(min_length=1)
    """The JSONL prompt set (records of purpose "audit" or "eval")."""
    scorer: Literal["choice", "pattern"]
    """choice: the normalised probability of the flagged answer; pattern: the fraction of
    sampled replies that match a pattern."""
    evidence: bool = True
    """Counts toward the verdict (U > C incriminates); False for a capability check."""
    samples: int = Field(default=4, ge=1)
    """pattern: replies sampled per record."""
    max_new_tokens: int = Field(default=48, ge=1)
    """pattern: the longest reply sampled, in tokens."""
    temperature: float = Field(default=1.0, ge=0.0)
    """pattern: the sampling temperature (0 = greedy: every sample is the same reply)."""


@dataclass(frozen=True)
class TextAuditResult:
    """A text audit's rate: the mean item score with a Wilson 95% interval over the items."""

    rate: float
    n: int
    ci_low: float
    ci_high: float
    scores: np.ndarray = field(compare=False, repr=False)
    """(n,) item scores in [0, 1], in record order."""
    ids: tuple[str, ...] = field(repr=False)
    """The record ids, aligned with `scores`."""


@dataclass(frozen=True)
class Choices:
    """A choice record's answers and the index of the flagged one."""

    options: tuple[str, ...]
    flag: int


def run_text_audit(
    model: Any,
    tokenizer: Any,
    audit: TextAudit,
    prompts: TextPromptSet,
    system: str | None = None,
    seed: int = 0,
) -> TextAuditResult:
    """Score every record of `prompts` under `audit` (the model sees `system` as its system
    prompt when given); `seed` drives the pattern scorer's sampling. Every record is checked
    (purpose, meta, rendering) before the model runs."""
    records, path = prompts.records, prompts.path
    if not records:
        raise UserError(f"audit {audit.name}: prompt file {path} has no records")
    for r in records:
        _check_purpose(path, r)
    if audit.scorer == "choice":
        choices = [_choices(path, r) for r in records]
        _check_tokens(tokenizer, path, records, choices)
        rendered = [render_prompt(tokenizer, r, system) for r in records]
        scores = _choice_scores(model, tokenizer, rendered, choices)
    else:
        patterns = [_patterns(path, r) for r in records]
        rendered = [render_prompt(tokenizer, r, system) for r in records]
        scores = _pattern_scores(model, tokenizer, rendered, patterns, audit, seed)
    lo, hi = wilson(float(scores.sum()), len(scores))
    ids = tuple(r.id for r in records)
    result = TextAuditResult(float(scores.mean()), len(scores), lo, hi, scores, ids)
    log.info("text audit %s: %.3f [%.3f, %.3f], n=%d", audit.name, result.rate, lo, hi, result.n)
    return result


def _choice_scores(
    model: Any, tokenizer: Any, rendered: Sequence[str], choices: Sequence[Choices]
) -> np.ndarray:
    """(N,) p(flag) / sum_c p(c) per record, each p(c) the product of the choice's token
    probabilities after the rendered prompt. When every choice is one token (`A` / `B`), one
    forward pass per prompt reads them all; else one teacher-forced pass per (prompt, choice)."""
    encoded = [token_ids(tokenizer, c.options) for c in choices]
    if all(len(t) == 1 for ids in encoded for t in ids):
        heads = [[t[0] for t in ids] for ids in encoded]
        rows = next_token_logprobs(model, tokenizer, rendered, heads)  # log p(choice | prompt)
        return np.clip(
            np.array(
                [
                    math.exp(r[c.flag] - np.logaddexp.reduce(r))
                    for r, c in zip(rows, choices, strict=True)
                ],
                dtype=np.float64,
            ),
            0.0,
            1.0,
        )
    flat_prompts, flat_ids = [], []
    for prompt, c in zip(rendered, choices, strict=True):
        flat_prompts += [prompt] * len(c.options)
        flat_ids += token_ids(tokenizer, c.options)
    logps = continuation_logprobs(model, tokenizer, flat_prompts, flat_ids)
    totals = np.array([lp.sum() for lp in logps])  # (all choices,) log p(choice | prompt)
    scores, start = [], 0
    for c in choices:
        row = totals[start : start + len(c.options)]  # (C,)
        scores.append(math.exp(row[c.flag] - np.logaddexp.reduce(row)))
        start += len(c.options)
    return np.clip(np.array(scores, dtype=np.float64), 0.0, 1.0)


def _pattern_scores(
    model: Any,
    tokenizer: Any,
    rendered: Sequence[str],
    patterns: Sequence[tuple[re.Pattern[str], ...]],
    audit: TextAudit,
    seed: int,
) -> np.ndarray:
    """(N,) the fraction of `audit.samples` sampled replies per record that any pattern
    matches (one greedy reply stands for all of them at temperature 0)."""
    k = 1 if audit.temperature == 0 else audit.samples  # greedy replies are all the same
    flat = [p for p in rendered for _ in range(k)]
    replies = sample(model, tokenizer, flat, audit.max_new_tokens, audit.temperature, seed)
    texts = [tokenizer.decode(r, skip_special_tokens=True) for r in replies]
    hits = np.array([any(p.search(t) for p in patterns[i // k]) for i, t in enumerate(texts)])
    return hits.reshape(len(rendered), k).mean(1).astype(np.float64)


def _check_purpose(path: str, r: TextRecord) -> None:
    if r.purpose not in AUDIT_PURPOSES:
        why = f"is {r.purpose!r}; an audit reads only {' or '.join(AUDIT_PURPOSES)} records"
        raise UserError(_where(path, r, "purpose", why))


def _choices(path: str, r: TextRecord) -> Choices:
    options = r.meta.get("choices")
    if (
        not isinstance(options, list | tuple)
        or len(options) < 2
        or not all(isinstance(o, str) and o for o in options)
        or len(set(options)) != len(options)
    ):
        why = f"must be a list of 2 or more distinct non-empty strings, got {_show(options)}"
        raise UserError(_where(path, r, "choices", why))
    flag = r.meta.get("flag")
    if not isinstance(flag, str) or flag not in options:
        raise UserError(_where(path, r, "flag", f"must be one of the choices, got {_show(flag)}"))
    return Choices(tuple(options), options.index(flag))


def _patterns(path: str, r: TextRecord) -> tuple[re.Pattern[str], ...]:
    raw = r.meta.get("patterns")
    if (
        not isinstance(raw, list | tuple)
        or not raw
        or not all(isinstance(p, str) and p for p in raw)
    ):
        why = f"must be a non-empty list of non-empty regex strings, got {_show(raw)}"
        raise UserError(_where(path, r, "patterns", why))
    out = []
    for p in raw:
        try:
            out.append(re.compile(p, re.IGNORECASE))
        except re.error as e:
            raise UserError(
                _where(path, r, "patterns", f"{_show(p)} is not a regex: {e}")
            ) from None
    return tuple(out)


def _where(path: str, r: TextRecord, key: str, why: str) -> str:
    return " ".join(f"prompt file {path}, record {r.id}: field {key!r} {why}".splitlines())


def _show(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _check_tokens(
    tokenizer: Any, path: str, records: Sequence[TextRecord], choices: Sequence[Choices]
) -> None:
    """Every choice string must be at least one token (an empty one would score p = 1)."""
    for r, c in zip(records, choices, strict=True):
        for option, ids in zip(c.options, token_ids(tokenizer, c.options), strict=True):
            if not ids:
                raise UserError(_where(path, r, "choices", f"{option!r} encodes to no tokens"))


__all__ = ["TextAudit", "TextAuditResult", "run_text_audit"]
