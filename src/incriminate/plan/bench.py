"""The zoo benchmark as plan nodes, run by the engine like a demo or a sweep.

    corpus ─► instruct (every base seed × drive × student init)
                 └─► zoo_model (drive stage) ─► zoo_model (evasion stage)
                        ├─► evaluation (direct audits and ground truth)
                        ├─► teacher_cache (model, data, seed) ─► student ─► evaluation
                        │          └─► cache_read (U's caches against C's, per pair)
                        ├─► text_sample ─► text_test (U's text against C's, per pair)
                        └─► probe (per base seed) ─► probe_score (of every zoo model and every
                                                      student)

A base seed's probe is trained on the *other* base seeds' organisms, labelled by their recipes
(`audit.probe.eligible`, `zoo.reference_labels`). Suspects U, the auditor's reference teachers
and the controls are all zoo models: the students of a control are computed once and serve every
teacher it controls for. Which instruct checkpoint a student starts from follows U's lineage
(`shared_base` is U's parent checkpoint; the other inits are the auditor's builds of that
recipe), never U's class or drive label. `collect_bench` turns the
nodes' results into the raw records `report.bench_results.assemble` makes bench.json from.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from incriminate.errors import ConfigError
from incriminate.organisms import zoo as zoo_mod
from incriminate.plan.bench_config import BenchConfig, Configuration
from incriminate.plan.engine import Progress, run_plan
from incriminate.plan.executors import Executor
from incriminate.plan.experiment import stage_seconds
from incriminate.plan.graph import Node, Plan, ref
from incriminate.plan.stages import _load, _ref, _world, stage
from incriminate.store import Store

# --- stages the bench adds to those of `plan.stages` ------------------------------------------


@stage("zoo_model")
def zoo_model(
    store: Store,
    build: dict[str, Any],
    name: str,
    stages: list[dict],
    robust: dict[str, Any] | None = None,
) -> str:
    """A zoo model (a teacher U or a control, kind `organism`): its fine-tuning stages from the
    instruct checkpoint of `build` (the organism's base seed and drive); `robust`, a robust
    schemer's evasion objective (`organisms.robust.RobustConfig`)."""
    from incriminate.organisms.recipes import BuildConfig
    from incriminate.organisms.robust import RobustConfig
    from incriminate.world.personas import Agent

    b = BuildConfig.model_validate(build)
    steps = tuple(
        zoo_mod.Stage(
            s["stage"],
            Agent(**s["agent"]),
            s["replicate"],
            s.get("train_scale", 1),
            s.get("robust_twin"),
            s.get("draw", 0),
        )
        for s in stages
    )
    model = zoo_mod.ZooModel(name, b.drive, b.seed, steps)
    zoo = zoo_mod.ZooConfig(build=b, robust=RobustConfig.model_validate(robust or {}))
    return _ref(zoo_mod.build_model(store, zoo, model))


def _stage_args(s: zoo_mod.Stage) -> dict[str, Any]:
    """A recipe stage as `zoo_model`'s argument; `train_scale` only when it is not 1,
    `robust_twin` only when set and `draw` only when not 0, so the keys of models built before
    they existed hold."""
    out = asdict(s)
    if out["train_scale"] == 1:
        del out["train_scale"]
    if out["robust_twin"] is None:
        del out["robust_twin"]
    if out["draw"] == 0:
        del out["draw"]
    return out


@stage("probe")
def probe(store: Store, references: list[dict[str, Any]], world: dict[str, Any], l2: float) -> str:
    """A probe trained on `references` (name, model, label): the auditor's own organisms."""
    from incriminate.audit.probe import PROBE_VERSION, features, train_probe
    from incriminate.models.io import load_model

    w = _world(world)
    inputs = {
        "version": PROBE_VERSION,
        "world": w.model_dump(mode="json"),
        "l2": l2,
        "references": [[r["name"], r["model"], r["label"]] for r in references],
    }

    def make(out: Path) -> dict[str, Any]:
        feats = [features(load_model(_load(store, r["model"]).path), w) for r in references]
        labels, names = [r["label"] for r in references], [r["name"] for r in references]
        train_probe(feats, labels, names, l2).save(out)
        return {"references": len(references)}

    return _ref(store.build("probe", inputs, make))


@stage("probe_score")
def probe_score(store: Store, model: str, world: dict[str, Any], probe: str) -> dict[str, Any]:
    """The probe audit of a model: rate and per-item scores."""
    from incriminate.plan.runs import probe_score as score

    return score(store, _load(store, model), _world(world), _load(store, probe))


# --- the plan -----------------------------------------------------------------------------------


def run_seeds(cfg: BenchConfig) -> dict[str, tuple[Configuration, list[int]]]:
    """Every configuration of the batteries with the seeds it runs (the most any battery asks)."""
    out: dict[str, tuple[Configuration, list[int]]] = {}
    for b in cfg.batteries:
        for c in b.configurations:
            n = max(b.seeds, len(out[c.name][1]) if c.name in out else 0)
            out[c.name] = (c, list(range(n)))
    return out


@dataclass
class BenchNodes:
    """The nodes of the benchmark that its raw records are collected from."""

    cfg: BenchConfig
    instructs: dict[tuple[int, str, str], Node]  # (base seed, drive, init): one node per recipe
    models: dict[str, Node]  # zoo model name -> its `zoo_model` node; drive stages first
    direct: dict[str, Node]  # its evaluation
    scores: dict[str, Node]  # its probe score
    caches: dict[tuple[str, str, int], Node]  # (zoo model, data, seed)
    probes: dict[int, Node]  # base seed
    runs: dict[str, tuple[Node, Node, Node]]  # "model|configuration|seed": student, evaluation,
    # probe score
    texts: dict[str, Node]  # teacher U (suspect or reference) -> its text test against C
    cache_reads: dict[str, Node]  # teacher U -> its cache read against C


def plan_bench(plan: Plan, cfg: BenchConfig) -> BenchNodes:
    """Add every stage of the benchmark to `plan` (see the module docstring). Raises
    ConfigError when a probe has no benign or no misaligned reference to train on."""
    zoo, world = cfg.zoo, cfg.zoo.build.world.model_dump(mode="json")
    models = zoo_mod.models(zoo)
    grid = run_seeds(cfg)
    inits = sorted({c.init for c, _ in grid.values()} | {"shared_base"})
    instructs = {}
    for s in zoo.base_seeds:
        for d in zoo.drives:
            for i in inits:  # one node per recipe: seed 0's other_base is seed 1's shared_base
                b = zoo.init_build(i, s, d).model_dump(mode="json")
                corpus = plan.add("corpus", build=b)
                instructs[(s, d, i)] = plan.add(
                    "instruct", build=b, init_seed=None, after=ref(corpus)
                )
    built = _plan_models(plan, zoo, models, instructs)
    drive = {
        n: {"world": world, "drive_of": ref(built[n]), "drive": m.drive} for n, m in models.items()
    }
    direct = {n: plan.add("evaluation", model=ref(built[n]), **drive[n]) for n in models}
    caches: dict[tuple[str, str, int], Node] = {}
    for n in models:
        for c, seeds in grid.values():
            for s in seeds:
                if (n, c.data, s) not in caches:
                    caches[(n, c.data, s)] = plan.add(
                        "teacher_cache",
                        teacher=ref(built[n]),
                        world=world,
                        data=c.data,
                        prompts=cfg.prompts,
                        seed=s,
                        cache=cfg.cache.model_dump(mode="json"),
                        filtered=False,
                    )
    probes = _plan_probes(plan, cfg, models, built, world)
    probe_of = {n: ref(probes[m.base_seed]) for n, m in models.items()}
    scores = {
        n: plan.add("probe_score", model=ref(built[n]), world=world, probe=probe_of[n])
        for n in models
    }
    runs = {}
    methods = {(s, d): cfg.experiment(s, d) for s in zoo.base_seeds for d in zoo.drives}
    for n, m in models.items():
        for name, (c, seeds) in grid.items():
            method = methods[(m.base_seed, m.drive)].method(c.method).model_dump(mode="json")
            for s in seeds:
                student = plan.add(
                    "student",
                    init=ref(instructs[(m.base_seed, m.drive, c.init)]),
                    cache=ref(caches[(n, c.data, s)]),
                    method=method,
                    seed=s,
                    lora=None,
                    inoculation=False,
                    world=world,
                )
                model = ref(student, "student")
                evaluation = plan.add("evaluation", model=model, **drive[n])
                score = plan.add("probe_score", model=model, world=world, probe=probe_of[n])
                runs[f"{n}|{name}|{s}"] = (student, evaluation, score)
    texts, cache_reads = _plan_direct(plan, cfg, built, caches, world)
    return BenchNodes(
        cfg, instructs, built, direct, scores, caches, probes, runs, texts, cache_reads
    )


def _plan_direct(
    plan: Plan,
    cfg: BenchConfig,
    built: dict[str, Node],
    caches: dict[tuple[str, str, int], Node],
    world: dict[str, Any],
) -> tuple[dict[str, Node], dict[str, Node]]:
    """The text audit and the cache read of every teacher U (suspects and references) against
    its control, the pair the auditor's view names: a `text_sample` per model (one seed for all,
    common random numbers), a `text_test` per pair, and a `cache_read` per pair over every cache
    of the battery grid."""
    from incriminate.plan import text  # noqa: F401  (registers the direct baseline's stages)

    samples = {
        n: plan.add("text_sample", model=ref(node), world=world, seed=0)
        for n, node in built.items()
    }
    texts, reads = {}, {}
    keys = sorted({(d, s) for (_, d, s) in caches})
    for e in [*zoo_mod.entries(cfg.zoo), *zoo_mod.reference_pairs(cfg.zoo)]:
        u = zoo_mod.auditor_view(e)
        texts[u.name] = plan.add(
            "text_test",
            teacher=ref(samples[u.name], "text_sample"),
            control=ref(samples[u.control], "text_sample"),
        )
        reads[u.name] = plan.add(
            "cache_read",
            teacher=[ref(caches[(u.name, d, s)]) for d, s in keys],
            control=[ref(caches[(u.control, d, s)]) for d, s in keys],
        )
    return texts, reads


def _plan_models(
    plan: Plan,
    zoo: zoo_mod.ZooConfig,
    models: dict[str, zoo_mod.ZooModel],
    instructs: dict[tuple[int, str, str], Node],
) -> dict[str, Node]:
    """A `zoo_model` node per zoo model, after the node of the checkpoint it starts from: an
    evasion stage's drive-stage model, else the instruct checkpoint. Drive-stage models come
    first (the order of the raw records' `models`, as the benchmark's phases listed them)."""
    built: dict[str, Node] = {}

    def order(kv: tuple[str, zoo_mod.ZooModel]) -> tuple[int, bool]:  # robust after twins
        return len(kv[1].stages), any(s.robust_twin for s in kv[1].stages)

    for name, m in sorted(models.items(), key=order):
        parent = next(
            (built[n] for n, o in models.items() if n in built and _parent_of(o, m)),
            instructs[(m.base_seed, m.drive, "shared_base")],
        )
        b = zoo.build_for(m.base_seed, m.drive).model_dump(mode="json")
        stages = [_stage_args(s) for s in m.stages]
        twins = [f"{s.robust_twin}-{m.drive}-s{m.base_seed}" for s in m.stages if s.robust_twin]
        if not twins:
            built[name] = plan.add(
                "zoo_model", build=b, name=name, stages=stages, after=ref(parent)
            )
            continue
        after = [ref(parent), *(ref(built[t]) for t in twins)]
        robust = zoo.robust.model_dump(mode="json")
        built[name] = plan.add(
            "zoo_model", build=b, name=name, stages=stages, robust=robust, after=after
        )
    return built


def _parent_of(parent: zoo_mod.ZooModel, model: zoo_mod.ZooModel) -> bool:
    """Is `parent` the model `model`'s last stage fine-tunes?"""
    same = (parent.base_seed, parent.drive) == (model.base_seed, model.drive)
    return same and len(model.stages) > 1 and parent.stages == model.stages[:-1]


def _plan_probes(
    plan: Plan,
    cfg: BenchConfig,
    models: dict[str, zoo_mod.ZooModel],
    nodes: dict[str, Node],
    world: dict[str, Any],
) -> dict[int, Node]:
    """Per base seed: the probe trained on every zoo model of the *other* base seeds, the
    auditor's own organisms, labelled by the recipes it wrote (`zoo.reference_labels`). No
    suspect's drive, class or manifest label chooses or labels a reference, and no model of the
    seed a probe scores is among its references."""
    from incriminate.audit.probe import Reference, eligible

    labels = zoo_mod.reference_labels(cfg.zoo)
    references = [Reference(n, m.base_seed, labels[n], Path(n)) for n, m in models.items()]
    out = {}
    for s in cfg.zoo.base_seeds:
        try:
            chosen = eligible(references, s)
        except ValueError as e:
            raise ConfigError(f"the probe for base seed {s}: {e}") from None
        refs = [{"name": r.name, "model": ref(nodes[r.name]), "label": r.label} for r in chosen]
        out[s] = plan.add("probe", references=refs, world=world, l2=cfg.probe_l2)
    return out


def collect_bench(nodes: BenchNodes, results: dict[str, Any], store: Store) -> dict[str, Any]:
    """The benchmark's raw records from the results of its nodes: what `assemble` reads."""
    models = {n: results[node.id] for n, node in nodes.models.items()}
    teachers = {
        n: results[node.id] | {"probe": results[nodes.scores[n].id]}
        for n, node in nodes.direct.items()
    }
    runs = {
        key: {
            "student": results[student.id]["student"],
            "final_loss": results[student.id]["final_loss"],
            "evaluation": results[evaluation.id],
            "probe": results[score.id],
        }
        for key, (student, evaluation, score) in nodes.runs.items()
    }
    probes = {f"s{s}": results[node.id] for s, node in nodes.probes.items()}
    for n, node in nodes.texts.items():
        teachers[n]["text"] = results[node.id]
        teachers[n]["cache_read"] = results[nodes.cache_reads[n].id]
    instructs = dict.fromkeys(results[node.id] for node in nodes.instructs.values())
    return {
        "models": models,
        "probes": probes,
        "teachers": teachers,
        "runs": runs,
        "timing": stage_seconds(
            store,
            organisms=[*models.values(), *instructs],
            teacher_caches=[results[c.id] for c in nodes.caches.values()],
            probes=list(probes.values()),
            distillation=[r["student"] for r in runs.values()],
            evaluation=[r["evaluation"]["evaluation"] for r in runs.values()]
            + [t["evaluation"] for t in teachers.values()],
        ),
    }


def run_bench(
    cfg: BenchConfig,
    store: Store,
    workers: int = 2,
    progress: Progress | None = None,
    executor: Executor | None = None,
    log_dir: Path | None = None,
) -> dict[str, Any]:
    """Build or reuse every stage of the benchmark and return its raw records for `assemble`.
    Raises `StageError` if a stage fails (its log is in `log_dir`)."""
    plan = Plan()
    nodes = plan_bench(plan, cfg)
    results = run_plan(plan, store, workers, progress, executor, log_dir)
    return collect_bench(nodes, results, store)


__all__ = [
    "BenchNodes",
    "collect_bench",
    "plan_bench",
    "probe",
    "probe_score",
    "run_bench",
    "run_seeds",
    "zoo_model",
]
