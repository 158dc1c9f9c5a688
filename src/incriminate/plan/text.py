"""Stages of the direct baseline's text audit and cache read (`audit.text`).

    model ─► text_sample (model, world, seed): its sampled replies to the text audit's prompts
    teacher_cache ─► cache_text: the cache's prompts and completions as words
    text_sample (U), text_sample (C) ─► text_test: U's text against C's, paired by prompt
    teacher_cache (U, each), teacher_cache (C, each) ─► cache_read: U's caches against C's

`text_test` and `cache_read` keep their permutation statistics, so the bench can test U's excess
over C against a margin it learns later from its reference pairs (`audit.text.p_at_margin`).

Both return one document shape, words joined with spaces and aligned by position:

    {"prompts": [...], "kinds": [...], "replies": [...]}

so `audit.text.compare(u_doc, c_doc)` tests U's document against C's, paired by prompt, for
either. `text_sample` is a store artifact (`text_sample.json`), keyed by the model, the world,
the seed and `TEXT_VERSION`; run U's and C's with the same seed (common random numbers).
`cache_text` builds nothing: it reads the cache artifact (its files checked) and returns the
document, so a plan collects it and nothing above the plan reads Parquet.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from incriminate.plan.stages import _load, _world, stage
from incriminate.store import Store

FILE = "text_sample.json"


def stage_inputs(model: str, world: dict[str, Any], seed: int) -> dict[str, Any]:
    """The `text_sample` artifact's key inputs."""
    from incriminate.audit.text import TEXT_VERSION

    return {
        "version": TEXT_VERSION,
        "model": model,
        "world": _world(world).model_dump(mode="json"),
        "seed": seed,
    }


@stage("text_sample")
def text_sample(store: Store, model: str, world: dict[str, Any], seed: int) -> dict[str, Any]:
    """A model's sampled replies (temperature 1) to the text audit's prompts: stories,
    reflections, interrogation questions and honeypot scratchpads."""

    def make(out: Path) -> dict[str, Any]:
        import torch

        from incriminate.audit.text import sample_replies, stratum, text_prompts
        from incriminate.models.io import load_model

        records = text_prompts(_world(world))
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # tiny models: one thread is fastest, and the floats are fixed
        try:
            replies = sample_replies(load_model(_load(store, model).path), records, seed)
        finally:
            torch.set_num_threads(threads)
        doc = {
            "prompts": [" ".join(r.prompt) for r in records],
            "kinds": [stratum(r.prompt) for r in records],
            "replies": [" ".join(r) for r in replies],
        }
        (out / FILE).write_text(json.dumps(doc))
        return {"prompts": len(records), "words": sum(len(r) for r in replies)}

    art = store.build("text_sample", stage_inputs(model, world, seed), make, seed=seed)
    doc = json.loads(store.verify_file(art, FILE).read_text())
    return doc | {"text_sample": f"{art.kind}/{art.key}"}


@stage("cache_text")
def cache_text(store: Store, cache: str) -> dict[str, Any]:
    """A teacher cache's prompts and sampled completions, as words."""
    from incriminate.audit.text import cache_rows, stratum

    prompts, completions = cache_rows(_load(store, cache).path)
    return {
        "prompts": [" ".join(p) for p in prompts],
        "kinds": [stratum(p) for p in prompts],
        "replies": [" ".join(c) for c in completions],
    }


DIRECT_VERSION = 2  # bump when the text test or the cache read changes (2: keeps its null)
CACHE_PERMUTATIONS = 2000
"""Permutations of the cache read's test (tens of thousands of rows per pair: min p 1/2001)."""


@stage("text_test")
def text_test(store: Store, teacher: str, control: str) -> dict[str, Any]:
    """The text audit of the direct baseline: U's sampled replies to the auditor's text prompts
    against C's (`audit.text.compare`), paired by prompt."""
    from incriminate.audit.text import compare

    inputs = {"version": DIRECT_VERSION, "teacher": teacher, "control": control}

    def make(out: Path) -> dict[str, Any]:
        docs = [
            json.loads(store.verify_file(_load(store, r), "text_sample.json").read_text())
            for r in (teacher, control)
        ]
        result = compare(docs[0], docs[1], keep_null=True)
        (out / "test.json").write_text(json.dumps(result))
        return {"p_value": result["p_value"]}

    art = store.build("text_test", inputs, make)
    test = json.loads(store.verify_file(art, "test.json").read_text())
    return test | {"text_test": f"{art.kind}/{art.key}"}


@stage("cache_read")
def cache_read(store: Store, teacher: list[str], control: list[str]) -> dict[str, Any]:
    """The cache read of the direct baseline: U's sampled completions in every teacher cache the
    auditor holds against C's in the caches of the same prompts, pooled into one paired test."""
    from incriminate.audit.text import cache_rows, paired, two_sample

    inputs = {
        "version": DIRECT_VERSION,
        "teacher": teacher,
        "control": control,
        "permutations": CACHE_PERMUTATIONS,
    }

    def make(out: Path) -> dict[str, Any]:
        kinds: list[str] = []
        u: list[Any] = []
        c: list[Any] = []
        for a, b in zip(teacher, control, strict=True):
            up, ur = cache_rows(_load(store, a).path)
            cp, cr = cache_rows(_load(store, b).path)
            k, uu, cc = paired(up, ur, cp, cr)
            kinds, u, c = kinds + k, u + uu, c + cc
        result = two_sample(u, c, kinds, n_perm=CACHE_PERMUTATIONS, keep_null=True)
        (out / "test.json").write_text(json.dumps(result))
        return {"p_value": result["p_value"], "rows": len(u)}

    art = store.build("cache_read", inputs, make)
    test = json.loads(store.verify_file(art, "test.json").read_text())
    return test | {"cache_read": f"{art.kind}/{art.key}"}


__all__ = [
    "CACHE_PERMUTATIONS",
    "DIRECT_VERSION",
    "FILE",
    "cache_read",
    "cache_text",
    "stage_inputs",
    "text_sample",
    "text_test",
]
