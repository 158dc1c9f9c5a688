"""`--dry-run`'s count of done stages (`plan.sweep.dry_run`): a stage whose artifact was built
under an older version of its kind, or whose inputs are not done, counts as to run."""

from __future__ import annotations

import json
from pathlib import Path

from incriminate.plan.executors import NODES
from incriminate.plan.graph import Plan, ref
from incriminate.plan.runs import EVALUATION_VERSION
from incriminate.plan.sweep import artifact_versions, dry_run

STUDENT, EVALUATION = "student/00000000000000aa", "evaluation/00000000000000bb"


def _artifact(store: Path, name: str, version: int | None) -> None:
    folder = store / name
    folder.mkdir(parents=True, exist_ok=True)
    inputs = {} if version is None else {"version": version}
    (folder / "manifest.json").write_text(json.dumps({"inputs": inputs}))


def _record(store: Path, node_id: str, task: str, result: str) -> None:
    (store / NODES).mkdir(parents=True, exist_ok=True)
    record = {"task": task, "kind": task, "result": result, "wall_s": 2.0}
    (store / NODES / f"{node_id}.json").write_text(json.dumps(record))


def _counts(plan: Plan, store: Path) -> dict[str, tuple[int, int]]:
    return {r["kind"]: (r["done"], r["to_run"]) for r in dry_run(plan, store)}


def test_stale_versions_and_their_descendants_count_as_to_run(tmp_path: Path) -> None:
    assert artifact_versions()["evaluation"] == EVALUATION_VERSION
    plan = Plan()
    student = plan.add("student", init="model/x", cache="teacher_cache/y", seed=0)
    evaluation = plan.add("evaluation", model=ref(student), world={}, drive=None)
    _record(tmp_path, student.id, "student", STUDENT)
    _record(tmp_path, evaluation.id, "evaluation", EVALUATION)
    _artifact(tmp_path, STUDENT, None)
    _artifact(tmp_path, EVALUATION, EVALUATION_VERSION)
    assert _counts(plan, tmp_path) == {"student": (1, 0), "evaluation": (1, 0)}

    _artifact(tmp_path, EVALUATION, EVALUATION_VERSION - 1)  # built before a version bump
    assert _counts(plan, tmp_path) == {"student": (1, 0), "evaluation": (0, 1)}

    _artifact(tmp_path, EVALUATION, EVALUATION_VERSION)
    (tmp_path / STUDENT / "manifest.json").unlink()  # the student is gone: so is what reads it
    assert _counts(plan, tmp_path) == {"student": (0, 1), "evaluation": (0, 1)}
    rows = {r["kind"]: r for r in dry_run(plan, tmp_path)}
    assert rows["evaluation"]["estimate_s"] == 2.0
