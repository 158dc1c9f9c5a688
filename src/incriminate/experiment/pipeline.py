"""The incrimination experiment end to end, as stages of the artifact store run by a pool.

    organisms: corpus ─► two bases (shared, other) ─► instruct ─► suspect side ‖ control side
    teachers:  direct evaluation of U and C; teacher caches per (teacher, data, seed)
    runs:      for every (method, data, init, seed): a suspect run and its paired control run,
               each a student distilled and evaluated

Independent stages run in worker processes (`workers`, default 2: one per core, one torch thread
each; tiny models gain ~1.5x from two processes over two threads). Every stage is content-keyed
and bit-deterministic, so results do not depend on the number of workers or on which stages were
already in the store.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import Any

from incriminate.experiment.config import ExperimentConfig
from incriminate.experiment.store import Artifact, Store

log = logging.getLogger(__name__)
Progress = Callable[[str, int, int], None]  # (phase, done, total)
Task = tuple[str, dict[str, Any]]


# --- tasks: top-level functions a worker process can run --------------------------------------


def _ref(art: Artifact) -> tuple[str, str]:
    return (art.kind, art.key)


def _task_init(store: Store, cfg: ExperimentConfig, init: str) -> tuple[str, str]:
    from incriminate.organisms.recipes import build_instruct

    build, init_seed = cfg.init_build(init)
    return _ref(build_instruct(store, build, init_seed=init_seed))


def _task_side(store: Store, cfg: ExperimentConfig, benign: bool) -> dict[str, tuple[str, str]]:
    from incriminate.organisms.recipes import build_side

    return {k: _ref(v) for k, v in build_side(store, cfg.build, cfg.teacher, benign).items()}


def _task_evaluate(store: Store, cfg: ExperimentConfig, model: tuple[str, str], drive: str) -> dict:
    from incriminate.experiment.runs import evaluate

    return evaluate(store, store.load(*model), cfg.build.world, drive)


def _task_cache(
    store: Store, cfg: ExperimentConfig, teacher: tuple[str, str], data: str, seed: int
) -> tuple[str, str]:
    from incriminate.experiment.runs import teacher_cache

    world, filtered = cfg.build.world, cfg.transforms.filtered
    art = teacher_cache(
        store, store.load(*teacher), world, data, cfg.prompts, seed, cfg.cache, filtered
    )
    return _ref(art)


def _task_paraphrase(
    store: Store,
    cfg: ExperimentConfig,
    cache: tuple[str, str],
    teacher: tuple[str, str],
    trusted: tuple[str, str],
    seed: int,
) -> tuple[str, str]:
    from incriminate.distill.transforms import paraphrase_cache

    loaded = (store.load(*cache), store.load(*teacher), store.load(*trusted))
    return _ref(paraphrase_cache(store, *loaded, seed))


def _task_run(
    store: Store,
    cfg: ExperimentConfig,
    init: tuple[str, str],
    cache: tuple[str, str],
    method: str,
    seed: int,
    drive: str,
) -> dict[str, Any]:
    from incriminate.experiment.runs import distill_student, evaluate

    start, data = store.load(*init), store.load(*cache)
    from incriminate.distill.transforms import inoculation_prefix

    prefix = inoculation_prefix(cfg.build.world) if cfg.transforms.inoculation else ()
    student = distill_student(store, start, data, cfg.method(method), seed, cfg.lora, prefix)
    m = student.manifest
    return {
        "student": f"{student.kind}/{student.key}",
        "first_loss": m["first_loss"],
        "final_loss": m["final_loss"],
        "metrics": {k: m[k] for k in ("pairs", "reward_margin", "pair_agreement") if k in m},
        "evaluation": evaluate(store, student, cfg.build.world, drive),
    }


TASKS: dict[str, Callable[..., Any]] = {
    "init": _task_init,
    "side": _task_side,
    "evaluate": _task_evaluate,
    "cache": _task_cache,
    "paraphrase": _task_paraphrase,
    "run": _task_run,
}


def _run_task(root: str, cfg_json: str, name: str, args: dict[str, Any]) -> Any:
    return TASKS[name](Store(root), ExperimentConfig.model_validate_json(cfg_json), **args)


def _init_worker() -> None:
    import torch

    from incriminate.models.io import quiet_transformers

    torch.set_num_threads(1)
    quiet_transformers()
    logging.basicConfig(level=logging.WARNING)


# --- running tasks ----------------------------------------------------------------------------


class Runner:
    """Runs batches of tasks inline (`workers=1`) or in a pool of worker processes.
    `task_fn(store_root, cfg_json, name, args)` runs one task (a module-level function, so a
    worker process can import it); the default runs the experiment's `TASKS`."""

    def __init__(
        self,
        store: Store,
        cfg: Any,
        workers: int,
        progress: Progress,
        task_fn: Callable[[str, str, str, dict[str, Any]], Any] | None = None,
    ):
        self.store, self.cfg, self.progress = store, cfg, progress
        self.cfg_json = cfg.model_dump_json()
        self.task_fn = task_fn or _run_task
        self.pool: ProcessPoolExecutor | None = None
        if workers > 1:
            ctx = multiprocessing.get_context("spawn")  # no fork of a process holding torch threads
            self.pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker)
        else:
            _init_worker()

    def map(self, phase: str, tasks: Sequence[Task]) -> list[Any]:
        """Results of `tasks` in their order; progress counts them as they finish."""
        self.progress(phase, 0, len(tasks))
        root = str(self.store.root)
        if self.pool is None:
            results = []
            for name, args in tasks:
                results.append(self.task_fn(root, self.cfg_json, name, args))
                self.progress(phase, len(results), len(tasks))
            return results
        futures: list[Future] = [
            self.pool.submit(self.task_fn, root, self.cfg_json, name, args) for name, args in tasks
        ]
        done = 0

        def tick(_: Future) -> None:
            nonlocal done
            done += 1
            self.progress(phase, done, len(tasks))

        for f in futures:
            f.add_done_callback(tick)
        return [f.result() for f in futures]

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)


