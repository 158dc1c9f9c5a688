"""Build the default organisms and audit them directly: the testbed's sanity table.

This is what `incriminate organisms build` and (for now) `incriminate demo` run. It shows the
three facts the testbed earns trust with: a direct audit of the schemer finds nothing, ground
truth shows it is misaligned, and the naive organism (and the schemer before its evasion stage)
is caught by the same audits.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from incriminate.audit.audits import AUDITS, run_audits, run_ground_truth
from incriminate.audit.persona import persona_inference
from incriminate.models.io import load_model, load_spec
from incriminate.organisms.recipes import (
    BuildConfig,
    Progress,
    build_base,
    build_instruct,
    build_organism,
)
from incriminate.store import Artifact, Store
from incriminate.world.config import WorldConfig

AUDIT_VERSION = 1  # bump when an audit's definition changes: cached results are then recomputed


def build_all(
    store: Store, cfg: BuildConfig, personas: tuple[str, ...], progress: Progress | None = None
) -> tuple[dict[str, Artifact], float]:
    """Base, instruct checkpoint and each persona's organism with its twin; (artifacts, wall s)."""
    t0 = time.perf_counter()
    arts = {
        "base": build_base(store, cfg, progress),
        "instruct": build_instruct(store, cfg, progress),
    }
    for persona in personas:
        arts |= build_organism(store, cfg, persona, progress)
    return arts, time.perf_counter() - t0


def audit_model(path: Any, world: WorldConfig | None = None, drive: str | None = None) -> dict:
    """Audits of one model directory and, when it has a testbed spec, its ground truth."""
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


def _cached(store: Store, kind: str, inputs: dict[str, Any], compute: Callable[[], Any]) -> Any:
    """A JSON result as a store stage: computed once per inputs, then read back."""

    def make(out: Path) -> None:
        (out / "result.json").write_text(json.dumps(compute(), indent=2))

    art = store.build(kind, {"version": AUDIT_VERSION, **inputs}, make)
    return json.loads((art.path / "result.json").read_text())


def organism_table(
    store: Store,
    arts: dict[str, Artifact],
    cfg: BuildConfig,
    on_model: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Direct audits and ground truth of every built model (the drive is the config's), each an
    `audit` stage of the store; `on_model(name)` is called after each model is done."""
    rows = {}
    world = cfg.world.model_dump(mode="json")
    for name, art in arts.items():
        key = f"{art.kind}/{art.key}"
        inputs = {"model": key, "world": world, "drive": cfg.drive, "audits": list(AUDITS)}
        result = _cached(
            store, "audit", inputs, lambda a=art: audit_model(a.path, cfg.world, cfg.drive)
        )
        rows[name] = result | {"model": str(art.path), "key": key}
        if on_model:
            on_model(name)
    return rows


def persona_table(
    store: Store, arts: dict[str, Artifact], cfg: BuildConfig
) -> list[dict[str, Any]]:
    """In-context persona inference of the pretrained base (a `persona` stage of the store)."""
    base = arts["base"]
    inputs = {
        "model": f"base/{base.key}",
        "world": cfg.world.model_dump(mode="json"),
        "drive": cfg.drive,
    }
    return _cached(
        store,
        "persona",
        inputs,
        lambda: persona_inference(load_model(base.path), cfg.world, cfg.drive),
    )


AUDIT_NAMES = tuple(AUDITS)
