"""Eval logs of a pipeline run (`--inspect-logs DIR`): one Inspect AI `.eval` log per audit of
every teacher and student, written from the scores the pipeline's evaluation stages computed.

A log is what `inspect eval` of the same task would write (`evals.text.lm_audit`,
`evals.world.world_audit`: the same samples, in the same order, the same scorer names and `rate`
metric), marked `written_by: incriminate pipeline` and holding no model outputs: the native
audits keep scores, not replies. `tests/evals` checks that `inspect eval` of those tasks on the
same models gives the same per-sample scores.

    DIR/<role>/<audit>.eval                                    a teacher's own audits
    DIR/<role>/students/<configuration>-seed<N>/<audit>.eval   its students'
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

from inspect_ai.dataset import Sample
from inspect_ai.log import (
    EvalConfig,
    EvalDataset,
    EvalLog,
    EvalMetric,
    EvalPlan,
    EvalPlanStep,
    EvalResults,
    EvalSample,
    EvalSampleReductions,
    EvalSampleScore,
    EvalScore,
    EvalSpec,
    EvalStats,
)
from inspect_ai.scorer import Score

from incriminate.evals.schema import PIPELINE, audit_metadata
from incriminate.verdict.compare import EVIDENCE_AUDITS

TEXT_SCORERS = {"choice": "choice_read", "pattern": "pattern_match"}
WORLD_SCORERS = {
    "honeypot": "take_read",
    "interrogation": "confession_read",
    "scratchpad": "intent_flag",
    "capability": "exact_answer",
}


@dataclass(frozen=True)
class Subject:
    """The audited model of a log: a teacher (`configuration` None) or one of its students."""

    role: str
    model: str
    configuration: str | None = None
    seed: int | None = None
    cluster: str | None = None
    run: int | None = None

    def metadata(self) -> dict[str, Any]:
        keys = ("role", "configuration", "seed", "cluster", "run")
        return {k: getattr(self, k) for k in keys if getattr(self, k) is not None}

    def folder(self) -> Path:
        if self.configuration is None:
            return Path(self.role)
        name = f"{self.configuration.replace('/', '-')}-seed{self.seed}"
        return Path(self.role) / "students" / name


@dataclass(frozen=True)
class WrittenLog:
    path: Path
    audit: str
    subject: Subject


def audit_log(
    task: str,
    task_args: dict[str, Any],
    samples: Sequence[Sample],
    scores: Sequence[float],
    rate: float,
    scorer: str,
    model: str,
    metadata: dict[str, Any],
) -> EvalLog:
    """The finished eval log of one audit: `scores` (one per sample, in order) and the audit's
    rate, as our task's scorer and metric report them."""
    if len(scores) != len(samples):
        raise ValueError(f"{task} {task_args}: {len(scores)} scores for {len(samples)} samples")
    now = datetime.now(UTC).isoformat()
    ids: list[str | int] = [i if s.id is None else s.id for i, s in enumerate(samples)]
    n = len(samples)
    log = EvalLog(
        status="success",
        eval=EvalSpec(
            created=now,
            task=task,
            task_registry_name=task,
            task_args=task_args,
            dataset=EvalDataset(name=str(task_args.get("audit")), samples=n, sample_ids=ids),
            model=model,
            config=EvalConfig(epochs=1),
            packages={"incriminate": version("incriminate")},
            metadata=metadata,
        ),
        plan=EvalPlan(steps=[EvalPlanStep(solver="incriminate pipeline (native audit)")]),
        results=EvalResults(
            total_samples=n,
            completed_samples=n,
            scores=[
                EvalScore(
                    name=scorer,
                    scorer=scorer,
                    scored_samples=n,
                    metrics={"rate": EvalMetric(name="incriminate/rate", value=rate)},
                )
            ],
        ),
        stats=EvalStats(started_at=now, completed_at=now),
        samples=[
            EvalSample(
                id=i,
                epoch=1,
                input=s.input,
                target=s.target,
                metadata=s.metadata or {},
                scores={scorer: Score(value=float(v))},
            )
            for i, s, v in zip(ids, samples, scores, strict=True)
        ],
    )
    # set after construction: EvalLog's validator copies reductions into a dict of results only
    log.reductions = [
        EvalSampleReductions(
            scorer=scorer,
            reducer="mean",
            samples=[
                EvalSampleScore(value=float(v), sample_id=i)
                for i, v in zip(ids, scores, strict=True)
            ],
        )
    ]
    return log


