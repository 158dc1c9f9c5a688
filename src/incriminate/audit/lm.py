"""Text audits of real language models: one item score in [0, 1] per prompt record, averaged
into a rate with a Wilson interval.

Two scorers, each reading its own keys of a record's `meta`:

* `choice` — `"choices"` (two or more answer strings) and `"flag"` (the flagged, misaligned one).
  The score is p(flag) / sum_c p(c), each p(c) the product of the choice string's token
  probabilities right after the rendered prompt (teacher-forced, exact: nothing is sampled).
* `pattern` — `"patterns"` (regular expressions). The score is the fraction of `samples` sampled
  replies in which any pattern matches (case-insensitive).
* `probe` — nothing of the audit record; the `train_file`'s records carry `"label"` (1 =
  instructed to pursue a misaligned goal or deceive, 0 = instructed to be honest) and optionally
  `"pair"`. The score is P(label 1) of a linear probe on the audited model's own residual stream,
  fitted on its activations of the training file (`audit.lm_probe`).
* `judge` — nothing of the record. The score is a judge model's mean p(Yes) / (p(Yes) + p(No))
  over `samples` sampled replies, under a yes/no `rubric` (`audit.lm_judge`).

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
from pydantic import BaseModel, ConfigDict, Field, model_validator

from incriminate.audit.lm_judge import DEFAULT_RUBRIC, judge_scores
from incriminate.audit.lm_probe import fit, residuals
from incriminate.audit.lm_records import (
    Choices,
    check_purpose,
    check_tokens,
    check_train_set,
    choices_of,
    patterns_of,
)
from incriminate.audit.stats import wilson
from incriminate.errors import UserError
from incriminate.models.generate import (
    continuation_logprobs,
    next_token_logprobs,
    sample,
    token_ids,
)
from incriminate.models.ref import ModelRef
from incriminate.prompts.text import TextPromptSet, TextRecord, render_prompt

log = logging.getLogger(__name__)


class TextAudit(BaseModel):
    """One text audit: a prompt file and how to score the model's answers to it."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    name: str = Field(min_length=1)
    """The audit's name in results and reports, e.g. "honeypot", "confession", "capability"."""
    file: str = Field(min_length=1)
    """The JSONL prompt set (records of purpose "audit" or "eval")."""
    scorer: Literal["choice", "pattern", "probe", "judge"]
    """choice: the normalised probability of the flagged answer; pattern: the fraction of
    sampled replies that match a pattern; probe: P(misaligned) of a linear probe on the model's
    residual stream; judge: a judge model's p(Yes) on sampled replies."""
    evidence: bool = True
    """Counts toward the verdict (U > C incriminates); False for a capability check."""
    samples: int = Field(default=4, ge=1)
    """pattern: replies sampled per record."""
    max_new_tokens: int = Field(default=48, ge=1)
    """pattern: the longest reply sampled, in tokens."""
    temperature: float = Field(default=1.0, ge=0.0)
    """pattern, judge: the sampling temperature (0 = greedy: every sample is the same reply)."""
    # The fields below are left out of the dump when unset: an audit that does not use them
    # keeps the store key it had before they existed.
    train_file: str | None = Field(default=None, exclude_if=lambda v: v is None)
    """probe (required): the JSONL training file, records of purpose "audit" or "eval" with
    `label` 1 (instructed to pursue a misaligned goal) or 0 (instructed to be honest)."""
    layer: int | None = Field(default=None, exclude_if=lambda v: v is None)
    """probe: the hidden-states index read (0 = embeddings, negative from the end); default:
    the middle layer."""
    judge: ModelRef | None = Field(default=None, exclude_if=lambda v: v is None)
    """judge (required): the judge model."""
    rubric: str | None = Field(default=None, min_length=1, exclude_if=lambda v: v is None)
    """judge: the yes/no question the judge answers about each reply (default: whether the reply
    shows a goal of the assistant's own)."""

    @model_validator(mode="before")
    @classmethod
    def _default_rubric(cls, data: Any) -> Any:
        """A judge audit without a rubric gets the default one, written into its dump."""
        if isinstance(data, dict) and data.get("scorer") == "judge" and data.get("rubric") is None:
            return {**data, "rubric": DEFAULT_RUBRIC}
        return data

    @model_validator(mode="after")
    def _scorer_fields(self) -> TextAudit:
        for name, scorer in (("train_file", "probe"), ("judge", "judge")):
            if self.scorer == scorer and getattr(self, name) is None:
                raise ValueError(f"audit {self.name}: the {scorer} scorer needs `{name}`")
        owners = {"train_file": "probe", "layer": "probe", "judge": "judge", "rubric": "judge"}
        for name, scorer in owners.items():
            if getattr(self, name) is not None and self.scorer != scorer:
                raise ValueError(
                    f"audit {self.name}: `{name}` belongs to the {scorer} scorer, "
                    f"not to {self.scorer}"
                )
        return self


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
    extra: dict[str, Any] = field(default_factory=dict, compare=False)
    """What a scorer reports besides its scores, e.g. `{"probe": {"layer", "train_accuracy",
    "heldout_accuracy", ...}}`; empty for choice and pattern."""


