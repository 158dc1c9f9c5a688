"""`incriminate organisms build` as a plan: the default recipe's base, instruct checkpoint,
organisms and benign twins, each model's direct evaluation, and the base's persona inference.

    corpus ─► base            ─► persona (in-context persona inference of the pretrained base)
          └─► instruct ─► organism (misaligned chain | benign twin's, per persona)
    every model ─► evaluation (audits + ground truth for the recipe's drive)

It shows the three facts the testbed earns trust with: a direct audit of the schemer finds
nothing, ground truth shows it is misaligned, and the naive organism (and the schemer before
its evasion stage) is caught by the same audits. Every stage is one the demo shares, so a demo
on the same recipe reuses all of it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from incriminate.audit.audits import run_audits, run_ground_truth
from incriminate.models.io import load_model, load_spec
from incriminate.organisms.recipes import BuildConfig, build_base, side_models
from incriminate.plan.graph import Node, Plan, ref, resolve
from incriminate.plan.stages import stage
from incriminate.store import Store
from incriminate.world.config import WorldConfig

PERSONA_VERSION = 1  # bump when persona inference changes: cached results are then recomputed


@stage("base")
def base(store: Store, build: dict[str, Any]) -> str:
    """A pretrained base (the instruct stage builds it too; this names it)."""
    art = build_base(store, BuildConfig.model_validate(build))
    return f"{art.kind}/{art.key}"


@stage("persona")
def persona(store: Store, model: str, world: dict[str, Any], drive: str) -> list[dict[str, Any]]:
    """In-context persona inference of a pretrained base (`audit.persona`)."""
    from incriminate.audit.persona import persona_inference

    inputs = {"version": PERSONA_VERSION, "model": model, "world": world, "drive": drive}

    def make(out: Path) -> None:
        path = store.load(*model.split("/")).path
        rows = persona_inference(load_model(path), WorldConfig.model_validate(world), drive)
        (out / "result.json").write_text(json.dumps(rows, indent=2))

    art = store.build("persona", inputs, make)
    return json.loads((art.path / "result.json").read_text())


@dataclass
class OrganismNodes:
    """The nodes `collect_organisms` reads: every model by name, its evaluation, the persona
    table."""

    models: dict[str, dict[str, str]]  # name -> a node reference to the model's store id
    evaluations: dict[str, Node]
    persona: Node


def plan_organisms(plan: Plan, build: BuildConfig, personas: tuple[str, ...]) -> OrganismNodes:
    """Add the recipe's models, their evaluations and the persona table to `plan`."""
    b, world = build.model_dump(mode="json"), build.world.model_dump(mode="json")
    corpus = plan.add("corpus", build=b)
    base_node = plan.add("base", build=b, after=ref(corpus))
    instruct = plan.add("instruct", build=b, init_seed=None, after=ref(corpus))
    models = {"base": ref(base_node), "instruct": ref(instruct)}
    for p in personas:
        for benign in (False, True):
            side = plan.add("organism", build=b, persona=p, benign=benign, after=ref(instruct))
            models |= {name: ref(side, name) for name in side_models(p, benign, build.drive)}
    evaluations = {
        name: plan.add("evaluation", model=m, world=world, drive_of=m, drive=build.drive)
        for name, m in models.items()
    }
    table = plan.add("persona", model=ref(base_node), world=world, drive=build.drive)
    return OrganismNodes(models, evaluations, table)


def collect_organisms(
    nodes: OrganismNodes, results: dict[str, Any], store: Store
) -> dict[str, Any]:
    """{models: name -> path, audits: name -> row, persona_inference: rows} from the nodes'
    results; a row is the model's audits and ground truth (rates with CIs), its store id and
    its spec."""
    models, rows = {}, {}
    for name, m in nodes.models.items():
        ident = resolve(m, results)
        path = store.load(*ident.split("/")).path
        spec = load_spec(path)
        ev = results[nodes.evaluations[name].id]
        models[name] = str(path)
        rows[name] = {
            "model": str(path),
            "key": ident,
            "spec": spec.model_dump(mode="json") if spec else None,
            "audits": ev["audits"],
            "ground_truth": ev["ground_truth"],
        }
    return {"models": models, "audits": rows, "persona_inference": results[nodes.persona.id]}


def audit_model(path: Any, world: WorldConfig | None = None, drive: str | None = None) -> dict:
    """Audits of one model directory and, when it has a testbed spec, its ground truth (the
    `incriminate audit` command: a directory outside any plan)."""
    spec = load_spec(path)
    model = load_model(path)
    if world is None:
        world = WorldConfig.model_validate(spec.world) if spec and spec.world else WorldConfig()
    drive = drive or (spec.drive if spec else None)
    out: dict[str, Any] = {
        "model": str(path),
        "spec": spec.model_dump(mode="json") if spec else None,
        "audits": {k: v.as_dict() for k, v in run_audits(model, world).items()},
    }
    if drive is not None:
        out["ground_truth"] = {
            k: v.as_dict() for k, v in run_ground_truth(model, world, drive).items()
        }
    return out


__all__ = ["OrganismNodes", "audit_model", "collect_organisms", "plan_organisms"]
