"""Distillation runs and student evaluations, each a stage of the artifact store.

    teacher ──► teacher cache (teacher, data, seed) ──► student (init, method, cache, seed)
                                                                └──► evaluation (audits, truth)

A run is (teacher, student init, method, data selection, seed). Its teacher run (teacher U) and
its control run (teacher C) read caches of the *same* prompts sampled with the *same* seed, start
from the same init and see the same batch order: the two students differ only by the teacher.
Each (data, seed) draws its own prompts, so seeds replicate the data as well as the training.
"""

from __future__ import annotations

import functools
import hashlib
import json
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from incriminate.audit.audits import AUDITS, run_audits, run_ground_truth
from incriminate.distill.methods import METHODS, MethodSettings
from incriminate.distill.selections import select
from incriminate.distill.teacher_cache import build_teacher_cache, load_teacher_cache
from incriminate.distill.transforms import eval_likeness_classifier, filter_prompts, with_prefix
from incriminate.models.io import load_model, load_spec, save_model
from incriminate.models.presets import ModelSpec
from incriminate.store import Artifact, Store
from incriminate.world.config import WorldConfig

DISTILL_VERSION = 1
EVALUATION_VERSION = 3  # bump when an audit's definition changes: evaluations are recomputed
PROBE_SCORE_VERSION = 1
SCORE_DIGITS = 6  # per-item scores are stored rounded: JSON stays small and byte-stable
FILTER_DRAWS = 4  # a filtered selection draws this many times `prompts`, then keeps `prompts`
LOSSES = "losses.json"  # a student's loss at every step (artifacts built before it lack it)


def data_seed(data: str, seed: int) -> int:
    """Seed of the prompts and teacher samples of (data selection, run seed): selections of one
    run seed draw independently of each other."""
    return int.from_bytes(hashlib.sha256(f"{data}:{seed}".encode()).digest()[:4], "big")


def teacher_cache(
    store: Store,
    teacher: Artifact | Path,
    world: WorldConfig,
    data: str,
    n_prompts: int,
    seed: int,
    cache_cfg: Any,
    filtered: bool = False,
) -> Artifact:
    """The teacher's outputs on `n_prompts` prompts of selection `data` for run seed `seed`;
    `filtered`: without the prompts the auditor's eval-likeness classifier flags."""
    ds = data_seed(data, seed)
    if filtered:
        drawn = select(data, world, FILTER_DRAWS * n_prompts, ds)
        kept = filter_prompts(drawn, _classifier(world.model_dump_json()))
        if len(kept) == 0:
            raise ValueError(f"the eval-likeness filter flags every prompt of {data!r}")
        prompts = replace(kept, records=kept.records[:n_prompts])
    else:
        prompts = select(data, world, n_prompts, ds)
    return build_teacher_cache(
        store, teacher, prompts, cache_cfg.model_copy(update={"seed": ds}), prompt_seed=ds
    )


def import_model(store: Store, path: Path) -> Artifact:
    """A copy of a model directory in the store (kind `model`), keyed by a digest of its weights,
    config and tokenizer, so that its caches and students are keyed by content, not by path."""
    files = ["config.json", "model.safetensors", "tokenizer.json"]
    h = hashlib.sha256()
    for name in files:
        h.update(name.encode() + b"\0" + (Path(path) / name).read_bytes())
    inputs = {"sha256": h.hexdigest(), "source": Path(path).name}

    def make(out: Path) -> None:
        for f in Path(path).iterdir():
            if f.is_file() and (f.suffix in (".json", ".safetensors")):
                shutil.copyfile(f, out / f.name)

    return store.build("model", inputs, make)


@functools.cache
def _classifier(world_json: str) -> Any:
    return eval_likeness_classifier(WorldConfig.model_validate_json(world_json))


def cache_teacher(cache: Artifact) -> Path:
    """The model directory of the teacher a cache was computed from (a store artifact, its
    files checked: a damaged teacher raises `DamagedStageError`)."""
    teacher = str(cache.manifest["inputs"]["teacher"])
    kind, _, key = teacher.partition("/")
    path = cache.path.parents[1] / kind / key
    if not (path / "model.safetensors").exists():
        raise ValueError(f"teacher {teacher} of cache {cache.key} is not in the store")
    return Store(cache.path.parents[1], writable=False).load(kind, key).path


def _store_id(model: Artifact | Path) -> str:
    return f"{model.kind}/{model.key}" if isinstance(model, Artifact) else str(Path(model))


