"""The verdict from a set of Inspect AI eval logs: each log's per-sample scores become the
per-item arrays the verdict takes (`verdict.compare.Student`), its `rate` metric the rate.

A log must be one of our audits (`schema`): a finished eval (status `success`) of one of our
tasks, with the audited model's `role` in its metadata, and for a student its `configuration`,
`seed` and `cluster`. The students of each configuration and seed make a pair with the control's
student (`control`); the teacher's pairs give the decision of record, tested against each benign
reference's (`reference1`, ...) statistic, as the pipeline's `results` compute it. Teachers' own
logs (no configuration) are the direct baseline's audits and do not enter the verdict.

Anything else is one `UserError` line naming the file: a file that is not a readable eval log
(truncated, another format), another tool's log, an unfinished eval, a missing or duplicated
audit, a student without its control.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from incriminate.errors import UserError
from incriminate.evals.schema import KEY, SCORE_DIGITS

RATE_TOLERANCE = 1.5 * 10.0**-SCORE_DIGITS
"""How far a log's rate may be from its samples' mean: both are rounded to 6 digits."""


@dataclass(frozen=True)
class AuditLog:
    """One audit of one model, read from its eval log."""

    path: Path
    audit: str
    evidence: bool
    index: int
    """The audit's place among its experiment's audits (orders them as the pipeline does)."""
    role: str
    configuration: str | None
    """A student's configuration (method/data/init or method/student); None for a teacher."""
    seed: int | None
    cluster: str | None
    run: int | None
    """The run's place in the pipeline's plan, when the pipeline wrote the log."""
    alpha: float | None
    rate: float
    ids: tuple[str | int, ...]
    scores: np.ndarray
    """(n,) item scores in dataset order."""


def find_logs(where: Path) -> list[Path]:
    """The `.eval` files under a directory (recursively, sorted), or the file itself."""
    if not where.exists():
        raise UserError(f"{where} does not exist")
    if where.is_file():
        return [where]
    found = sorted(where.rglob("*.eval"))
    if not found:
        raise UserError(f"no Inspect eval logs (*.eval) under {where}")
    return found


def read_audit_log(path: Path) -> AuditLog:
    """One of our audit logs, checked (see the module docstring)."""
    from inspect_ai.log import read_eval_log

    try:
        log = read_eval_log(str(path), header_only=True)  # with the reduced scores
        if log.status == "success" and not log.reductions:
            log = read_eval_log(str(path))  # the samples' own scores
    except Exception as e:  # a truncated zip, JSON of something else, a directory ...
        raise UserError(f"{path}: not a readable Inspect eval log ({_first_line(e)})") from None
    spec = log.eval
    meta: dict[str, Any] = dict(log.metadata or spec.metadata or {})  # with `inspect log edit`s
    ours = meta.get(KEY)
    if not isinstance(ours, dict) or not {"audit", "evidence"} <= set(ours):
        raise UserError(
            f"{path}: not an incriminate audit log (task {spec.task!r} of another tool)"
        )
    if log.status != "success":
        raise UserError(f"{path}: the eval did not finish (status {log.status!r})")
    role = meta.get("role")
    if not isinstance(role, str) or not role:
        raise UserError(
            f"{path}: no `role` in its metadata (inspect eval --metadata role=teacher|control|"
            "referenceN, and for a student configuration=..., seed=N)"
        )
    configuration, seed, cluster, run = _student(path, meta)
    ids, scores = _scores(path, log)
    rate = _rate(path, log, scores)
    alpha = ours.get("alpha")
    return AuditLog(
        path,
        str(ours["audit"]),
        bool(ours["evidence"]),
        int(ours.get("index", 0)),
        role,
        configuration,
        seed,
        cluster,
        run,
        float(alpha) if alpha is not None else None,
        rate,
        ids,
        scores,
    )


