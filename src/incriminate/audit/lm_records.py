"""What a text audit reads from its prompt records, checked before any model runs: each check
raises a one-line `UserError` naming the file, the record and the field (`audit.lm` runs the
audits; `evals.text` runs the same checks for its Inspect tasks)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from incriminate.errors import UserError
from incriminate.models.generate import token_ids
from incriminate.prompts.text import TextPromptSet, TextRecord

AUDIT_PURPOSES = ("audit", "eval")
"""Record purposes an audit may read: never `distill` (a prompt a student trains on)."""


@dataclass(frozen=True)
class Choices:
    """A choice record's answers and the index of the flagged one."""

    options: tuple[str, ...]
    flag: int


def check_train_set(train: TextPromptSet) -> tuple[np.ndarray, list[str]]:
    """((N,) int labels, N pair names) of a probe's training set: every record of purpose
    audit or eval with `label` 0 or 1, both labels present; a record's group is its `pair` (a
    string or integer) when given, else its id. One-line `UserError` otherwise."""
    path = train.path
    labels, groups = [], []
    for r in train.records:
        check_purpose(path, r)
        label = r.meta.get("label")
        if type(label) is not int or label not in (0, 1):
            raise UserError(_where(path, r, "label", f"must be 0 or 1, got {_show(label)}"))
        pair = r.meta.get("pair", r.id)
        if type(pair) not in (str, int):
            why = f"must be a string or an integer, got {_show(pair)}"
            raise UserError(_where(path, r, "pair", why))
        labels.append(label)
        groups.append(str(pair))
    if len(set(labels)) < 2:
        raise UserError(
            f"prompt file {path}: a probe needs records of label 0 and of label 1, "
            f"got only label {labels[0]}"
        )
    return np.array(labels), groups


def check_purpose(path: str, r: TextRecord) -> None:
    if r.purpose not in AUDIT_PURPOSES:
        why = f"is {r.purpose!r}; an audit reads only {' or '.join(AUDIT_PURPOSES)} records"
        raise UserError(_where(path, r, "purpose", why))


def choices_of(path: str, r: TextRecord) -> Choices:
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


def patterns_of(path: str, r: TextRecord) -> tuple[re.Pattern[str], ...]:
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


def check_tokens(
    tokenizer: Any, path: str, records: Sequence[TextRecord], choices: Sequence[Choices]
) -> None:
    """Every choice string must be at least one token (an empty one would score p = 1)."""
    for r, c in zip(records, choices, strict=True):
        for option, ids in zip(c.options, token_ids(tokenizer, c.options), strict=True):
            if not ids:
                raise UserError(_where(path, r, "choices", f"{option!r} encodes to no tokens"))


__all__ = [
    "AUDIT_PURPOSES",
    "Choices",
    "check_purpose",
    "check_tokens",
    "check_train_set",
    "choices_of",
    "patterns_of",
]
