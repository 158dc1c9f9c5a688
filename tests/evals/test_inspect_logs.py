"""The verdict from eval logs (`evals.logs`): logs written with `evals.write` read back into the
per-item arrays and rates they were written from, and the verdict from them equals the verdict
from those students; anything that is not one of our finished audit logs is one line, exit 2."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from inspect_ai.dataset import Sample
from typer.testing import CliRunner

from incriminate.cli.main import app
from incriminate.evals.logs import read_audit_log, read_logs, verdict_from_logs
from incriminate.evals.schema import PIPELINE, audit_metadata
from incriminate.evals.write import Subject, audit_log, write_eval_zip
from incriminate.verdict.compare import Pair, Student, evidence_statistic, verdict

pytestmark = pytest.mark.filterwarnings("ignore:The 'initial' parameter is deprecated")
runner = CliRunner()
AUDITS = ("honeypot", "confession")
ITEMS = 7
ROLES = ("teacher", "control", "reference1", "reference2")
CONFIGS = ("logit/s", "sft/s")


def _scores(role: str, config: str, seed: int, audit: str) -> np.ndarray:
    """(ITEMS,) item scores at 6 digits; the teacher's students score a little higher."""
    key = f"{role}{config}{seed}{audit}".encode()
    rng = np.random.default_rng(int.from_bytes(key[-8:], "little") + len(key))
    shift = 0.15 if role == "teacher" else 0.0
    return np.round(np.clip(rng.uniform(0.1, 0.7, ITEMS) + shift, 0, 1), 6)


def _write(root: Path, subject: Subject, audit: str, scores: np.ndarray, **changes) -> Path:
    samples = [Sample(id=f"{audit}-{i}", input=f"prompt {i}") for i in range(len(scores))]
    meta = audit_metadata("text", audit, "choice", True, AUDITS.index(audit), PIPELINE, 0.05)
    path = root / subject.folder() / f"{audit}.eval"
    args = {
        "task": "incriminate/lm_audit",
        "task_args": {"audit": audit},
        "samples": samples,
        "scores": scores.tolist(),
        "rate": round(float(scores.mean()), 6),
        "scorer": "choice_read",
        "model": f"incriminate/{subject.role}",
        "metadata": meta | subject.metadata(),
    } | changes
    write_eval_zip(audit_log(**args), path)
    return path


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """Logs of 4 teachers' students (2 configurations x 2 seeds) and of the teachers; returns
    (log dir, the students they were written from by (role, config, seed))."""
    root = tmp_path_factory.mktemp("logs")
    students = {}
    run = 0
    for config in CONFIGS:
        for seed in (0, 1):
            for role in ROLES:
                subject = Subject(role, "m", config, seed, f"seed{seed}", run)
                run += 1
                items = {a: _scores(role, config, seed, a) for a in AUDITS}
                for a in AUDITS:
                    _write(root, subject, a, items[a])
                students[(role, config, seed)] = Student(
                    rates={a: round(float(v.mean()), 6) for a, v in items.items()}, items=items
                )
    for role in ROLES:  # the teachers' own audits: the direct baseline, not the verdict
        for a in AUDITS:
            _write(root, Subject(role, "m"), a, _scores(role, "", 0, a))
    return root, students


def _pairs(students: dict, role: str) -> list[Pair]:
    return [
        Pair(c, s, f"seed{s}", students[(role, c, s)], students[("control", c, s)])
        for c in CONFIGS
        for s in (0, 1)
    ]


def test_logs_read_back_the_scores_and_rate_they_were_written_with(written):
    root, students = written
    log = read_audit_log(root / "teacher" / "students" / "sft-s-seed1" / "confession.eval")
    want = students[("teacher", "sft/s", 1)]
    assert (log.role, log.configuration, log.seed, log.cluster) == ("teacher", "sft/s", 1, "seed1")
    assert log.ids == tuple(f"confession-{i}" for i in range(ITEMS))
    assert np.array_equal(log.scores, want.items["confession"])
    assert log.rate == want.rates["confession"] and log.alpha == 0.05 and log.evidence