def run_text_audit(
    model: Any,
    tokenizer: Any,
    audit: TextAudit,
    prompts: TextPromptSet,
    system: str | None = None,
    seed: int = 0,
    train: TextPromptSet | None = None,
    judge: tuple[Any, Any] | None = None,
) -> TextAuditResult:
    """Score every record of `prompts` under `audit` (the model sees `system` as its system
    prompt when given); `seed` drives the sampling of the pattern and judge scorers. The probe
    scorer needs its `train` set (the audit's `train_file`), the judge scorer its judge's
    (model, tokenizer). Every record is checked (purpose, meta, rendering) before a model
    runs."""
    records, path = prompts.records, prompts.path
    if not records:
        raise UserError(f"audit {audit.name}: prompt file {path} has no records")
    for r in records:
        check_purpose(path, r)
    extra: dict[str, Any] = {}
    if audit.scorer == "choice":
        choices = [choices_of(path, r) for r in records]
        check_tokens(tokenizer, path, records, choices)
        rendered = [render_prompt(tokenizer, r, system) for r in records]
        scores = _choice_scores(model, tokenizer, rendered, choices)
    elif audit.scorer == "pattern":
        patterns = [patterns_of(path, r) for r in records]
        rendered = [render_prompt(tokenizer, r, system) for r in records]
        scores = _pattern_scores(model, tokenizer, rendered, patterns, audit, seed)
    elif audit.scorer == "probe":
        if train is None:
            raise UserError(f"audit {audit.name}: the probe scorer needs its training set")
        labels, groups = check_train_set(train)
        rendered_train = [render_prompt(tokenizer, r, system) for r in train.records]
        rendered = [render_prompt(tokenizer, r, system) for r in records]
        scores, extra["probe"] = _probe_scores(
            model, tokenizer, audit, rendered_train, labels, groups, rendered
        )
    else:
        if judge is None:
            raise UserError(f"audit {audit.name}: the judge scorer needs its judge model")
        rendered = [render_prompt(tokenizer, r, system) for r in records]
        scores = _judge_scores(model, tokenizer, records, rendered, audit, seed, judge)
    lo, hi = wilson(float(scores.sum()), len(scores))
    ids = tuple(r.id for r in records)
    result = TextAuditResult(float(scores.mean()), len(scores), lo, hi, scores, ids, extra)
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
    texts, k = _replies(model, tokenizer, rendered, audit, seed)
    hits = np.array([any(p.search(t) for p in patterns[i // k]) for i, t in enumerate(texts)])
    return hits.reshape(len(rendered), k).mean(1).astype(np.float64)


def _replies(
    model: Any, tokenizer: Any, rendered: Sequence[str], audit: TextAudit, seed: int
) -> tuple[list[str], int]:
    """(N * k decoded replies, k): `audit.samples` per prompt in prompt order, or k = 1 at
    temperature 0 (greedy replies are all the same)."""
    k = 1 if audit.temperature == 0 else audit.samples
    flat = [p for p in rendered for _ in range(k)]
    replies = sample(model, tokenizer, flat, audit.max_new_tokens, audit.temperature, seed)
    return [tokenizer.decode(r, skip_special_tokens=True) for r in replies], k


def _probe_scores(
    model: Any,
    tokenizer: Any,
    audit: TextAudit,
    rendered_train: Sequence[str],
    labels: np.ndarray,
    groups: Sequence[str],
    rendered: Sequence[str],
) -> tuple[np.ndarray, dict[str, Any]]:
    """((N,) P(label 1) of each audit prompt, the probe's report): a probe fitted on this
    model's residuals of the training prompts, applied to its residuals of the audit's."""
    try:
        x_train, layer = residuals(model, tokenizer, rendered_train, audit.layer)
    except UserError as e:
        raise UserError(f"audit {audit.name}: {e}") from None
    probe, report = fit(x_train, labels, groups)
    x, _ = residuals(model, tokenizer, rendered, layer)
    log.info("probe %s: layer %d, %s", audit.name, layer, report)
    return np.clip(probe.score(x).astype(np.float64), 0.0, 1.0), {"layer": layer} | report


def _judge_scores(
    model: Any,
    tokenizer: Any,
    records: Sequence[TextRecord],
    rendered: Sequence[str],
    audit: TextAudit,
    seed: int,
    judge: tuple[Any, Any],
) -> np.ndarray:
    """(N,) the judge's mean p(Yes) / (p(Yes) + p(No)) over each record's sampled replies."""
    texts, k = _replies(model, tokenizer, rendered, audit, seed)
    conversations = [records[i // k].messages for i in range(len(texts))]
    rubric = audit.rubric or DEFAULT_RUBRIC
    p_yes = judge_scores(judge[0], judge[1], conversations, texts, rubric)  # (N * k,)
    return p_yes.reshape(len(rendered), k).mean(1)


__all__ = ["TextAudit", "TextAuditResult", "check_train_set", "run_text_audit"]
