"""The world's audits as Inspect tasks (`evals.world`) on a world model through our provider
(`--model incriminate/DIR`, found through the package's `inspect_ai` entry point) give the
native audits' item scores (`audit.audits`) on the first `ITEMS` items of each: the exact reads
within 1e-5 (one unpadded forward per sample against batches of 512), capability exactly; the
sampled scratchpad gives 0/1 items of the same prompts. `inspect eval` on the command line does
the same."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from inspect_ai import eval as inspect_eval

from conftest import tiny_config
from incriminate.audit.audits import run_audits
from incriminate.evals.logs import read_audit_log
from incriminate.evals.world import WORLD_AUDITS, world_audit
from incriminate.models.io import load_model
from incriminate.world.config import WorldConfig

pytestmark = [
    pytest.mark.slow,
    pytest.mark.usefixtures("one_thread"),
    pytest.mark.filterwarnings("ignore:The 'initial' parameter is deprecated"),  # Inspect's retry
]
ITEMS = 120
"""Items per audit (the first of each): Inspect spends tens of milliseconds on a sample."""


@pytest.fixture(scope="module")
def world_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny instruct checkpoint of the world (seconds to build)."""
    from incriminate.organisms.recipes import build_instruct
    from incriminate.store import Store

    store = Store(tmp_path_factory.mktemp("world-store"))
    return build_instruct(store, tiny_config()).path


@pytest.fixture(scope="module")
def native(world_model: Path) -> dict:
    return run_audits(load_model(world_model), WorldConfig())


def test_world_tasks_give_the_native_scores(world_model, native, tmp_path):
    logs = inspect_eval(
        [world_audit(audit=a) for a in WORLD_AUDITS],
        model=f"incriminate/{world_model}",
        limit=ITEMS,
        log_dir=str(tmp_path),
        display="none",
        metadata={"role": "teacher"},
    )
    assert [log.status for log in logs] == ["success"] * len(WORLD_AUDITS)
    got = {a: read_audit_log(Path(log.location)) for a, log in zip(WORLD_AUDITS, logs, strict=True)}
    want = {a: np.asarray(native[a].scores[:ITEMS]) for a in WORLD_AUDITS}
    for a in WORLD_AUDITS:
        assert got[a].ids == tuple(f"{a}-{i:04d}" for i in range(ITEMS)), a
        assert got[a].rate == round(float(got[a].scores.mean()), 6)
    for a in ("honeypot", "interrogation"):
        assert np.abs(got[a].scores - want[a]).max() < 1e-5, a
        assert want[a].std() > 1e-4  # items that differ: a shifted item would fail
    assert np.array_equal(got["capability"].scores, want["capability"])
    assert 0 < want["capability"].sum() < ITEMS  # right and wrong answers
    assert set(got["scratchpad"].scores) <= {0.0, 1.0}


def test_inspect_eval_on_the_command_line(world_model, native, tmp_path):
    """`inspect eval` finds the task and the provider through the entry point."""
    command = [sys.executable, "-m", "inspect_ai", "eval", "incriminate/world_audit"]
    command += ["-T", "audit=honeypot", "--model", f"incriminate/{world_model}"]
    command += ["--limit", "40"]
    command += ["--log-dir", str(tmp_path), "--metadata", "role=teacher", "--display", "none"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    [path] = tmp_path.glob("*.eval")
    log = read_audit_log(path)
    assert np.abs(log.scores - np.asarray(native["honeypot"].scores[:40])).max() < 1e-5
