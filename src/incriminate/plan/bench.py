"""The zoo benchmark as stages of the artifact store, run by the experiment's worker pool.

    bases:      instruct checkpoint of every base seed (and of any other student init)
    organisms:  the zoo's drive stages, then its evasion stages (each built once)
    teachers:   direct audits and ground truth of every zoo model; teacher caches for every
                (model, data selection, seed) the batteries need
    probes:     per (base seed, drive) a probe trained on the *other* base seeds' organisms of the
                *other* drives (`audit.probe.eligible`); its scores on the teachers
    runs:       every zoo model × configuration × seed: a student, its audits, its probe score

Suspects and controls are all "zoo models": the students of a control are computed once and
serve every suspect it controls for. `bench_results.assemble` turns the records into bench.json.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from incriminate.organisms import zoo as zoo_mod
from incriminate.plan.bench_config import BenchConfig, Configuration
from incriminate.plan.engine import Progress, Runner, Task
from incriminate.plan.experiment import stage_seconds
from incriminate.store import Artifact, Store

Ref = tuple[str, str]


def _ref(art: Artifact) -> Ref:
    return (art.kind, art.key)


# --- tasks: top-level functions a worker process can run --------------------------------------


def _task_instruct(store: Store, cfg: BenchConfig, seed: int, drive: str, init: str) -> Ref:
    from incriminate.organisms.recipes import build_instruct

    return _ref(build_instruct(store, cfg.zoo.init_build(init, seed, drive)))


def _task_model(store: Store, cfg: BenchConfig, name: str) -> Ref:
    return _ref(zoo_mod.build_model(store, cfg.zoo, zoo_mod.models(cfg.zoo)[name]))


def _task_evaluate(store: Store, cfg: BenchConfig, model: Ref, drive: str) -> dict:
    from incriminate.plan.runs import evaluate

    return evaluate(store, store.load(*model), cfg.zoo.build.world, drive)


def _task_cache(
    store: Store, cfg: BenchConfig, model: Ref, data: str, seed: int, base_seed: int, drive: str
) -> Ref:
    from incriminate.plan.runs import teacher_cache

    exp = cfg.experiment(base_seed, drive)
    art = teacher_cache(
        store, store.load(*model), exp.build.world, data, exp.prompts, seed, exp.cache
    )
    return _ref(art)


def _task_probe(store: Store, cfg: BenchConfig, references: list[dict[str, Any]]) -> Ref:
    """A probe trained on `references` (name, model ref, label): a `probe` stage."""
    from incriminate.audit.probe import PROBE_VERSION, features, train_probe
    from incriminate.models.io import load_model

    world = cfg.zoo.build.world
    inputs = {
        "version": PROBE_VERSION,
        "world": world.model_dump(mode="json"),
        "l2": cfg.probe_l2,
        "references": [[r["name"], "/".join(r["model"]), r["label"]] for r in references],
    }

    def make(out: Path) -> dict[str, Any]:
        feats = [features(load_model(store.load(*r["model"]).path), world) for r in references]
        probe = train_probe(
            feats, [r["label"] for r in references], [r["name"] for r in references], cfg.probe_l2
        )
        probe.save(out)
        return {"references": len(references)}

    return _ref(store.build("probe", inputs, make))


def _task_probe_score(store: Store, cfg: BenchConfig, model: Ref, probe: Ref) -> dict:
    from incriminate.plan.runs import probe_score

    return probe_score(store, store.load(*model), cfg.zoo.build.world, store.load(*probe))


def _task_run(
    store: Store,
    cfg: BenchConfig,
    init: Ref,
    cache: Ref,
    method: str,
    seed: int,
    base_seed: int,
    drive: str,
    probe: Ref,
) -> dict[str, Any]:
    from incriminate.plan.runs import distill_student, evaluate, probe_score

    exp = cfg.experiment(base_seed, drive)
    student = distill_student(
        store, store.load(*init), store.load(*cache), exp.method(method), seed, None, ()
    )
    return {
        "student": f"{student.kind}/{student.key}",
        "final_loss": student.manifest["final_loss"],
        "evaluation": evaluate(store, student, exp.build.world, drive),
        "probe": probe_score(store, student, exp.build.world, store.load(*probe)),
    }


TASKS = {
    "instruct": _task_instruct,
    "model": _task_model,
    "evaluate": _task_evaluate,
    "cache": _task_cache,
    "probe": _task_probe,
    "probe_score": _task_probe_score,
    "run": _task_run,
}


def _run_bench_task(root: str, cfg_json: str, name: str, args: dict[str, Any]) -> Any:
    return TASKS[name](Store(root), BenchConfig.model_validate_json(cfg_json), **args)


# --- the benchmark ----------------------------------------------------------------------------


def run_seeds(cfg: BenchConfig) -> dict[str, tuple[Configuration, list[int]]]:
    """Every configuration of the batteries with the seeds it runs (the most any battery asks)."""
    out: dict[str, tuple[Configuration, list[int]]] = {}
    for b in cfg.batteries:
        for c in b.configurations:
            n = max(b.seeds, len(out[c.name][1]) if c.name in out else 0)
            out[c.name] = (c, list(range(n)))
    return out


def run_bench(
    cfg: BenchConfig, store: Store, workers: int = 2, progress: Progress | None = None
) -> dict[str, Any]:
    """Build or reuse every stage of the benchmark; return its raw records for `assemble`."""
    zoo = cfg.zoo
    models = zoo_mod.models(zoo)
    grid = run_seeds(cfg)
    inits = sorted({c.init for c, _ in grid.values()} | {"shared_base"})
    runner = Runner(store, cfg, workers, progress or (lambda *_: None), _run_bench_task)
    try:
        # (seed, drive, init) keys that name one checkpoint (seed 0's other_base is seed 1's
        # shared_base) are built by one task, not by two workers at once.
        init_keys = [(s, d, i) for s in zoo.base_seeds for d in zoo.drives for i in inits]
        recipe = {k: zoo.init_build(k[2], k[0], k[1]).model_dump_json() for k in init_keys}
        first = list({recipe[k]: k for k in reversed(init_keys)}.values())[::-1]
        built = runner.map(
            "bases", [("instruct", {"seed": s, "drive": d, "init": i}) for s, d, i in first]
        )
        by_recipe = {recipe[k]: ref for k, ref in zip(first, built, strict=True)}
        instructs = {k: by_recipe[recipe[k]] for k in init_keys}
        refs: dict[str, Ref] = {}
        for depth, phase in ((1, "organisms: drive stage"), (2, "organisms: evasion stage")):
            names = [n for n, m in models.items() if len(m.stages) == depth]
            done = runner.map(phase, [("model", {"name": n}) for n in names])
            refs |= dict(zip(names, done, strict=True))
        caches_keys = [(n, c.data, s) for n in models for c, seeds in grid.values() for s in seeds]
        caches_keys = list(dict.fromkeys(caches_keys))
        tasks: list[Task] = [
            ("evaluate", {"model": refs[n], "drive": models[n].drive}) for n in models
        ]
        tasks += [
            (
                "cache",
                {
                    "model": refs[n],
                    "data": d,
                    "seed": s,
                    "base_seed": models[n].base_seed,
                    "drive": models[n].drive,
                },
            )
            for n, d, s in caches_keys
        ]
        out = runner.map("teachers", tasks)
        direct = dict(zip(models, out[: len(models)], strict=True))
        caches = dict(zip(caches_keys, out[len(models) :], strict=True))
        probes = _probes(cfg, runner, models, refs)
        scores = runner.map(
            "probe scores",
            [
                ("probe_score", {"model": refs[n], "probe": probes[(m.base_seed, m.drive)]})
                for n, m in models.items()
            ],
        )
        for n, score in zip(models, scores, strict=True):
            direct[n]["probe"] = score
        plan = [(n, name, s) for n in models for name, (_, seeds) in grid.items() for s in seeds]
        run_tasks: list[Task] = []
        for n, name, s in plan:
            m, c = models[n], grid[name][0]
            run_tasks.append(
                (
                    "run",
                    {
                        "init": instructs[(m.base_seed, m.drive, c.init)],
                        "cache": caches[(n, c.data, s)],
                        "method": c.method,
                        "seed": s,
                        "base_seed": m.base_seed,
                        "drive": m.drive,
                        "probe": probes[(m.base_seed, m.drive)],
                    },
                )
            )
        done = runner.map("distillation runs", run_tasks)
    finally:
        runner.close()
    runs = {f"{n}|{name}|{s}": r for (n, name, s), r in zip(plan, done, strict=True)}
    return {
        "models": {n: "/".join(r) for n, r in refs.items()},
        "probes": {f"s{k[0]}/{k[1]}": "/".join(v) for k, v in probes.items()},
        "teachers": direct,
        "runs": runs,
        "timing": stage_seconds(
            store,
            organisms=[*("/".join(r) for r in refs.values()), *("/".join(i) for i in built)],
            teacher_caches=["/".join(c) for c in caches.values()],
            probes=["/".join(p) for p in probes.values()],
            distillation=[r["student"] for r in done],
            evaluation=[r["evaluation"]["evaluation"] for r in done]
            + [d["evaluation"] for d in direct.values()],
        ),
    }


def _probes(
    cfg: BenchConfig, runner: Runner, models: dict[str, zoo_mod.ZooModel], refs: dict[str, Ref]
) -> dict[tuple[int, str], Ref]:
    """Per (base seed, drive): the probe trained on the eligible zoo models (other base seeds,
    other drives). Reference labels come from the zoo manifest: they are the auditor's own
    organisms, whose nature it knows; the audited model's label is never among them."""
    from incriminate.audit.probe import Reference, eligible

    labels = {e.name: e.label for e in zoo_mod.entries(cfg.zoo)}
    references = [
        Reference(n, m.base_seed, m.drive, labels.get(n, 0), Path(n)) for n, m in models.items()
    ]
    keys = [(s, d) for s in cfg.zoo.base_seeds for d in cfg.zoo.drives]
    tasks: list[Task] = []
    for s, d in keys:
        chosen = eligible(references, s, d)
        tasks.append(
            (
                "probe",
                {
                    "references": [
                        {"name": r.name, "model": refs[r.name], "label": r.label} for r in chosen
                    ]
                },
            )
        )
    return dict(zip(keys, runner.map("probes", tasks), strict=True))


__all__ = ["TASKS", "run_bench", "run_seeds"]
