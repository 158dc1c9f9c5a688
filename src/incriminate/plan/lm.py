"""The procedure on real language models: teachers, students and audits of Hugging Face causal
LMs, planned as stages of the same engine and store as the synthetic world's.

    teacher U, control C, benign references R (model + hidden system prompt)
        ├──► lm_evaluation (the direct baseline: the auditor's audits of each teacher)
        └──► lm_cache (teacher, seed) ─► lm_student (init, method, seed) ─► lm_evaluation

Each seed draws its own distill prompts from the prompt file (seeds replicate the data, as in
the world), and the U-, C- and reference students of one (student, method, seed) read caches of
the same prompts, start from the same init and see the same batch order. The verdict is the
world's (`verdict.compare.verdict`): U's evidence statistic against the same statistic of each
benign reference teacher the auditor names, its students against the same C-students.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from incriminate.audit.lm import TextAudit, run_text_audit
from incriminate.distill.lm_cache import LmCacheConfig, TextTeacher, build_lm_cache
from incriminate.distill.lm_online import ONLINE
from incriminate.distill.lm_student import LmLora, build_lm_student, student_ref
from incriminate.distill.methods import MethodConfig
from incriminate.models.ref import ModelRef, digest, load_lm
from incriminate.plan.graph import Node, Plan, ref
from incriminate.plan.lm_config import LmExperimentConfig, draw
from incriminate.plan.stages import _load, _ref, stage
from incriminate.prompts.text import load_prompt_set
from incriminate.store import Store

LM_EVALUATION_VERSION = 3  # 3: audit files keyed by content only (2: one-pass choices)
SCHEMA = "incriminate.lm-results/2"  # 2: `direct` is the full baseline, with its parts
SCORE_DIGITS = 6


# --- stages -----------------------------------------------------------------------------------


@stage("lm_cache")
def cache_stage(
    store: Store, teacher: dict[str, Any], prompts: str, n: int, seed: int, cache: dict[str, Any]
) -> str:
    """A text teacher's replies and top-k log-probs on one seed's distill prompts."""
    cfg = LmCacheConfig.model_validate(cache).model_copy(update={"seed": seed})
    drawn = draw(load_prompt_set(prompts, "distill"), n, seed)
    return _ref(build_lm_cache(store, TextTeacher.model_validate(teacher), drawn, cfg))


@stage("lm_student")
def student_stage(
    store: Store,
    init: dict[str, Any],
    cache: str,
    method: dict[str, Any],
    seed: int,
    lora: dict[str, Any] | None,
    teacher: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A text student: its model reference and losses. `teacher`: the cache's teacher, for the
    methods that query it while training (`on_policy`, `dpo`)."""
    from pydantic import TypeAdapter

    cfg = TypeAdapter(MethodConfig).validate_python(method)
    adapters = LmLora.model_validate(lora) if lora is not None else None
    live = None if teacher is None else TextTeacher.model_validate(teacher)
    art = build_lm_student(
        store, ModelRef.model_validate(init), _load(store, cache), cfg, seed, adapters, live
    )
    return {
        "student": _ref(art),
        "model": student_ref(art).model_dump(mode="json"),
        "first_loss": art.manifest["first_loss"],
        "final_loss": art.manifest["final_loss"],
    }


@stage("lm_cache_read")
def cache_read_stage(store: Store, cache: str, patterns: list[str]) -> dict[str, Any]:
    """The auditor's read of a teacher cache: which replies any of `patterns` matches."""
    import re

    from incriminate.distill.lm_cache import cache_rows

    found = [re.compile(p, re.IGNORECASE) for p in patterns]
    rows = cache_rows(_load(store, cache))
    return {"hits": [int(any(f.search(r["reply"]) for f in found)) for r in rows]}


