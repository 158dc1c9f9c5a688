"""The plan graph and the scheduler, on hand-made tasks: dependencies resolve, shared nodes run
once, a failure skips only its dependants, and finished nodes are recorded."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from incriminate.plan import stages
from incriminate.plan.executors import InlineExecutor, check_ray_address, execute, recorded
from incriminate.plan.graph import Plan, ref, resolve
from incriminate.store import Store

CALLS: list[str] = []


@stages.stage("test_make")
def _make(store: Store, name: str, inputs: dict | None = None) -> dict:
    CALLS.append(name)
    return {"name": name, "inputs": inputs or {}}


@stages.stage("test_boom")
def _boom(store: Store, name: str) -> None:
    CALLS.append(name)
    raise ValueError(f"{name} cannot be built\nsecond line")


@pytest.fixture
def fake_tasks():
    CALLS.clear()


def test_a_node_is_added_once_and_its_id_depends_on_its_inputs():
    plan = Plan()
    a = plan.add("corpus", build={"x": 1})
    again = plan.add("corpus", build={"x": 1})
    other = plan.add("corpus", build={"x": 2})
    assert a is again and a.id != other.id and len(plan.nodes) == 2
    b = plan.add("instruct", build={"x": 1}, init_seed=None, after=ref(a))
    assert b.deps == (a.id,) and plan.children()[a.id] == [b.id]
    assert resolve({"m": ref(a, "k"), "l": [ref(a)]}, {a.id: {"k": 7}}) == {
        "m": 7,
        "l": [{"k": 7}],
    }
    with pytest.raises(KeyError, match="not in the plan"):
        plan.add("instruct", after={"$node": "0" * 16})


def test_a_failure_skips_its_dependants_and_nothing_else(tmp_path: Path, fake_tasks):
    plan = Plan()
    a = plan.add("test_make", name="a")
    b = plan.add("test_boom", name="b", after=ref(a))
    c = plan.add("test_make", name="c", inputs=ref(b))
    d = plan.add("test_make", name="d", inputs=ref(a, "name"))
    seen: list[tuple[str, str]] = []
    ticks: list[tuple[str, int, int]] = []
    out = execute(
        plan,
        InlineExecutor(threads=1),
        tmp_path,
        log_dir=tmp_path / "logs",
        progress=lambda *t: ticks.append(t),
        on_failure=lambda node, error, log: seen.append((node.id, error)),
    )
    assert CALLS == ["a", "b", "d"]
    assert out.results[d.id] == {"name": "d", "inputs": "a"}
    assert out.failures == {b.id: "ValueError: b cannot be built"}
    assert out.blocked == {c.id: b.id} and seen == [(b.id, "ValueError: b cannot be built")]
    assert ("test_make", 2, 3) in ticks and ("test_boom", 0, 1) in ticks
    # The failed stage's log holds the traceback; finished nodes are recorded with their result.
    assert "Traceback" in (tmp_path / "logs" / f"test_boom-{b.id}.log").read_text()
    rec = recorded(tmp_path, a.id)
    assert rec is not None and rec["result"] == {"name": "a", "inputs": {}} and rec["wall_s"] >= 0
    assert recorded(tmp_path, b.id) is None and recorded(tmp_path, c.id) is None


def test_unreachable_or_malformed_ray_addresses_are_one_line_errors():
    with pytest.raises(ValueError, match=re.escape("cannot reach the Ray cluster at 127.0.0.1:1")):
        check_ray_address("127.0.0.1:1")
    with pytest.raises(ValueError, match="not of the form HOST:PORT"):
        check_ray_address("localhost")