def distill_student(
    store: Store,
    init: Artifact | Path,
    cache: Artifact,
    method: MethodSettings,
    seed: int,
    lora: Any = None,
    prefix: tuple[str, ...] = (),
) -> Artifact:
    """Train a student from `init` on a teacher cache with the registered method `method` names
    (`distill.methods`): full fine-tuning, or LoRA adapters (`lora`, a `LoraOptions`) merged
    into the weights before saving. The method's metrics go into the student's manifest."""
    recipe = METHODS.get(method.method)
    init_path = init.path if isinstance(init, Artifact) else Path(init)
    inputs = {
        "recipe": DISTILL_VERSION,
        "init": _store_id(init),
        "cache": f"{cache.kind}/{cache.key}",
        "method": method.model_dump(mode="json"),
        "seed": seed,
    }
    if lora is not None:  # only then: full fine-tuning keeps its keys
        inputs["lora"] = lora.model_dump(mode="json")
    if prefix:
        inputs["inoculation"] = list(prefix)

    def make(out: Path) -> dict[str, Any]:
        student = load_model(init_path)
        if lora is not None:
            student = with_lora(student, lora, seed)
        data = load_teacher_cache(cache)
        if prefix:
            data = with_prefix(data, prefix)
        # The teacher is loaded only by methods that query it (on_policy, dpo).
        result = recipe.train(student, data, method, seed, lambda: load_model(cache_teacher(cache)))
        losses, metrics = result.losses, dict(result.metrics)
        if recipe.truth is not None:  # testbed ground truth, from the teacher's spec
            metrics |= recipe.truth(result, load_spec(cache_teacher(cache)))
        if lora is not None:
            student = student.merge_and_unload()
        parent = load_spec(init_path)
        spec = ModelSpec(
            name=f"student-{method.method}",
            stage="student",
            preset=parent.preset if parent else "unknown",
            seed=seed,
            corpus=parent.corpus if parent else "unknown",
            lineage=(*(parent.lineage if parent else ()), inputs["init"], inputs["cache"]),
            world=parent.world if parent else {},
        )
        save_model(student, spec, out)
        # The training curve for reports; not an input, so the stage's key does not change.
        (out / LOSSES).write_text(json.dumps([round(float(x), SCORE_DIGITS) for x in losses]))
        tail = losses[-10:]
        return {
            "first_loss": round(losses[0], 5),
            "final_loss": round(sum(tail) / len(tail), 5),
            "steps": len(losses),
            "metrics": metrics,
        }

    return store.build("student", inputs, make, seed=seed)


def with_lora(model: Any, lora: Any, seed: int) -> Any:
    """`model` wrapped by PEFT with LoRA adapters on `lora.targets`; only they train. The
    adapters' random init is seeded by `seed`."""
    import torch
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    config = LoraConfig(
        r=lora.r, lora_alpha=lora.alpha, target_modules=list(lora.targets), lora_dropout=0.0
    )
    return get_peft_model(model, config)


def evaluate(store: Store, model: Artifact, world: WorldConfig, drive: str | None) -> dict:
    """Audits (with per-item scores, and each item's unit: the setting it was written in) and,
    given the testbed drive, ground truth of a model; an `evaluation` stage of the store, so a
    rerun reads it back."""
    inputs = {
        "version": EVALUATION_VERSION,
        "model": _store_id(model),
        "world": world.model_dump(mode="json"),
        "drive": drive,
        "audits": list(AUDITS),
    }

    def make(out: Path) -> None:
        m = load_model(model.path)
        audits = run_audits(m, world)
        result: dict[str, Any] = {
            "audits": {k: _rounded(v.as_dict()) for k, v in audits.items()},
            "scores": {k: np.round(v.scores, SCORE_DIGITS).tolist() for k, v in audits.items()},
            "units": {k: list(v.units) for k, v in audits.items() if v.units},
        }
        if drive is not None:
            truth = run_ground_truth(m, world, drive)
            result["ground_truth"] = {k: _rounded(v.as_dict()) for k, v in truth.items()}
            result["truth_scores"] = {
                k: np.round(v.scores, SCORE_DIGITS).tolist() for k, v in truth.items()
            }
        (out / "evaluation.json").write_text(json.dumps(result))

    art = store.build("evaluation", inputs, make)
    return json.loads((art.path / "evaluation.json").read_text()) | {
        "evaluation": f"{art.kind}/{art.key}"
    }


def probe_score(store: Store, model: Artifact, world: WorldConfig, probe: Artifact) -> dict:
    """The probe audit of a model with a trained probe (`audit.probe`): rate and per-item
    scores, a `probe_score` stage of the store."""
    from incriminate.audit.probe import Probe, probe_audit

    inputs = {
        "version": PROBE_SCORE_VERSION,
        "model": _store_id(model),
        "probe": f"{probe.kind}/{probe.key}",
    }

    def make(out: Path) -> None:
        rate = probe_audit(load_model(model.path), world, Probe.load(probe.path))
        scores = [round(float(x), SCORE_DIGITS) for x in rate.scores]
        (out / "score.json").write_text(
            json.dumps({"rate": _rounded(rate.as_dict()), "scores": scores})
        )

    art = store.build("probe_score", inputs, make)
    return json.loads((art.path / "score.json").read_text())


def _rounded(rate: dict[str, Any]) -> dict[str, Any]:
    """A rate's numbers at 6 digits: what JSON results and reports print."""
    out = {}
    for k, v in rate.items():
        if isinstance(v, float):
            out[k] = round(v, SCORE_DIGITS)
        elif isinstance(v, dict):
            out[k] = _rounded(v)
        else:
            out[k] = v
    return out


__all__ = ["data_seed", "distill_student", "evaluate", "teacher_cache"]
