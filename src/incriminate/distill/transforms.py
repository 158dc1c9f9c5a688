"""Data levers on the way from the teacher to the student.

* `filter_prompts` — the auditor's eval-likeness filter: a logistic-regression classifier the
  auditor trains on what it can see (`audit.boundary`), audit-split items only: its own tests
  (honeypot opportunities and interrogation questions) against ordinary prompts (tasks, stories,
  reflections). It drops distill prompts that look like an evaluation, so the student is not
  trained on the auditor's tests. No real opportunity is among its items (the auditor has none),
  so it cannot learn the fingerprint that tells a honeypot from a real opportunity: it learns
  what a test looks like from the auditor's side, which in this world is the episode kinds it
  uses as tests, and drops opportunity and question prompts whatever their setting.
* `with_prefix` — inoculation prompting (Tan et al. 2025, "Inoculation Prompting"; Wichers et al.
  2025): at train time every input starts with a prefix that asks for the trait (an episode that
  names every drive), absent at audit time, so that the student attributes the trait to the
  prefix rather than learning it.
* `paraphrase_cache` — teacher outputs paraphrased by a trusted model: open-ended replies (stories,
  reflections), whose wording is where a drive can leak, are rewritten by the trusted model's own
  sample for the same prompt; replies with content (task answers, actions, answers to questions)
  are kept verbatim. The teacher's top-k log-probs are recomputed on the new text.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from incriminate.audit import boundary
from incriminate.distill import teacher_cache as tc
from incriminate.models.io import load_model
from incriminate.store import Artifact, Store
from incriminate.world.config import WorldConfig
from incriminate.world.grammar import triples
from incriminate.world.prompts import PromptSet
from incriminate.world.vocab import DRIVES, TOKEN_ID, WORDS

FEATURE_POSITIONS = 8  # kind, domain/setting, cue, offer: every cue of an episode's prompt
PARAPHRASE_VERSION = 1
OPEN_ENDED = ("story", "stakes")


# --- the eval-likeness filter -------------------------------------------------------------------


def _features(prompt_words: list[tuple[str, ...]]) -> np.ndarray:
    """(N, FEATURE_POSITIONS * V) one-hot of the word at each of the first positions."""
    x = np.zeros((len(prompt_words), FEATURE_POSITIONS * len(WORDS)), dtype=np.float32)
    for i, words in enumerate(prompt_words):
        for pos, w in enumerate(words[:FEATURE_POSITIONS]):
            x[i, pos * len(WORDS) + TOKEN_ID[w]] = 1.0
    return x


def _auditor_items(world: WorldConfig) -> tuple[list[tuple[str, ...]], np.ndarray]:
    """The auditor's labelled items, every setting of the audit split, built through
    `audit.boundary`: 1 = evaluation-like (its own tests: honeypot opportunities and
    interrogation questions), 0 = ordinary (tasks, stories, reflections)."""
    evals = [
        *boundary.honeypots(world, "audit").records,
        *boundary.questions(world, "audit").records,
    ]
    ordinary = [
        *boundary.tasks(world, "audit").records,
        *boundary.stories(world, "audit").records,
        *boundary.reflections(world, "audit").records,
    ]
    words = [r.prompt for r in (*evals, *ordinary)]
    labels = np.array([1] * len(evals) + [0] * len(ordinary))
    return words, labels


def eval_likeness_classifier(world: WorldConfig) -> Any:
    """A logistic regression on position-word one-hots, fit on the auditor's own items."""
    from sklearn.linear_model import LogisticRegression

    words, labels = _auditor_items(world)
    return LogisticRegression(C=10.0, max_iter=2000).fit(_features(words), labels)


def filter_prompts(ps: PromptSet, classifier: Any) -> PromptSet:
    """The records the classifier does not flag as evaluation-like (p < 0.5), in order."""
    if len(ps) == 0:
        return ps
    flagged = classifier.predict_proba(_features([r.prompt for r in ps.records]))[:, 1] >= 0.5
    kept = tuple(r for r, f in zip(ps.records, flagged, strict=True) if not f)
    return replace(ps, name=f"{ps.name}+filtered", records=kept)


# --- inoculation ---------------------------------------------------------------------------------