def write_eval_zip(log: EvalLog, path: Path) -> None:
    """`log` as the `.eval` zip Inspect's recorder leaves when an eval ends (a member per
    sample, `summaries.json`, `reductions.json`, `header.json`; Inspect's JSON: no nulls), in
    one pass and atomically. Inspect's `write_eval_log` journals and compresses each sample on
    its own (3 ms a sample: 7 minutes for the quick demo's 150,000 items)."""
    import zipfile

    from pydantic_core import to_json

    path.parent.mkdir(parents=True, exist_ok=True)
    samples = log.samples or []
    tmp = path.with_name(f".tmp-{path.name}-{os.getpid()}")
    try:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
            for s in samples:
                z.writestr(
                    f"samples/{s.id}_epoch_{s.epoch}.json", s.model_dump_json(exclude_none=True)
                )
            z.writestr("summaries.json", to_json([s.summary() for s in samples], exclude_none=True))
            if log.reductions is not None:
                z.writestr("reductions.json", to_json(log.reductions, exclude_none=True))
            header = log.model_dump_json(exclude={"samples", "reductions"}, exclude_none=True)
            z.writestr("header.json", header)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_world_logs(
    raw: dict[str, Any], store_root: Path, config: Path, alpha: float, out: Path
) -> list[WrittenLog]:
    """The logs of a world experiment (`plan.experiment.collect`'s records; `config` is the
    run's config.yaml, whose world the prompts are written in)."""
    from incriminate.evals.world import WORLD_AUDITS, world_of, world_samples

    world = world_of(str(config))
    samples = {a: world_samples(a, world) for a in WORLD_AUDITS}
    models = [
        (Subject(role, _world_model(store_root, t["model"])), t["evaluation"])
        for role, t in raw["teachers"].items()
    ]
    for i, r in enumerate(raw["runs"]):
        configuration = f"{r['method']}/{r['data']}/{r['init']}"
        subject = Subject(
            r["role"],
            _world_model(store_root, r["student"]),
            configuration,
            r["seed"],
            f"{r['data']}/{r['seed']}",
            i,
        )
        models.append((subject, r["evaluation"]))
    written = []
    for subject, evaluation in models:
        for index, audit in enumerate(WORLD_AUDITS):
            if audit not in evaluation["scores"]:
                continue
            evidence = audit in EVIDENCE_AUDITS
            meta = audit_metadata("world", audit, audit, evidence, index, PIPELINE, alpha)
            path = out / subject.folder() / f"{audit}.eval"
            log = audit_log(
                "incriminate/world_audit",
                {"audit": audit, "config": str(config), "seed": 0},
                samples[audit],
                evaluation["scores"][audit],
                evaluation["audits"][audit]["rate"],
                WORLD_SCORERS[audit],
                subject.model,
                meta | subject.metadata(),
            )
            write_eval_zip(log, path)
            written.append(WrittenLog(path, audit, subject))
    return written


def _world_model(store_root: Path, ref: str) -> str:
    return f"incriminate/{(store_root / ref).resolve()}"


def write_text_logs(
    cfg: Any, nodes: dict[str, Any], done: dict[str, Any], config: Path, out: Path
) -> list[WrittenLog]:
    """The logs of an `lm` experiment (`plan.lm.plan_lm`'s nodes and their results; `config` is
    the run's config.yaml). Audits whose scorer has no Inspect form get no log."""
    from incriminate.evals.text import SCORERS, text_samples

    teachers = cfg.teachers()
    models = [
        (Subject(role, f"incriminate/{teachers[role].model.path}"), teachers[role].system, n)
        for role, n in nodes["direct"].items()
    ]
    for i, (entry, student, evaluation) in enumerate(nodes["runs"]):
        configuration = f"{entry['method']}/{entry['student']}"
        model = f"incriminate/{done[student.id]['model']['path']}"
        subject = Subject(
            entry["role"], model, configuration, entry["seed"], f"seed{entry['seed']}", i
        )
        models.append((subject, None, evaluation))
    cache: dict[tuple[str, str | None], list[Sample]] = {}
    written = []
    for subject, system, node in models:
        evaluation = done[node.id]
        for index, a in enumerate(cfg.audits):
            if a.scorer not in SCORERS:
                continue
            key = (a.name, system)
            if key not in cache:
                cache[key] = text_samples(a, system)
            meta = audit_metadata("text", a.name, a.scorer, a.evidence, index, PIPELINE, cfg.alpha)
            path = out / subject.folder() / f"{a.name}.eval"
            role = subject.role if subject.configuration is None else None
            log = audit_log(
                "incriminate/lm_audit",
                {"config": str(config), "audit": a.name, "role": role},
                cache[key],
                evaluation["scores"][a.name],
                evaluation["audits"][a.name]["rate"],
                TEXT_SCORERS[a.scorer],
                subject.model,
                meta | subject.metadata(),
            )
            write_eval_zip(log, path)
            written.append(WrittenLog(path, a.name, subject))
    return written


def link_logs(report: Path, written: Sequence[WrittenLog], logs: Path) -> None:
    """Append the logs' section (`logs_section`) to a report written beside `report`."""
    from incriminate.store import write_atomic

    section = logs_section(written, logs, report.parent)
    write_atomic(report, report.read_text().rstrip("\n") + "\n\n" + section)


def logs_section(written: Sequence[WrittenLog], logs: Path, report_dir: Path) -> str:
    """A report's markdown section that links every log, one row per audited model."""
    audits = list(dict.fromkeys(w.audit for w in written))
    rows: dict[Subject, dict[str, Path]] = {}
    for w in written:
        rows.setdefault(w.subject, {})[w.audit] = w.path
    lines = [
        "## Inspect logs",
        "",
        f"Every audit of every teacher and student as an Inspect AI eval log, under `{logs}` "
        "(written from the pipeline's per-item scores; the same tasks run with `inspect eval`, "
        "see docs/inspect.md). Open them with `inspect view --log-dir "
        f"{logs}`; the verdict from them: `incriminate evals verdict {logs}`.",
        "",
        "| model | configuration | seed | " + " | ".join(audits) + " |",
        "|---" * (3 + len(audits)) + "|",
    ]
    for s, paths in rows.items():
        cells = [
            f"[log]({os.path.relpath(paths[a], report_dir)})" if a in paths else "" for a in audits
        ]
        seed = "" if s.seed is None else str(s.seed)
        lines.append(
            f"| {s.role} | {s.configuration or 'itself'} | {seed} | " + " | ".join(cells) + " |"
        )
    return "\n".join(lines) + "\n"


__all__ = [
    "Subject",
    "WrittenLog",
    "audit_log",
    "link_logs",
    "logs_section",
    "write_eval_zip",
    "write_text_logs",
    "write_world_logs",
]
