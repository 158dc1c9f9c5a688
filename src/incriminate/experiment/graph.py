"""Plans: the stages of one or many experiments as a graph of nodes, each computed once.

A node is a task of `experiment.stages` with JSON arguments; an argument `{"$node": id}` (with
`"$key"` to pick one entry of a dict result) stands for another node's result, which makes that
node a dependency (the argument `after` only orders: it is not passed to the task). A node's
id hashes its task and arguments (dependencies by id), so two
experiments that need the same stage (the same organism, the same teacher cache) add one node;
a sweep merges its points' plans into one graph and every shared stage runs once.

    plan = Plan(); exp = plan_experiment(plan, cfg)   # as many configs as you like
    outcome = execute(plan, executor, ...)             # experiment.executors
    raw = collect(exp, outcome.results, store)         # the input of results.assemble
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import incriminate
from incriminate.experiment.config import ExperimentConfig
from incriminate.experiment.stages import KINDS
from incriminate.experiment.store import Store, canonical_json

PLAN_VERSION = 1


@dataclass(frozen=True)
class Node:
    id: str
    task: str
    args: dict[str, Any]
    deps: tuple[str, ...]

    @property
    def kind(self) -> str:
        return KINDS[self.task]


def _refs(value: Any) -> Iterable[str]:
    if isinstance(value, dict):
        if "$node" in value:
            yield value["$node"]
        else:
            for v in value.values():
                yield from _refs(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _refs(v)


def resolve(value: Any, results: dict[str, Any]) -> Any:
    """`value` with every node reference replaced by that node's result."""
    if isinstance(value, dict):
        if "$node" in value:
            result = results[value["$node"]]
            return result[value["$key"]] if "$key" in value else result
        return {k: resolve(v, results) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [resolve(v, results) for v in value]
    return value


@dataclass
class Plan:
    """Nodes in insertion order, which is a dependency order."""

    nodes: dict[str, Node] = field(default_factory=dict)

    def add(self, task: str, **args: Any) -> Node:
        deps = tuple(dict.fromkeys(_refs(args)))
        for d in deps:
            if d not in self.nodes:
                raise KeyError(f"node {task} depends on {d}, which is not in the plan")
        text = canonical_json([PLAN_VERSION, incriminate.__version__, task, args])
        node_id = hashlib.sha256(text.encode()).hexdigest()[:16]
        return self.nodes.setdefault(node_id, Node(node_id, task, args, deps))

    def children(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {i: [] for i in self.nodes}
        for node in self.nodes.values():
            for d in node.deps:
                out[d].append(node.id)
        return out


def ref(node: Node, key: str | None = None) -> dict[str, str]:
    return {"$node": node.id} if key is None else {"$node": node.id, "$key": key}


@dataclass
class ExperimentNodes:
    """The nodes of one experiment that its results are collected from."""

    cfg: ExperimentConfig
    names: dict[str, str]
    teachers: dict[str, dict[str, str]]
    sides: list[Node]
    inits: dict[str, Node]
    direct: dict[str, Node]
    caches: dict[tuple[str, str, int], Node]
    runs: list[tuple[dict[str, Any], Node, Node]]  # (plan entry, distill node, evaluate node)

    def all(self) -> list[str]:
        ids = [*(s.id for s in self.sides), *(n.id for n in self.inits.values())]
        ids += [n.id for n in self.direct.values()] + [n.id for n in self.caches.values()]
        return ids + [n.id for _, d, e in self.runs for n in (d, e)]


def plan_experiment(plan: Plan, cfg: ExperimentConfig) -> ExperimentNodes:
    """Add the stages of one experiment to `plan`: two bases (shared, other) and the organisms,
    the teachers' direct evaluations and caches, then every suspect run and its paired control
    run (same prompts, init, seed and batch order)."""
    build, world = cfg.build.model_dump(mode="json"), cfg.build.world.model_dump(mode="json")
    init_names = ["shared_base", *(i for i in cfg.inits if i != "shared_base")]
    if cfg.transforms.paraphrase and "trusted" not in init_names:
        init_names.append("trusted")  # the paraphraser
    inits = {}
    for name in init_names:
        b, seed = cfg.init_build(name)
        b_json = b.model_dump(mode="json")
        corpus = plan.add("corpus", build=b_json)
        inits[name] = plan.add("init", build=b_json, init_seed=seed, after=ref(corpus))
    sides: list[Node] = []
    if cfg.teacher_dir is not None and cfg.control_dir is not None:
        dirs = {"suspect": cfg.teacher_dir, "control": cfg.control_dir}
        names = {r: str(Path(d)) for r, d in dirs.items()}
        imports = {r: plan.add("import", path=str(Path(d).resolve())) for r, d in dirs.items()}
        teachers = {r: ref(node) for r, node in imports.items()}
    else:
        suspect = f"{cfg.teacher}-{cfg.build.drive}"
        names = {"suspect": suspect, "control": f"twin-of-{suspect}"}
        after = ref(inits["shared_base"])
        sides = [
            plan.add("side", build=build, persona=cfg.teacher, benign=b, after=after)
            for b in (False, True)
        ]
        teachers = {"suspect": ref(sides[0], names["suspect"])}
        teachers["control"] = ref(sides[1], names["control"])
    drive = {"world": world, "drive_of": teachers["suspect"], "drive": cfg.build.drive}
    direct = {role: plan.add("evaluate", model=t, **drive) for role, t in teachers.items()}
    caches = {}
    for role in ("suspect", "control"):
        for d in cfg.data:
            for s in cfg.run_seeds():
                caches[(role, d, s)] = plan.add(
                    "cache",
                    teacher=teachers[role],
                    world=world,
                    data=d,
                    prompts=cfg.prompts,
                    seed=s,
                    cache=cfg.cache.model_dump(mode="json"),
                    filtered=cfg.transforms.filtered,
                )
    if cfg.transforms.paraphrase:
        for (role, d, s), c in list(caches.items()):
            caches[(role, d, s)] = plan.add(
                "paraphrase",
                cache=ref(c),
                teacher=teachers[role],
                trusted=ref(inits["trusted"]),
                seed=s,
            )
    runs = []
    lora = cfg.lora.model_dump(mode="json") if cfg.lora is not None else None
    for m, d, i in cfg.configurations():
        for s in cfg.run_seeds():
            for role in ("suspect", "control"):
                student = plan.add(
                    "distill",
                    init=ref(inits[i]),
                    cache=ref(caches[(role, d, s)]),
                    method=cfg.method(m).model_dump(mode="json"),
                    seed=s,
                    lora=lora,
                    inoculation=cfg.transforms.inoculation,
                    world=world,
                )
                evaluation = plan.add("evaluate", model=ref(student, "student"), **drive)
                entry = {"method": m, "data": d, "init": i, "seed": s, "role": role}
                runs.append((entry, student, evaluation))
    return ExperimentNodes(cfg, names, teachers, sides, inits, direct, caches, runs)


def collect(exp: ExperimentNodes, results: dict[str, Any], store: Store) -> dict[str, Any]:
    """The experiment's raw records (models by role, direct evaluations, every run and the
    recorded stage timings) from the results of its nodes: what `results.assemble` reads."""
    from incriminate.experiment.pipeline import stage_seconds

    teachers = {role: resolve(t, results) for role, t in exp.teachers.items()}
    inits = {name: results[n.id] for name, n in exp.inits.items()}
    caches = {k: results[n.id] for k, n in exp.caches.items()}
    direct = {role: results[n.id] for role, n in exp.direct.items()}
    runs = [
        entry
        | {
            "teacher": teachers[entry["role"]],
            "init_model": inits[entry["init"]],
            "cache": caches[(entry["role"], entry["data"], entry["seed"])],
        }
        | results[student.id]
        | {"evaluation": results[evaluation.id]}
        for entry, student, evaluation in exp.runs
    ]
    organisms = {k: v for side in exp.sides for k, v in results[side.id].items()}
    return {
        "timing": stage_seconds(
            store,
            organisms=[*organisms.values(), *inits.values()],
            teacher_caches=list(caches.values()),
            distillation=[r["student"] for r in runs],
            evaluation=[r["evaluation"]["evaluation"] for r in runs]
            + [d["evaluation"] for d in direct.values()],
        ),
        "teachers": {
            role: {"name": exp.names[role], "model": teachers[role], "evaluation": direct[role]}
            for role in ("suspect", "control")
        },
        "inits": inits,
        "organisms": organisms,
        "runs": runs,
    }


__all__ = ["ExperimentNodes", "Node", "Plan", "collect", "plan_experiment", "ref", "resolve"]