def _student(
    path: Path, meta: dict[str, Any]
) -> tuple[str | None, int | None, str | None, int | None]:
    """(configuration, seed, cluster, run) of a student's log; all None for a teacher's."""
    configuration = meta.get("configuration")
    if configuration is None:
        return None, None, None, None
    seed = meta.get("seed")
    if not isinstance(configuration, str) or type(seed) is not int:
        raise UserError(
            f"{path}: a student's log needs `configuration` (a string) and `seed` (an integer) "
            f"in its metadata, got {configuration!r} and {seed!r}"
        )
    cluster = meta.get("cluster", f"seed{seed}")
    run = meta.get("run")
    return configuration, seed, str(cluster), run if type(run) is int else None


def _scores(path: Path, log: Any) -> tuple[tuple[str | int, ...], np.ndarray]:
    """(sample ids in dataset order, (n,) scores): the reduced score over epochs when the log
    has reductions, else each sample's (first epoch's) score."""
    if log.reductions:
        by_id = {s.sample_id: s.value for s in log.reductions[0].samples}
    else:
        by_id = {
            s.id: next(iter(s.scores.values())).value
            for s in log.samples or []
            if s.epoch == 1 and s.scores
        }
    order = list(log.eval.dataset.sample_ids or sorted(by_id, key=str))
    missing = [i for i in order if i not in by_id]
    if not order or missing:
        raise UserError(f"{path}: no score for sample(s) {missing[:3] or 'all'}")
    try:
        scores = np.array([float(by_id[i]) for i in order], dtype=np.float64)
    except (TypeError, ValueError):
        raise UserError(f"{path}: its scores are not numbers in [0, 1]") from None
    if not np.all((scores >= 0) & (scores <= 1)):
        raise UserError(f"{path}: its scores are not numbers in [0, 1]")
    return tuple(order), scores


def _rate(path: Path, log: Any, scores: np.ndarray) -> float:
    """The log's `rate` metric, checked against its samples' mean."""
    metrics = log.results.scores[0].metrics if log.results and log.results.scores else {}
    if "rate" not in metrics:
        raise UserError(f"{path}: no `rate` metric in its results")
    rate = float(metrics["rate"].value)
    if abs(rate - float(scores.mean())) > RATE_TOLERANCE:
        raise UserError(
            f"{path}: its rate {rate} is not the mean of its {scores.size} sample scores "
            f"({scores.mean():.6f})"
        )
    return rate


def read_logs(where: Sequence[Path]) -> list[AuditLog]:
    """Every log under the given files and directories, each audit of each model once."""
    logs = [read_audit_log(p) for w in where for p in find_logs(w)]
    seen: dict[tuple[Any, ...], Path] = {}
    for log in logs:
        key = (log.role, log.configuration, log.seed, log.audit)
        if key in seen:
            raise UserError(f"{log.path} and {seen[key]} both audit {_name(log)} with {log.audit}")
        seen[key] = log.path
    return logs


def _name(log: AuditLog) -> str:
    if log.configuration is None:
        return f"the {log.role}"
    return f"the {log.role}'s student {log.configuration} seed {log.seed}"


def verdict_from_logs(logs: Sequence[AuditLog], alpha: float | None = None) -> dict[str, Any]:
    """The decision of record (`verdict.compare.verdict`) from the students' logs; `alpha`
    defaults to the one the logs were written with (0.05 for logs of `inspect eval`)."""
    from incriminate.verdict.compare import Pair, evidence_statistic, verdict

    students = [g for g in logs if g.configuration is not None]
    if not students:
        raise UserError("none of the logs audits a student (logs with `configuration`)")
    audits = _evidence_audits(students)
    alpha = _alpha(logs) if alpha is None else alpha
    by_model: dict[tuple[str, str, int], dict[str, AuditLog]] = {}
    for g in students:
        by_model.setdefault((g.role, g.configuration or "", g.seed or 0), {})[g.audit] = g
    roles = sorted({r for r, _, _ in by_model if r != "control"}, key=_role_order)
    if "teacher" not in roles:
        raise UserError("no student of the teacher among the logs (role `teacher`)")
    pairs: dict[str, list[Pair]] = {}
    for role in roles:
        keys = sorted(
            (k for k in by_model if k[0] == role), key=lambda k: _run_order(by_model[k], k)
        )
        pairs[role] = [_pair(by_model, k, audits, Pair) for k in keys]
    refs = [r for r in roles if r.startswith("reference")]
    try:
        ref_stats = [evidence_statistic(pairs[r], audits) for r in refs]
        return dict(verdict(pairs["teacher"], alpha, audits, references=ref_stats))
    except ValueError as e:
        raise UserError(f"the logs do not make a verdict: {_first_line(e)}") from None