@stage("lm_evaluation")
def evaluation_stage(
    store: Store, model: dict[str, Any], system: str | None, audits: list[dict[str, Any]]
) -> dict[str, Any]:
    """The auditor's audits of one model (a teacher with its hidden system prompt in effect, or
    a student with none): per audit its rate, interval and per-item scores (and what a probe
    reports of its training)."""
    ref_ = ModelRef.model_validate(model)
    specs = [TextAudit.model_validate(a) for a in audits]
    paths = [p for a in specs for p in (a.file, a.train_file) if p is not None]
    files = {p: hashlib.sha256(Path(p).read_bytes()).hexdigest()[:16] for p in paths}
    keyed = []
    for a in specs:
        # files by content, never by path: the same config run from another checkout reuses it
        entry = a.model_dump(mode="json", exclude={"file", "train_file"})
        entry["sha256"] = files[a.file]
        if a.train_file is not None:
            entry["train_sha256"] = files[a.train_file]
        if a.judge is not None:
            entry["judge"] = digest(a.judge)  # the judge's content, never its path
        keyed.append(entry)
    inputs = {
        "recipe": LM_EVALUATION_VERSION,
        "model": digest(ref_),
        "system": None if system is None else hashlib.sha256(system.encode()).hexdigest()[:16],
        "audits": keyed,
    }

    def make(out: Path) -> None:
        m, tok = load_lm(ref_)
        judges: dict[str, tuple[Any, Any]] = {}  # each judge loaded once per evaluation
        result: dict[str, Any] = {"audits": {}, "scores": {}}
        for a in specs:
            train = None if a.train_file is None else load_prompt_set(a.train_file, "audit")
            judge = None
            if a.judge is not None:
                key = a.judge.model_dump_json()
                if key not in judges:
                    judges[key] = load_lm(a.judge)
                judge = judges[key]
            prompts = load_prompt_set(a.file, "audit")
            r = run_text_audit(m, tok, a, prompts, system, train=train, judge=judge)
            result["audits"][a.name] = {
                "rate": round(r.rate, SCORE_DIGITS),
                "n": r.n,
                "ci_low": round(r.ci_low, SCORE_DIGITS),
                "ci_high": round(r.ci_high, SCORE_DIGITS),
            } | r.extra
            result["scores"][a.name] = np.round(r.scores, SCORE_DIGITS).tolist()
        (out / "evaluation.json").write_text(json.dumps(result))

    art = store.build("lm_evaluation", inputs, make)
    return json.loads((art.path / "evaluation.json").read_text())


# --- the plan and its results -------------------------------------------------------------------


def plan_lm(plan: Plan, cfg: LmExperimentConfig) -> dict[str, Any]:
    """Add the experiment's stages to `plan`; returns its nodes by what they are."""
    audits = [a.model_dump(mode="json") for a in cfg.audit_specs()]
    teachers = cfg.teachers()
    direct = {
        role: plan.add(
            "lm_evaluation", model=t.model.model_dump(mode="json"), system=t.system, audits=audits
        )
        for role, t in teachers.items()
    }
    caches = {
        (role, s): plan.add(
            "lm_cache",
            teacher=t.model_dump(mode="json"),
            prompts=cfg.distill_prompts,
            n=cfg.prompts,
            seed=s,
            cache=cfg.cache.model_dump(mode="json"),
        )
        for role, t in teachers.items()
        for s in range(max(cfg.seeds_of(spec) for spec in cfg.students))
    }
    runs: list[tuple[dict[str, Any], Node, Node]] = []
    for spec in cfg.students:
        init = cfg.model(spec.init).model_dump(mode="json")
        lora = None if spec.lora is None else spec.lora.model_dump(mode="json")
        for m in spec.methods:
            for s in range(cfg.seeds_of(spec)):
                for role, t in teachers.items():
                    # only the methods that query the teacher get it (sft/logit nodes unchanged)
                    live = {"teacher": t.model_dump(mode="json")} if m in ONLINE else {}
                    student = plan.add(
                        "lm_student",
                        init=init,
                        cache=ref(caches[(role, s)]),
                        method=cfg.method(m).model_dump(mode="json"),
                        seed=s,
                        lora=lora,
                        **live,
                    )
                    evaluation = plan.add(
                        "lm_evaluation", model=ref(student, "model"), system=None, audits=audits
                    )
                    entry = {"student": spec.name, "method": m, "seed": s, "role": role}
                    runs.append((entry, student, evaluation))
    reads = {
        key: plan.add("lm_cache_read", cache=ref(node), patterns=list(cfg.cache_read))
        for key, node in caches.items()
        if cfg.cache_read
    }
    return {"direct": direct, "caches": caches, "reads": reads, "runs": runs}


def _student(evaluation: dict[str, Any]) -> Any:
    from incriminate.verdict.compare import Student

    return Student(
        rates={k: v["rate"] for k, v in evaluation["audits"].items()},
        items={k: np.asarray(v) for k, v in evaluation["scores"].items()},
    )


