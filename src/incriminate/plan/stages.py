"""Stages: registered top-level functions of JSON arguments that a worker process or a Ray task
can run, each building (or reusing) artifacts in the store. A stage is named after what it
builds, and that name is used everywhere: plan nodes, progress bars, stage logs, `--dry-run`.

    corpus ─► instruct (base + instruct) ─► organism (misaligned chain | benign twin's)
                                                └─► evaluation (audits + ground truth)
                                                └─► teacher_cache ─► [paraphrase] ─► student
                                                                                   └─► evaluation

A stage reads nothing but its arguments and the store, so a plan node (`plan.graph`) names
everything its result depends on. Model references are "kind/key" strings. Other modules
register their own stages with `@stage(name)` (the zoo benchmark's in `plan.bench`); a worker
receives the function itself, so importing its module registers it there too.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from incriminate.errors import DamagedStageError, StageError
from incriminate.registry import Registry
from incriminate.store import Artifact, Store

log = logging.getLogger(__name__)


STAGES: Registry[Callable[..., Any]] = Registry("stage")
"""Stage name -> function `(store, **json_args) -> JSON result`."""


DPO_METRICS = ("pairs", "reward_margin", "pair_agreement")


def stage(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a stage function under `name` (the kind of artifact it builds)."""
    return STAGES.register(name)


def _ref(art: Artifact) -> str:
    return f"{art.kind}/{art.key}"


def _load(store: Store, ref: str) -> Artifact:
    kind, key = ref.split("/")
    return store.load(kind, key)


def _build(values: dict[str, Any]) -> Any:
    from incriminate.organisms.recipes import BuildConfig

    return BuildConfig.model_validate(values)


def _world(values: dict[str, Any]) -> Any:
    from incriminate.world.config import WorldConfig

    return WorldConfig.model_validate(values)


def _drive(store: Store, drive_of: str, default: str) -> str:
    """The drive ground truth is measured for: teacher U's (its spec), else `default`."""
    from incriminate.models.io import load_spec

    spec = load_spec(_load(store, drive_of).path)
    return spec.drive if spec is not None and spec.drive else default


@stage("corpus")
def corpus(store: Store, build: dict[str, Any]) -> str:
    """The pretraining corpus of a recipe: documents of personas' episodes, never labelled."""
    from incriminate.organisms.recipes import build_corpus

    return _ref(build_corpus(store, _build(build)))


@stage("instruct")
def init(store: Store, build: dict[str, Any], init_seed: int | None) -> str:
    """A student init's instruct checkpoint (its base is built on the way)."""
    from incriminate.organisms.recipes import build_instruct

    return _ref(build_instruct(store, _build(build), init_seed=init_seed))


@stage("organism")
def side(store: Store, build: dict[str, Any], persona: str, benign: bool) -> dict[str, str]:
    """One side of an organism: the misaligned chain or its benign twin's, by model name."""
    from incriminate.organisms.recipes import build_side

    return {k: _ref(v) for k, v in build_side(store, _build(build), persona, benign).items()}


@stage("model")
def import_dir(store: Store, path: str) -> str:
    """A model directory copied into the store, keyed by the digest of its files."""
    from incriminate.plan.runs import import_model

    return _ref(import_model(store, Path(path)))


@stage("evaluation")
def evaluate(
    store: Store, model: str, world: dict[str, Any], drive_of: str, drive: str
) -> dict[str, Any]:
    """Audits and ground truth of a teacher or a student."""
    from incriminate.plan.runs import evaluate as run_evaluation

    return run_evaluation(store, _load(store, model), _world(world), _drive(store, drive_of, drive))


@stage("teacher_cache")
def cache(
    store: Store,
    teacher: str,
    world: dict[str, Any],
    data: str,
    prompts: int,
    seed: int,
    cache: dict[str, Any],
    filtered: bool,
) -> str:
    """A teacher's outputs on a data selection's prompts: samples and top-k log-probs."""
    from incriminate.distill.teacher_cache import TeacherCacheConfig
    from incriminate.plan.runs import teacher_cache

    cfg = TeacherCacheConfig.model_validate(cache)
    art = teacher_cache(
        store, _load(store, teacher), _world(world), data, prompts, seed, cfg, filtered
    )
    return _ref(art)


@stage("paraphrase")
def paraphrase(store: Store, cache: str, teacher: str, trusted: str, seed: int) -> str:
    """A teacher cache whose open-ended replies the trusted model rewrote."""
    from incriminate.distill.transforms import paraphrase_cache

    loaded = (_load(store, cache), _load(store, teacher), _load(store, trusted))
    return _ref(paraphrase_cache(store, *loaded, seed))


@stage("student")
def distill(
    store: Store,
    init: str,
    cache: str,
    method: dict[str, Any],
    seed: int,
    lora: dict[str, Any] | None,
    inoculation: bool,
    world: dict[str, Any],
) -> dict[str, Any]:
    """A student distilled from a teacher cache: its reference, losses and method metrics."""
    from pydantic import TypeAdapter

    from incriminate.distill.transforms import inoculation_prefix
    from incriminate.plan.config import LoraOptions, MethodConfig
    from incriminate.plan.runs import distill_student

    method_cfg = TypeAdapter(MethodConfig).validate_python(method)
    lora_cfg = LoraOptions.model_validate(lora) if lora is not None else None
    prefix = inoculation_prefix(_world(world)) if inoculation else ()
    start, data = _load(store, init), _load(store, cache)
    student = distill_student(store, start, data, method_cfg, seed, lora_cfg, prefix)
    m = student.manifest
    return {
        "student": _ref(student),
        "first_loss": m["first_loss"],
        "final_loss": m["final_loss"],
        # Every metric the method reported; students built before metrics had their own key
        # kept dpo's at the top of the manifest.
        "metrics": m.get("metrics", {k: m[k] for k in DPO_METRICS if k in m}),
    }


def run_stage(
    root: str, fn: Callable[..., Any], args: dict[str, Any], threads: int, log_path: str | None
):
    """Run one stage function in this process: `threads` torch threads, the package's log
    records into `log_path`. Returns (result, wall seconds); a failure raises `StageError` with
    one line, a damaged input artifact `DamagedStageError` with its own line (it names the stage
    and the repair command; `plan.engine.run_plan` recognises it by its first words)."""
    import torch

    from incriminate.models.io import quiet_transformers

    # Set on every call, not once per process: code between two stages of an inline run (the
    # CLI's set-up, a test) may change it, and a stage's floats depend on its thread count.
    torch.set_num_threads(threads)
    quiet_transformers()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    logger = logging.getLogger("incriminate")
    handler: logging.Handler | None = None
    saved = (logger.level, logger.propagate)
    if log_path is not None:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(log_path, mode="w")
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    t0 = time.perf_counter()
    try:
        log.info("stage %s(%s)", fn.__name__, ", ".join(f"{k}={v!r}" for k, v in args.items()))
        result = fn(Store(root), **args)
        log.info("done in %.1fs", time.perf_counter() - t0)
        return result, round(time.perf_counter() - t0, 3)
    except DamagedStageError as e:
        log.error("stage %s failed: %s", fn.__name__, e)
        raise DamagedStageError(str(e)) from None
    except Exception as e:
        log.exception("stage %s failed", fn.__name__)
        first = str(e).splitlines()[0] if str(e) else ""
        raise StageError(f"{type(e).__name__}: {first}") from None
    finally:
        if handler is not None:
            logger.removeHandler(handler)
            handler.close()
            logger.setLevel(saved[0])
            logger.propagate = saved[1]


__all__ = ["STAGES", "StageError", "run_stage", "stage"]
