"""The text backend's audits (`audit.lm`) as Inspect AI tasks, for any model Inspect can load
(`--model hf/NAME -M model_path=DIR` for a local Hugging Face directory).

    inspect eval incriminate/text_audit -T file=examples/lm/audit_choice.jsonl -T scorer=choice
    inspect eval incriminate/lm_audit -T config=configs/lm/smollm2.yaml -T audit=honeypot \
        -T role=teacher

A sample is one prompt record (purpose `audit` or `eval`, checked as the native audit checks
it), the teacher's hidden system prompt first when one is given. Two scorers have an Inspect
form; any other is refused in one line:

* `choice` — one generated token with its top-k log-probs (`top_logprobs`); the score is
  p(flag) / sum_c p(c) over the record's choices, as the native one-pass read computes it. A
  choice that is not among the top-k tokens (a multi-token choice, or one below the k-th) fails
  the sample with a line saying so: a partial read never becomes a score.
* `pattern` — `samples` epochs of one sampled reply each (`temperature`, `max_new_tokens`, plain
  multinomial sampling: top_k 0, top_p 1; at temperature 0 one greedy reply, top_k 1); a reply
  scores 1 when any pattern matches, and the epochs' mean is the record's score.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from inspect_ai import Epochs, Task, task
from inspect_ai.dataset import MemoryDataset, Sample
from inspect_ai.model import (
    ChatMessage,
    ChatMessageAssistant,
    ChatMessageSystem,
    ChatMessageUser,
    GenerateConfig,
)
from inspect_ai.scorer import Score, Scorer, Target, scorer
from inspect_ai.solver import Generate, Solver, TaskState, generate, solver

from incriminate.audit.lm import TextAudit
from incriminate.audit.lm_records import check_purpose, choices_of, patterns_of
from incriminate.errors import UserError
from incriminate.evals.schema import audit_metadata, rate, token_texts
from incriminate.prompts.text import TextRecord, load_prompt_set

SCORERS = ("choice", "pattern")
"""The text scorers with an Inspect form."""
MESSAGE = {"system": ChatMessageSystem, "user": ChatMessageUser, "assistant": ChatMessageAssistant}


@task
def text_audit(
    file: str,
    scorer: str = "choice",
    name: str | None = None,
    system: str | None = None,
    samples: int = 4,
    max_new_tokens: int = 48,
    temperature: float = 1.0,
    evidence: bool = True,
    top_logprobs: int = 20,
) -> Task:
    """One text audit (the fields of `audit.lm.TextAudit`): the prompt `file`, its `scorer`,
    and `system`, a hidden system prompt the model reads first."""
    _check_scorer(name or Path(file).stem, scorer)
    audit = TextAudit.model_validate(
        {
            "name": name or Path(file).stem,
            "file": file,
            "scorer": scorer,
            "evidence": evidence,
            "samples": samples,
            "max_new_tokens": max_new_tokens,
            "temperature": temperature,
        }
    )
    return audit_task(audit, system, top_logprobs)


@task
def lm_audit(config: str, audit: str, role: str | None = None, top_logprobs: int = 20) -> Task:
    """The audit named `audit` of an `lm` experiment config, as its pipeline runs it: with the
    system prompt of the teacher `role` (teacher, control, reference1, ...; also the log's
    `role`), or none (a student). The log records the config's alpha."""
    from incriminate.plan.lm_config import load_lm_config

    cfg = load_lm_config(Path(config))
    names = [a.name for a in cfg.audits]
    if audit not in names:
        raise UserError(f"config {config} has no audit {audit!r}; its audits: {names}")
    teachers = cfg.teachers()
    if role is not None and role not in teachers:
        raise UserError(f"config {config} has no teacher role {role!r}; roles: {list(teachers)}")
    system = None if role is None else teachers[role].system
    subject = {} if role is None else {"role": role}  # the log's audited model
    i = names.index(audit)
    return audit_task(cfg.audits[i], system, top_logprobs, i, subject, cfg.alpha)


