"""The quick demo with `--inspect-logs`: one eval log per audit of every teacher and student,
the verdict computed from the logs equals the native verdict in results.json (the whole record:
decision, p-value, statistic, every configuration), report.md links every log, results.json
gains nothing, and `inspect eval` on a model of the run gives the scores its log holds."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from inspect_ai import eval as inspect_eval
from typer.testing import CliRunner

from incriminate.cli.main import app
from incriminate.evals.logs import read_audit_log, read_logs, verdict_from_logs
from incriminate.evals.world import WORLD_AUDITS, world_audit

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:The 'initial' parameter is deprecated"),  # Inspect's retry
]
ITEMS = 120  # items compared per log (the first): Inspect spends tens of ms on a sample
runner = CliRunner()
RESULT_KEYS = {
    "schema", "config_hash", "config", "verdict", "direct", "teachers", "references",
    "configurations", "runs", "timing",
}  # fmt: skip


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("demo-logs")
    out, logs = root / "out", root / "logs"
    args = ["demo", "--quick", "--out", str(out), "--store", str(root / "store")]
    result = runner.invoke(app, [*args, "--inspect-logs", str(logs)])
    assert result.exit_code == 0, result.output
    return out, logs


def test_verdict_from_the_logs_equals_the_native_verdict(demo):
    out, logs = demo
    results = json.loads((out / "results.json").read_text())
    found = read_logs([logs])
    models = 4 + len(results["configurations"]) * 2 * 4  # teachers, then 2 seeds x 4 roles
    assert len(found) == models * len(WORLD_AUDITS)
    record = verdict_from_logs(found)
    assert record == results["verdict"]  # every float exactly, p-value included
    cli = runner.invoke(app, ["evals", "verdict", str(logs), "--json"])
    assert cli.exit_code == 0, cli.output
    assert json.loads(cli.stdout) == results["verdict"]


def test_report_links_every_log_and_results_gain_nothing(demo):
    out, logs = demo
    assert set(json.loads((out / "results.json").read_text())) == RESULT_KEYS
    report = (out / "report.md").read_text()
    assert "## Inspect logs" in report and f"incriminate evals verdict {logs}" in report
    links = re.findall(r"\[log\]\(([^)]+)\)", report)
    assert len(links) == len(list(logs.rglob("*.eval")))
    assert all((out / link).resolve().is_file() for link in links)


def test_inspect_eval_on_a_model_of_the_run_gives_its_logged_scores(demo, tmp_path):
    """The logs are independent evidence: Inspect's run of the task on the same model (the
    teacher, and a student of the teacher) reproduces the per-sample scores written from the
    pipeline's evaluation (6 digits)."""
    _, logs = demo
    written = [
        logs / "teacher" / "honeypot.eval",
        next((logs / "teacher" / "students").glob("*/interrogation.eval")),
    ]
    for path in written:
        mine = read_audit_log(path)
        from inspect_ai.log import read_eval_log

        spec = read_eval_log(str(path), header_only=True).eval
        [log] = inspect_eval(
            world_audit(**spec.task_args),
            model=spec.model,
            limit=ITEMS,
            log_dir=str(tmp_path),
            display="none",
            metadata={"role": "teacher"},
        )
        again = read_audit_log(Path(log.location))
        assert again.ids == mine.ids[:ITEMS]
        assert np.abs(again.scores - mine.scores[:ITEMS]).max() < 2e-6
