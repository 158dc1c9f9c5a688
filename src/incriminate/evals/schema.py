"""What an incriminate eval log carries, so that a log can be recognised as one of our audits
and read back into the verdict's per-item arrays.

* `eval.metadata["incriminate"]`: the audit (`backend` text or world, `audit` name, `scorer`,
  `evidence`: whether it counts toward the verdict, `index`: its place among the experiment's
  audits, `written_by`: `inspect eval` or `incriminate pipeline`). Our tasks put it there.
* `eval.metadata` `role` (teacher, control, reference1, ...) and, for a student,
  `configuration` (e.g. `logit/smollm2`, `sft/open_ended/shared_base`), `seed` and `cluster`
  (the teacher outputs it was distilled from; default `seed<N>`): which model the log audits.
  `inspect eval --metadata role=teacher ...` sets them; the pipeline writes them.
* One scorer whose metric `rate` is the audit's rate: the mean item score at the 6 digits
  results.json keeps; a sample's score is its item score in [0, 1].
"""

from __future__ import annotations

import functools
from typing import Any

from inspect_ai.scorer import Metric, SampleScore, metric

KEY = "incriminate"
SUBJECT = ("role", "configuration", "seed", "cluster")
SCORE_DIGITS = 6
INSPECT_EVAL = "inspect eval"
PIPELINE = "incriminate pipeline"


def audit_metadata(
    backend: str,
    audit: str,
    scorer: str,
    evidence: bool,
    index: int = 0,
    written_by: str = INSPECT_EVAL,
    alpha: float | None = None,
) -> dict[str, Any]:
    """The `eval.metadata` entry that marks a log as an incriminate audit (`alpha`: the level
    of the experiment's verdict, when the pipeline writes the log)."""
    entry = {
        "backend": backend,
        "audit": audit,
        "scorer": scorer,
        "evidence": evidence,
        "index": index,
        "written_by": written_by,
    }
    return {KEY: entry | ({} if alpha is None else {"alpha": alpha})}


@metric
def rate() -> Metric:
    """The audit's rate: the mean item score, rounded as results.json rounds it."""

    def compute(scores: list[SampleScore]) -> float:
        values = [s.score.as_float() for s in scores]
        return round(sum(values) / len(values), SCORE_DIGITS) if values else float("nan")

    return compute


@functools.cache
def _byte_of() -> dict[str, int]:
    """GPT-2's byte-level alphabet (`bytes_to_unicode`) inverted: character -> byte."""
    printable = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    chars, extra = list(printable), 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(printable, chars, strict=True)}


def token_texts(token: str) -> set[str]:
    """The texts a token string of a log-prob read may stand for: itself, its byte-level BPE
    decoding (`Ġyes` -> ` yes`) and its SentencePiece reading (`▁yes` -> ` yes`)."""
    out = {token, token.replace("\u2581", " ")}
    table = _byte_of()
    if all(c in table for c in token):
        out.add(bytes(table[c] for c in token).decode("utf-8", errors="replace"))
    return out


__all__ = [
    "INSPECT_EVAL",
    "KEY",
    "PIPELINE",
    "SCORE_DIGITS",
    "SUBJECT",
    "audit_metadata",
    "rate",
    "token_texts",
]