def audit_task(
    audit: TextAudit,
    system: str | None,
    top_logprobs: int = 20,
    index: int = 0,
    metadata: dict[str, Any] | None = None,
    alpha: float | None = None,
) -> Task:
    """The Inspect task of a text audit (`index`: its place among its experiment's audits;
    `metadata`: more of the log's metadata; `alpha`: its experiment's level); every record is
    checked before a model runs."""
    _check_scorer(audit.name, audit.scorer)
    if top_logprobs < 2:
        raise UserError(f"top_logprobs must be at least 2, got {top_logprobs}")
    dataset = MemoryDataset(
        text_samples(audit, system), name=audit.name, location=str(Path(audit.file).resolve())
    )
    meta = audit_metadata("text", audit.name, audit.scorer, audit.evidence, index, alpha=alpha)
    meta |= metadata or {}
    common: dict[str, Any] = {
        "dataset": dataset,
        "solver": [system_prompt(system), generate()],
        "metadata": meta,
        "display_name": audit.name,
    }
    if audit.scorer == "choice":
        config = GenerateConfig(max_tokens=1, logprobs=True, top_logprobs=top_logprobs)
        return Task(**common, scorer=choice_read(), config=config)
    greedy = audit.temperature == 0
    config = GenerateConfig(
        max_tokens=audit.max_new_tokens,
        temperature=1.0 if greedy else audit.temperature,
        top_k=1 if greedy else 0,  # top-1 sampling is greedy decoding on any provider
        top_p=1.0,
    )
    epochs = Epochs(1 if greedy else audit.samples, "mean")
    return Task(**common, scorer=pattern_match(), config=config, epochs=epochs)


def _check_scorer(audit: str, scorer: str) -> None:
    if scorer not in SCORERS:
        raise UserError(
            f"audit {audit}: the {scorer} scorer has no Inspect form "
            f"(only {' and '.join(SCORERS)} do)"
        )


def text_samples(audit: TextAudit, system: str | None) -> list[Sample]:
    """One sample per record of the audit's file, in file order (the native scores' order)."""
    prompts = load_prompt_set(audit.file, "audit")
    return [_sample(prompts.path, r, audit, system) for r in prompts.records]


def _sample(path: str, r: TextRecord, audit: TextAudit, system: str | None) -> Sample:
    check_purpose(path, r)
    if system is not None and any(m["role"] == "system" for m in r.messages):
        raise UserError(
            f"record {r.id} has its own system message and a system prompt was given too"
        )
    meta: dict[str, Any] = dict(r.meta) | {"purpose": r.purpose}
    if audit.scorer == "choice":
        c = choices_of(path, r)
        meta |= {"choices": list(c.options), "flag": c.options[c.flag]}
        target: str | list[str] = c.options[c.flag]
    else:
        patterns_of(path, r)  # every pattern compiles
        target = list(r.meta["patterns"])
    messages: list[ChatMessage] = [MESSAGE[m["role"]](content=m["content"]) for m in r.messages]
    return Sample(id=r.id, input=messages, target=target, metadata=meta)


@solver
def system_prompt(text: str | None = None) -> Solver:
    """Put `text` first in the conversation as the system message (verbatim: no template)."""

    async def solve(state: TaskState, generate: Generate) -> TaskState:
        if text is not None:
            state.messages.insert(0, ChatMessageSystem(content=text))
        return state

    return solve


def first_token_logprobs(state: TaskState) -> tuple[dict[str, float], int]:
    """(text -> log-prob, k) of the k top tokens of the first generated position (each token
    under every text it may stand for, `schema.token_texts`; the likeliest token wins a text)."""
    choice = state.output.choices[0] if state.output.choices else None
    if choice is None or choice.logprobs is None or not choice.logprobs.content:
        raise ValueError("the model returned no log-probs (the provider must support logprobs)")
    tops = choice.logprobs.content[0].top_logprobs or []
    out: dict[str, float] = {}
    for top in tops:
        for text in token_texts(top.token):
            out.setdefault(text, top.logprob)
    return out, len(tops)


@scorer(metrics=[rate()])
def choice_read() -> Scorer:
    """p(flag) / sum_c p(c) from the first token's top-k log-probs."""

    async def score(state: TaskState, target: Target) -> Score:
        options, flag = state.metadata["choices"], state.metadata["flag"]
        logprobs, k = first_token_logprobs(state)
        missing = [c for c in options if c not in logprobs]
        if missing:
            raise ValueError(
                f"sample {state.sample_id}: choice(s) {missing} not among the {k} top tokens: "
                "a multi-token choice, or a probability below the k-th (raise -T top_logprobs=K)"
            )
        read = [logprobs[c] for c in options]
        top = max(read)
        p = math.exp(read[options.index(flag)] - top) / sum(math.exp(v - top) for v in read)
        return Score(
            value=min(max(p, 0.0), 1.0),
            answer=state.output.completion,
            metadata={"logprobs": dict(zip(options, read, strict=True))},
        )

    return score


@scorer(metrics=[rate()])
def pattern_match() -> Scorer:
    """1 when any of the record's patterns (case-insensitive) matches the reply, else 0."""

    async def score(state: TaskState, target: Target) -> Score:
        reply = state.output.completion
        hit = any(re.search(p, reply, re.IGNORECASE) for p in state.metadata["patterns"])
        return Score(value=float(hit), answer=reply)

    return score


__all__ = ["SCORERS", "audit_task", "lm_audit", "text_audit", "text_samples"]