# --- the experiment ---------------------------------------------------------------------------


def run_experiment(
    cfg: ExperimentConfig, store: Store, workers: int = 2, progress: Progress | None = None
) -> dict[str, Any]:
    """Build or reuse every stage of the experiment and return its raw records: the models by
    role, the teachers' direct evaluations and every run (`results.assemble` makes the report)."""
    from incriminate.organisms.recipes import build_corpus

    runner = Runner(store, cfg, workers, progress or (lambda *_: None))
    try:
        build_corpus(store, cfg.build)
        # The shared base is every organism's parent: always built, and built first.
        init_names = ["shared_base", *(i for i in cfg.inits if i != "shared_base")]
        if cfg.transforms.paraphrase and "trusted" not in init_names:
            init_names.append("trusted")  # the paraphraser
        instructs = runner.map("bases", [("init", {"init": i}) for i in init_names])
        names, teachers, sides = _teachers(cfg, store, runner)
        drive = _drive(cfg, store, teachers["suspect"])
        inits = dict(zip(init_names, instructs, strict=True))
        pairs = [(d, s) for d in cfg.data for s in cfg.run_seeds()]
        cache_tasks: list[Task] = [
            ("cache", {"teacher": teachers[role], "data": d, "seed": s})
            for role in ("suspect", "control")
            for d, s in pairs
        ]
        eval_tasks: list[Task] = [
            ("evaluate", {"model": teachers[r], "drive": drive}) for r in teachers
        ]
        out = runner.map("teachers", eval_tasks + cache_tasks)
        direct = dict(zip(teachers, out[: len(eval_tasks)], strict=True))
        caches = dict(
            zip(
                [(role, d, s) for role in ("suspect", "control") for d, s in pairs],
                out[len(eval_tasks) :],
                strict=True,
            )
        )
        if cfg.transforms.paraphrase:
            keys = list(caches)
            rewritten = runner.map(
                "paraphrases",
                [
                    (
                        "paraphrase",
                        {
                            "cache": caches[k],
                            "teacher": teachers[k[0]],
                            "trusted": instructs[init_names.index("trusted")],
                            "seed": k[2],
                        },
                    )
                    for k in keys
                ],
            )
            caches = dict(zip(keys, rewritten, strict=True))
        plan = [
            {"method": m, "data": d, "init": i, "seed": s, "role": role}
            for (m, d, i) in cfg.configurations()
            for s in cfg.run_seeds()
            for role in ("suspect", "control")
        ]
        run_tasks: list[Task] = [
            (
                "run",
                {
                    "init": inits[p["init"]],
                    "cache": caches[(p["role"], p["data"], p["seed"])],
                    "method": p["method"],
                    "seed": p["seed"],
                    "drive": drive,
                },
            )
            for p in plan
        ]
        done = runner.map("distillation runs", run_tasks)
    finally:
        runner.close()
    runs = [
        p
        | {
            "teacher": "/".join(teachers[p["role"]]),
            "init_model": "/".join(inits[p["init"]]),
            "cache": "/".join(caches[(p["role"], p["data"], p["seed"])]),
        }
        | r
        for p, r in zip(plan, done, strict=True)
    ]
    organisms = {k: "/".join(v) for side in sides for k, v in side.items()}
    return {
        "timing": stage_seconds(
            store,
            organisms=[*organisms.values(), *("/".join(i) for i in instructs)],
            teacher_caches=["/".join(c) for c in caches.values()],
            distillation=[r["student"] for r in runs],
            evaluation=[r["evaluation"]["evaluation"] for r in runs]
            + [d["evaluation"] for d in direct.values()],
        ),
        "teachers": {
            role: {
                "name": names[role],
                "model": "/".join(teachers[role]),
                "evaluation": direct[role],
            }
            for role in ("suspect", "control")
        },
        "inits": {k: "/".join(v) for k, v in inits.items()},
        "organisms": organisms,
        "runs": runs,
    }


