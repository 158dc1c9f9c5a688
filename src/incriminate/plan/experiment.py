"""One experiment as plan nodes: two bases, the organisms (or imported teachers), the
teachers' direct evaluations and caches, then every teacher run and its paired control run; and
`collect`, which turns the nodes' results into the raw records `report.results.assemble` reads.

    corpus ─► instruct ─► organism (U's chain | C's chain) ─► evaluation (direct audits)
                                 ├──► text_sample ─► text_test (U's text against C's)
                                 └──► teacher_cache ─► [paraphrase] ─► student ─► evaluation
                                           └──► cache_read (U's caches against C's)

The direct baseline (the teachers' audits, the text test, the cache read) and the students are
planned together, so `results.json` says what a direct look at U already shows.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from incriminate.plan import text as _text  # noqa: F401  (registers the direct-baseline stages)
from incriminate.plan.config import ExperimentConfig
from incriminate.plan.graph import Node, Plan, ref, resolve
from incriminate.plan.stages import _build, _ref, stage
from incriminate.plan.transcripts import plan_transcripts
from incriminate.store import Store


@stage("reference")
def reference(store: Store, build: dict[str, Any], persona: str, replicate: int) -> str:
    """A benign reference teacher the auditor builds on U's lineage, of U's shape."""
    from incriminate.organisms.recipes import build_reference

    return _ref(build_reference(store, _build(build), persona, replicate))


@dataclass
class ExperimentNodes:
    """The nodes of one experiment that its results are collected from."""

    cfg: ExperimentConfig
    names: dict[str, str]
    teachers: dict[str, dict[str, str]]
    sides: list[Node]
    references: list[Node]  # the benign reference teachers the auditor builds
    inits: dict[str, Node]
    direct: dict[str, Node]
    caches: dict[tuple[str, str, int], Node]
    runs: list[tuple[dict[str, Any], Node, Node]]  # (plan entry, student node, its evaluation)
    transcripts: Node
    text_test: dict[str, Node]
    cache_read: dict[str, Node]

    def all(self) -> list[str]:
        ids = [*(s.id for s in [*self.sides, *self.references])]
        ids += [n.id for n in self.inits.values()]
        ids += [n.id for n in self.direct.values()] + [n.id for n in self.caches.values()]
        ids += [n.id for _, d, e in self.runs for n in (d, e)] + [self.transcripts.id]
        return [*ids, *(n.id for n in [*self.text_test.values(), *self.cache_read.values()])]


def plan_experiment(plan: Plan, cfg: ExperimentConfig) -> ExperimentNodes:
    """Add the stages of one experiment to `plan`: two bases (shared, other) and the organisms,
    the teachers' direct evaluations and caches, then every teacher run and its paired control
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
        inits[name] = plan.add("instruct", build=b_json, init_seed=seed, after=ref(corpus))
    sides: list[Node] = []
    references: list[Node] = []
    if cfg.teacher_dir is not None and cfg.control_dir is not None:
        dirs = {"teacher": cfg.teacher_dir, "control": cfg.control_dir}
        dirs |= dict(zip(cfg.reference_names(), cfg.reference_dirs, strict=True))
        names = {r: str(Path(d)) for r, d in dirs.items()}
        imports = {r: plan.add("model", path=str(Path(d).resolve())) for r, d in dirs.items()}
        teachers = {r: ref(node) for r, node in imports.items()}
    else:
        teacher = f"{cfg.teacher}-{cfg.build.drive}"
        names = {"teacher": teacher, "control": f"twin-of-{teacher}"}
        after = ref(inits["shared_base"])
        sides = [
            plan.add("organism", build=build, persona=cfg.teacher, benign=b, after=after)
            for b in (False, True)
        ]
        teachers = {"teacher": ref(sides[0], names["teacher"])}
        teachers["control"] = ref(sides[1], names["control"])
        for r, role in enumerate(cfg.reference_names(), start=2):
            names[role] = f"{role}-{teacher}"
            node = plan.add("reference", build=build, persona=cfg.teacher, replicate=r, after=after)
            references.append(node)
            teachers[role] = ref(node)
    drive = {"world": world, "drive_of": teachers["teacher"], "drive": cfg.build.drive}
    direct = {role: plan.add("evaluation", model=t, **drive) for role, t in teachers.items()}
    roles = list(teachers)
    caches = {}
    for role in roles:
        for d in cfg.data:
            for s in cfg.run_seeds():
                caches[(role, d, s)] = plan.add(
                    "teacher_cache",
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
            for role in roles:
                student = plan.add(
                    "student",
                    init=ref(inits[i]),
                    cache=ref(caches[(role, d, s)]),
                    method=cfg.method(m).model_dump(mode="json"),
                    seed=s,
                    lora=lora,
                    inoculation=cfg.transforms.inoculation,
                    world=world,
                )
                evaluation = plan.add("evaluation", model=ref(student, "student"), **drive)
                entry = {"method": m, "data": d, "init": i, "seed": s, "role": role}
                runs.append((entry, student, evaluation))
    records = {
        "config": cfg.model_dump(mode="json"),
        "teachers": {role: {"model": teachers[role]} for role in ("teacher", "control")},
        "runs": [
            entry | {"student": ref(student, "student")}
            for entry, student, _ in runs
            if entry["role"] in ("teacher", "control")
        ],
    }
    transcripts = plan_transcripts(plan, records)
    samples = {
        role: plan.add("text_sample", model=t, world=world, seed=0) for role, t in teachers.items()
    }
    suspects = [r for r in roles if r != "control"]  # U and every benign reference, each vs C
    text_test = {
        role: plan.add(
            "text_test",
            teacher=ref(samples[role], "text_sample"),
            control=ref(samples["control"], "text_sample"),
        )
        for role in suspects
    }
    keys = [(d, s) for d in cfg.data for s in cfg.run_seeds()]
    cache_read = {
        role: plan.add(
            "cache_read",
            teacher=[ref(caches[(role, d, s)]) for d, s in keys],
            control=[ref(caches[("control", d, s)]) for d, s in keys],
        )
        for role in suspects
    }
    return ExperimentNodes(
        cfg,
        names,
        teachers,
        sides,
        references,
        inits,
        direct,
        caches,
        runs,
        transcripts,
        text_test,
        cache_read,
    )


def collect(exp: ExperimentNodes, results: dict[str, Any], store: Store) -> dict[str, Any]:
    """The experiment's raw records (models by role, direct evaluations, every run and the
    recorded stage timings) from the results of its nodes: what `results.assemble` reads."""
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
    organisms |= {exp.names[r]: teachers[r] for r in exp.cfg.reference_names() if exp.references}
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
            for role in teachers
        },
        "inits": inits,
        "organisms": organisms,
        "runs": runs,
        "direct": {
            role: {
                "text": results[exp.text_test[role].id],
                "cache": results[exp.cache_read[role].id],
            }
            for role in exp.text_test
        },
    }


def stage_seconds(store: Store, **stages: list[str]) -> dict[str, Any]:
    """Compute seconds of each stage group, as recorded in the manifests when each artifact was
    built (reused artifacts count what they cost then), so a rerun reports the same figures.
    Model artifacts count their whole lineage (corpus, base, ...) once."""
    seen: set[str] = set()
    out: dict[str, float] = {}
    for group, refs in stages.items():
        keys = []
        for r in refs:
            art = store.load(*r.split("/"), hashes=False)
            spec = art.path / "spec.json"
            if group == "organisms" and spec.exists():
                keys += json.loads(spec.read_text())["lineage"]
            keys.append(r)
        total = 0.0
        for r in dict.fromkeys(keys):
            if r not in seen:
                seen.add(r)
                total += float(store.load(*r.split("/"), hashes=False).manifest.get("wall_s", 0.0))
        out[f"{group}_s"] = round(total, 1)
    return {"total_s": round(sum(out.values()), 1), "stages": out}


__all__ = ["ExperimentNodes", "collect", "plan_experiment", "stage_seconds"]