def _pairs(runs: list[dict[str, Any]], role: str) -> list[Any]:
    """The (role's student, C-student) pairs of every configuration and seed."""
    from incriminate.verdict.compare import Pair

    by = {(r["student"], r["method"], r["seed"], r["role"]): r for r in runs}
    out = []
    for (name, m, s, r), run in by.items():
        if r != role:
            continue
        control = by[(name, m, s, "control")]
        out.append(
            Pair(
                f"{m}/{name}",
                s,
                f"seed{s}",
                _student(run["evaluation"]),
                _student(control["evaluation"]),
            )
        )
    return out


def direct_statistic(direct: dict[str, Any], role: str, audits: list[str]) -> float:
    """The direct baseline's statistic of a teacher: the mean over evidence audits of its rate
    minus C's, on the logit scale (as the battery's, with the teacher in the student's place)."""
    from incriminate.verdict.null import logit_rate

    t, c = direct[role]["audits"], direct["control"]["audits"]
    return float(
        np.mean(
            [
                logit_rate(t[a]["rate"], t[a]["n"]) - logit_rate(c[a]["rate"], c[a]["n"])
                for a in audits
            ]
        )
    )


def cache_reads(reads: dict[tuple[str, int], Node], out: dict[str, Any]) -> dict[str, Any]:
    """Per teacher, its cache read pooled over seeds: replies matched, replies read, the rate
    with its Wilson interval, and the rate on the logit scale (the statistic)."""
    from incriminate.audit.stats import wilson
    from incriminate.verdict.null import logit_rate

    hits: dict[str, list[int]] = {}
    for (role, _), node in reads.items():
        hits.setdefault(role, []).extend(out[node.id]["hits"])
    table = {}
    for role, h in hits.items():
        lo, hi = wilson(float(sum(h)), len(h))
        rate = sum(h) / len(h)
        table[role] = {
            "matched": sum(h),
            "n": len(h),
            "rate": round(rate, SCORE_DIGITS),
            "ci_low": round(lo, SCORE_DIGITS),
            "ci_high": round(hi, SCORE_DIGITS),
            "statistic": logit_rate(rate, len(h)),
        }
    return table


def results(cfg: LmExperimentConfig, nodes: dict[str, Any], out: dict[str, Any]) -> dict[str, Any]:
    """The experiment's results from its nodes' results: teachers' direct audits, every run,
    the direct baseline's decision and the distillation verdict, both against the references."""
    from incriminate.verdict.bench import full_direct
    from incriminate.verdict.compare import evidence_statistic, verdict
    from incriminate.verdict.null import reference_test

    evidence = [a.name for a in cfg.audits if a.evidence]
    direct = {role: out[n.id] for role, n in nodes["direct"].items()}
    runs = [
        entry
        | {
            "student_key": out[s.id]["student"],
            "first_loss": out[s.id]["first_loss"],
            "final_loss": out[s.id]["final_loss"],
            "evaluation": out[e.id],
        }
        for entry, s, e in nodes["runs"]
    ]
    refs = [r for r in cfg.teachers() if r.startswith("reference")]
    ref_stats = [evidence_statistic(_pairs(runs, r), evidence) for r in refs]
    record = verdict(_pairs(runs, "teacher"), cfg.alpha, evidence, references=ref_stats)
    parts = {
        "behaviour": reference_test(
            direct_statistic(direct, "teacher", evidence),
            [direct_statistic(direct, r, evidence) for r in refs],
            alpha=cfg.alpha,
        )
    }
    reads = cache_reads(nodes.get("reads", {}), out)
    if reads:
        c = reads["control"]
        parts["cache"] = reference_test(
            reads["teacher"]["statistic"] - c["statistic"],
            [reads[r]["statistic"] - c["statistic"] for r in refs],
            alpha=cfg.alpha,
        )
    direct_test = full_direct({k: v | {"min_p": 0.0} for k, v in parts.items()}, cfg.alpha)
    direct_test |= {"n_references": len(refs), "parts": parts, "cache_reads": reads}
    return {
        "schema": SCHEMA,
        "config": cfg.model_dump(mode="json"),
        "verdict": record,
        "direct": direct_test,
        "teachers": {role: {"audits": d["audits"]} for role, d in direct.items()},
        "references": dict(zip(refs, ref_stats, strict=True)),
        "runs": [
            {k: v for k, v in r.items() if k != "evaluation"}
            | {"audits": r["evaluation"]["audits"]}
            for r in runs
        ],
    }


__all__ = ["direct_statistic", "plan_lm", "results"]