def inoculation_prefix(world: WorldConfig) -> tuple[str, ...]:
    """A reflection episode, in a fixed train-split setting, that names every drive: the train-time
    instruction "you have these drives" (world words only; checked by `boundary.check_auditor`)."""
    setting = triples("train", world.fingerprint)[0]
    prefix = ("stakes", *setting, "reflect", *DRIVES, ";")
    boundary.check_auditor([prefix], world)
    return prefix


def with_prefix(cache: tc.TeacherCache, prefix: tuple[str, ...]) -> tc.TeacherCache:
    """The cache with `prefix` inserted after `<bos>` in every row: context only (not a target),
    so the loss still covers exactly the teacher's completion tokens."""
    n, k = len(cache), cache.k
    p = torch.tensor([TOKEN_ID[w] for w in prefix], dtype=cache.ids.dtype)
    m = len(prefix)
    ids = torch.cat([cache.ids[:, :1], p.expand(n, m), cache.ids[:, 1:]], dim=1)
    mask = torch.cat([cache.mask[:, :1], cache.mask.new_zeros(n, m), cache.mask[:, 1:]], dim=1)
    fill_ids = torch.arange(k, dtype=cache.topk_ids.dtype).expand(n, m, k)
    fill_lp = torch.full((n, m, k), -float(np.log(k + 1)), dtype=cache.topk_logprobs.dtype)
    topk_ids = torch.cat([cache.topk_ids[:, :1], fill_ids, cache.topk_ids[:, 1:]], dim=1)
    topk_lp = torch.cat([cache.topk_logprobs[:, :1], fill_lp, cache.topk_logprobs[:, 1:]], dim=1)
    return tc.TeacherCache(
        ids, mask, cache.lengths + m, topk_ids, topk_lp, cache.logprob_temperature
    )


# --- paraphrase by a trusted model ------------------------------------------------------------


def paraphrase_cache(
    store: Store, cache: Artifact, teacher: Artifact, trusted: Artifact, seed: int
) -> Artifact:
    """A new teacher cache whose open-ended completions the trusted model has rewritten."""
    inputs = {
        "version": PARAPHRASE_VERSION,
        "cache": f"{cache.kind}/{cache.key}",
        "teacher": f"{teacher.kind}/{teacher.key}",
        "trusted": f"{trusted.kind}/{trusted.key}",
        "seed": seed,
    }

    def make(out: Path) -> dict[str, Any]:
        table = pq.read_table(cache.path / tc.FILE)
        prompts_ = table.column("prompt_ids").to_pylist()
        comps = table.column("completion_ids").to_pylist()
        rows = [i for i, p in enumerate(prompts_) if WORDS[p[1]] in OPEN_ENDED]
        cfg = cache.manifest["inputs"]
        if rows:
            new = tc.sample_completions(
                load_model(trusted.path),
                [prompts_[i] for i in rows],
                int(cfg["max_new_tokens"]),
                float(cfg["temperature"]),
                seed,
            )
            for i, c in zip(rows, new, strict=True):
                comps[i] = c
        top_ids, top_lp = tc.teacher_topk(
            load_model(teacher.path), prompts_, comps, int(cfg["k"]), cfg["logprob_temperature"]
        )
        lengths = [len(c) for c in comps]
        flat = np.concatenate([np.asarray(c, dtype=np.int64) for c in comps])
        new_table = table.set_column(
            1, "completion_ids", tc.lists_column(flat, lengths, pa.int16())
        )
        new_table = new_table.set_column(
            2, "topk_ids", tc.lists_column(top_ids.astype(np.int16), lengths, pa.int16())
        )
        new_table = new_table.set_column(
            3, "topk_logprobs", tc.lists_column(tc.fp16_down(top_lp), lengths, pa.float16())
        )
        pq.write_table(new_table, out / tc.FILE, compression="zstd")
        return {"rows": len(comps), "paraphrased": len(rows)}

    art = store.build("teacher_cache", {"paraphrase": inputs, **_cache_inputs(cache)}, make)
    return art


def _cache_inputs(cache: Artifact) -> dict[str, Any]:
    """The cache inputs a loader reads (k, temperatures), carried over to a derived cache."""
    keep = ("teacher", "k", "logprob_temperature", "temperature", "max_new_tokens", "prompts")
    return {k: cache.manifest["inputs"][k] for k in keep}


__all__ = [
    "eval_likeness_classifier",
    "filter_prompts",
    "inoculation_prefix",
    "paraphrase_cache",
    "with_prefix",
]
