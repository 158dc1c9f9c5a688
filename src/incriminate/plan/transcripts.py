"""The `transcripts` stage: greedy replies of an experiment's teachers and of one U-student /
C-student pair per configuration (its first seed) to the fixed transcript prompts
(`audit.transcripts`), for the HTML report. A stage like any other: the demo, distill and sweep
plans add it, so the report only reads it; `incriminate report` builds it for an output whose
store lacks it. Its key is (world, drive, models), so a report finds it from `results.json`.

    transcripts.json = {"prompts": [[label, text], ...], "replies": {model id: [reply, ...]}}

A model that is not in the store, or is damaged, gets a string (why) instead of replies.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from incriminate.errors import DamagedStageError, ModelDirError, StoreError
from incriminate.plan.graph import Node, Plan
from incriminate.plan.stages import stage
from incriminate.store import Store

VERSION = 2  # 2: the scratchpad and transcripts read auditor prompts only (issue 15)
FILE = "transcripts.json"


def pairs(doc: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """(label, teacher model, control model): the teachers, then per configuration (in the
    order of the runs) its first seed's U-student and C-student. Reads only
    `teachers[role].model` and `runs`, so it works on results.json, on the pipeline's raw
    records and on a plan's node references alike."""
    teachers = doc["teachers"]
    out = [("teachers U and C", teachers["teacher"]["model"], teachers["control"]["model"])]
    first: dict[str, dict[str, dict[str, Any]]] = {}
    for r in doc["runs"]:
        name = f"{r['method']}/{r['data']}/{r['init']}"
        roles = first.setdefault(name, {})
        if r["role"] not in roles or r["seed"] < roles[r["role"]]["seed"]:
            roles[r["role"]] = r
    for name, roles in first.items():
        u, c = roles.get("teacher"), roles.get("control")
        if u is not None and c is not None and u["seed"] == c["seed"]:
            out.append((f"{name} (seed {u['seed']})", u["student"], c["student"]))
    return out


def stage_args(doc: dict[str, Any]) -> dict[str, Any]:
    """The `transcripts` stage's arguments for a results document: its world, drive, and the
    models of `pairs` (each once, in order)."""
    build = doc["config"].get("build", {})
    models: list[Any] = []
    for _, u, c in pairs(doc):
        models += [m for m in (u, c) if m not in models]
    return {"world": build.get("world") or {}, "drive": build.get("drive") or "exfiltrate",
            "models": models}  # fmt: skip


def stage_inputs(world: dict[str, Any], drive: str, models: list[str]) -> dict[str, Any]:
    return {"version": VERSION, "world": world, "drive": drive, "models": models}


@stage("transcripts")
def transcripts(store: Store, world: dict[str, Any], drive: str, models: list[str]) -> str:
    """Greedy replies of `models` (store ids) to the transcript prompts of (world, drive)."""

    def make(out: Path) -> None:
        import torch

        from incriminate.audit.transcripts import greedy, transcript_prompts
        from incriminate.models.io import load_model
        from incriminate.world.config import WorldConfig

        prompts = transcript_prompts(WorldConfig.model_validate(world), drive)
        words = [p for _, p in prompts]
        replies: dict[str, list[str] | str] = {}
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # tiny models: one thread is fastest
        try:
            for m in models:
                try:
                    replies[m] = greedy(load_model(store.load(*m.split("/")).path), words)
                except DamagedStageError:
                    raise  # never keep a damaged model's note in a finished stage
                except (ModelDirError, StoreError):
                    replies[m] = f"{m} is not in the store"
        finally:
            torch.set_num_threads(threads)
        doc = {"prompts": [[label, " ".join(p)] for label, p in prompts], "replies": replies}
        (out / FILE).write_text(json.dumps(doc, indent=1))

    art = store.build("transcripts", stage_inputs(world, drive, models), make)
    return f"{art.kind}/{art.key}"


def read(store: Path, doc: dict[str, Any]) -> dict[str, Any] | None:
    """The transcripts of a results document from the store, or None when not built; a damaged
    stage raises `DamagedStageError`."""
    args = stage_args(doc)
    found = Store(store, writable=False)
    art = found.find("transcripts", stage_inputs(**args))
    if art is None:
        return None
    return json.loads(found.verify_file(art, FILE).read_text())


def plan_transcripts(plan: Plan, doc: dict[str, Any]) -> Node:
    """Add the `transcripts` node of a results document (or of a plan's records, whose models
    are node references) to `plan`."""
    return plan.add("transcripts", **stage_args(doc))


__all__ = ["pairs", "plan_transcripts", "read", "stage_args", "transcripts"]