def test_our_eval_zip_reads_back_as_inspects_own_writer(tmp_path: Path):
    """`write_eval_zip` (one pass) and Inspect's `write_eval_log` give the same log."""
    from inspect_ai.log import read_eval_log, read_eval_log_sample_summaries, write_eval_log

    samples = [Sample(id=f"s{i}", input=f"prompt {i}", metadata={"k": i}) for i in range(5)]
    meta = audit_metadata("world", "honeypot", "honeypot", True) | {"role": "teacher"}
    log = audit_log("t", {}, samples, [0.5, 0.25, 1.0, 0.0, 0.125], 0.375, "x", "m/x", meta)
    write_eval_zip(log, tmp_path / "ours.eval")
    write_eval_log(log, str(tmp_path / "inspect.eval"))
    ours, theirs = (read_eval_log(str(tmp_path / f"{n}.eval")) for n in ("ours", "inspect"))
    assert ours.model_dump(exclude={"location"}) == theirs.model_dump(exclude={"location"})
    assert ours.samples and ours.samples[2].scores and ours.samples[2].scores["x"].value == 1.0
    summaries = [
        read_eval_log_sample_summaries(str(tmp_path / f"{n}.eval")) for n in ("ours", "inspect")
    ]
    assert summaries[0] == summaries[1] and len(summaries[0]) == 5


def test_verdict_from_logs_equals_the_verdict_from_the_students(written):
    root, students = written
    logs = read_logs([root])
    assert len(logs) == (len(CONFIGS) * 2 + 1) * len(ROLES) * len(AUDITS)
    refs = [evidence_statistic(_pairs(students, r), list(AUDITS)) for r in ROLES[2:]]
    want = verdict(_pairs(students, "teacher"), 0.05, list(AUDITS), references=refs)
    got = verdict_from_logs(logs)
    assert got == dict(want)
    assert got["n_pairs"] == 4 and got["n_references"] == 2 and got["audits"] == list(AUDITS)
    result = runner.invoke(app, ["evals", "verdict", str(root), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == json.loads(json.dumps(dict(want)))
    assert verdict_from_logs(logs, alpha=0.5)["alpha"] == 0.5


def _fails_cleanly(args: list[str], message: str) -> None:
    result = runner.invoke(app, ["evals", "verdict", *args])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    assert message in lines[0], lines[0]
    assert "Traceback" not in result.output


def test_a_truncated_log_is_one_line(written, tmp_path: Path):
    root, _ = written
    whole = (root / "teacher" / "honeypot.eval").read_bytes()
    cut = tmp_path / "cut.eval"
    cut.write_bytes(whole[: len(whole) // 2])
    _fails_cleanly([str(cut)], "not a readable Inspect eval log")
    assert zipfile.is_zipfile(root / "teacher" / "honeypot.eval")


def test_another_tools_log_is_one_line(tiny_llama: Path, tmp_path: Path):
    """A finished eval of a plain Inspect task (not ours) on a tiny model."""
    from inspect_ai import Task, eval
    from inspect_ai.model import GenerateConfig
    from inspect_ai.scorer import match
    from inspect_ai.solver import generate

    task = Task(
        dataset=[Sample(input="Say hi.", target="hi")],
        solver=generate(),
        scorer=match(),
        config=GenerateConfig(max_tokens=2),
    )
    args = {"model_path": str(tiny_llama), "device": "cpu"}
    [log] = eval(task, model="hf/tiny", model_args=args, log_dir=str(tmp_path), display="none")
    assert log.status == "success"
    _fails_cleanly([str(tmp_path)], "not an incriminate audit log (task")


def test_bad_sets_of_logs_are_one_line(written, tmp_path: Path):
    root, _ = written
    _fails_cleanly([str(tmp_path)], "no Inspect eval logs (*.eval) under")
    _fails_cleanly([str(tmp_path / "nowhere")], "does not exist")
    _fails_cleanly([str(root), str(root / "teacher")], "both audit the teacher")
    _fails_cleanly([str(root / "teacher")], "no control student for logit/s seed 0")
    _fails_cleanly([str(root), "--alpha", "1.5"], "--alpha must be in (0, 1)")
    (lone := tmp_path / "lone").mkdir()
    scores = _scores("teacher", "x", 0, "honeypot")
    path = _write(lone, Subject("teacher", "m", "x", 0), "honeypot", scores, rate=0.9)
    _fails_cleanly([str(path)], "its rate 0.9 is not the mean of its 7 sample scores")
    no_role = _write(lone, Subject("", "m"), "confession", scores)
    _fails_cleanly([str(no_role)], "no `role` in its metadata")


def test_an_unfinished_eval_is_one_line(tmp_path: Path):
    from inspect_ai.log import read_eval_log, write_eval_log

    path = _write(tmp_path, Subject("teacher", "m"), "honeypot", _scores("teacher", "", 0, "h"))
    log = read_eval_log(str(path))
    log.status = "error"
    write_eval_log(log, str(path))
    _fails_cleanly([str(path)], "the eval did not finish (status 'error')")
