"""Stages of the direct baseline's text audit and cache read (`audit.text`).

    model ─► text_sample (model, world, seed): its sampled replies to the text audit's prompts
    teacher_cache ─► cache_text: the cache's prompts and completions as words

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


__all__ = ["FILE", "cache_text", "stage_inputs", "text_sample"]