def _evidence_audits(students: Sequence[AuditLog]) -> list[str]:
    """The evidence audits' names, in their experiment's order."""
    flags: dict[str, tuple[bool, int]] = {}
    for g in students:
        if flags.setdefault(g.audit, (g.evidence, g.index)) != (g.evidence, g.index):
            raise UserError(f"{g.path}: audit {g.audit} is marked differently in other logs")
    audits = sorted((i, a) for a, (ev, i) in flags.items() if ev)
    if not audits:
        raise UserError("none of the logs' audits counts as evidence")
    return [a for _, a in audits]


def _alpha(logs: Sequence[AuditLog]) -> float:
    written = {g.alpha for g in logs if g.alpha is not None}
    if len(written) > 1:
        raise UserError(
            f"the logs were written with different alphas {sorted(written)}: pass --alpha"
        )
    return written.pop() if written else 0.05


def _role_order(role: str) -> tuple[int, str]:
    """teacher first, then reference1, reference2, ..., reference10 in numeric order."""
    m = re.fullmatch(r"reference(\d+)", role)
    return (0 if role == "teacher" else 1, f"{int(m.group(1)):09d}" if m else role)


def _run_order(audits: dict[str, AuditLog], key: tuple[str, str, int]) -> tuple[Any, ...]:
    """The pipeline's run order when it wrote the logs, else (configuration, seed)."""
    runs = {g.run for g in audits.values()}
    run = runs.pop() if len(runs) == 1 else None
    return (0, run, "", 0) if run is not None else (1, 0, key[1], key[2])


def _pair(
    by_model: dict[tuple[str, str, int], dict[str, AuditLog]],
    key: tuple[str, str, int],
    audits: list[str],
    pair_type: Any,
) -> Any:
    """The pair of one student and the control's student of its configuration and seed."""
    from incriminate.verdict.compare import Student

    _, configuration, seed = key
    mine, control = by_model[key], by_model.get(("control", configuration, seed))
    if control is None:
        some = next(iter(mine.values())).path
        raise UserError(f"{some}: no control student for {configuration} seed {seed}")
    students = []
    for side in (mine, control):
        missing = [a for a in audits if a not in side]
        if missing:
            some = next(iter(side.values()))
            raise UserError(f"{some.path}: no log of audit(s) {missing} for {_name(some)}")
        students.append(
            Student(
                rates={a: side[a].rate for a in audits},
                items={a: side[a].scores for a in audits},
            )
        )
    for a in audits:
        if mine[a].ids != control[a].ids:
            raise UserError(f"{mine[a].path} and {control[a].path}: not the same items of {a}")
    clusters = {mine[audits[0]].cluster, control[audits[0]].cluster}
    if len(clusters) > 1:
        raise UserError(f"{mine[audits[0]].path}: its cluster differs from its control's")
    return pair_type(configuration, seed, clusters.pop(), *students)


def _first_line(e: BaseException) -> str:
    lines = [s for s in str(e).splitlines() if s.strip()]
    return lines[0] if lines else type(e).__name__


__all__ = ["AuditLog", "find_logs", "read_audit_log", "read_logs", "verdict_from_logs"]