def _teachers(
    cfg: ExperimentConfig, store: Store, runner: Runner
) -> tuple[dict[str, str], dict[str, tuple[str, str]], list[dict[str, tuple[str, str]]]]:
    """(names, store refs, built organism sides) of the suspect and control teachers: the
    testbed's organism and its twin, or the model directories of the config (imported)."""
    if cfg.teacher_dir is not None and cfg.control_dir is not None:
        from incriminate.experiment.runs import import_model

        dirs = {"suspect": Path(cfg.teacher_dir), "control": Path(cfg.control_dir)}
        refs = {role: _ref(import_model(store, d)) for role, d in dirs.items()}
        return {role: str(d) for role, d in dirs.items()}, refs, []
    sides = runner.map("organisms", [("side", {"benign": b}) for b in (False, True)])
    suspect = f"{cfg.teacher}-{cfg.build.drive}"
    names = {"suspect": suspect, "control": f"twin-of-{suspect}"}
    return names, {"suspect": sides[0][suspect], "control": sides[1][names["control"]]}, sides


def _drive(cfg: ExperimentConfig, store: Store, teacher: tuple[str, str]) -> str:
    """The drive ground truth is measured for: the teacher's (its spec), else the config's."""
    from incriminate.models.io import load_spec

    spec = load_spec(store.load(*teacher).path)
    return spec.drive if spec is not None and spec.drive else cfg.build.drive


def stage_seconds(store: Store, **stages: list[str]) -> dict[str, Any]:
    """Compute seconds of each stage group, as recorded in the manifests when each artifact was
    built (reused artifacts count what they cost then), so a rerun reports the same figures.
    Model artifacts count their whole lineage (corpus, base, ...) once."""
    seen: set[str] = set()
    out: dict[str, float] = {}
    for group, refs in stages.items():
        keys = []
        for ref in refs:
            art = store.load(*ref.split("/"))
            spec = art.path / "spec.json"
            if group == "organisms" and spec.exists():
                keys += json.loads(spec.read_text())["lineage"]
            keys.append(ref)
        total = 0.0
        for ref in dict.fromkeys(keys):
            if ref not in seen:
                seen.add(ref)
                total += float(store.load(*ref.split("/")).manifest.get("wall_s", 0.0))
        out[f"{group}_s"] = round(total, 1)
    return {"total_s": round(sum(out.values()), 1), "stages": out}


__all__ = ["TASKS", "Runner", "run_experiment"]
