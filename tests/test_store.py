"""The content-addressed artifact store: keys, reuse, atomicity."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from incriminate.errors import StoreError
from incriminate.store import Store, content_key


def test_key_depends_on_content_not_on_order():
    assert content_key("base", {"a": 1, "b": [1, 2]}) == content_key("base", {"b": [1, 2], "a": 1})
    assert content_key("base", {"a": 1}) != content_key("base", {"a": 2})
    assert content_key("base", {"a": 1}) != content_key("corpus", {"a": 1})


def test_finished_stage_is_reused_not_recomputed(tmp_path: Path):
    store = Store(tmp_path)
    calls = []

    def make(out: Path) -> dict:
        calls.append(1)
        (out / "x.txt").write_text("hello")
        return {"metric": 3}

    a = store.build("thing", {"n": 1}, make, seed=4)
    b = store.build("thing", {"n": 1}, make, seed=4)
    assert calls == [1] and not a.reused and b.reused
    assert a.path == b.path == tmp_path / "thing" / a.key
    assert (b.path / "x.txt").read_text() == "hello"
    m = b.manifest
    assert m["inputs"] == {"n": 1} and m["seed"] == 4 and m["metric"] == 3
    assert m["package_version"] and m["wall_s"] >= 0
    store.build("thing", {"n": 2}, make)
    assert calls == [1, 1]


def test_a_failing_stage_leaves_nothing(tmp_path: Path):
    store = Store(tmp_path)

    def make(out: Path) -> None:
        (out / "partial.bin").write_bytes(b"x" * 100)
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        store.build("thing", {"n": 1}, make)
    assert store.find("thing", {"n": 1}) is None
    assert list((tmp_path / "thing").iterdir()) == []


KILLED_CHILD = """
import sys, time
from pathlib import Path
from incriminate.store import Store

def make(out: Path):
    (out / "weights.bin").write_bytes(b"x" * 1000)
    print("writing", flush=True)
    time.sleep(60)

Store(sys.argv[1]).build("thing", {"n": 1}, make)
"""


def test_a_stage_killed_mid_write_is_not_taken_as_finished(tmp_path: Path):
    child = subprocess.Popen(
        [sys.executable, "-c", KILLED_CHILD, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None and child.stdout.readline().strip() == "writing"
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    store = Store(tmp_path)
    assert store.find("thing", {"n": 1}) is None
    leftovers = [p for p in (tmp_path / "thing").iterdir() if p.name.startswith(".tmp-")]
    assert len(leftovers) == 1

    # The kernel released the dead build's lock: the next build runs the stage again, completes
    # it and sweeps the leftover.
    def write_ok(out: Path) -> None:
        (out / "weights.bin").write_bytes(b"ok")

    art = store.build("thing", {"n": 1}, write_ok)
    assert not art.reused and (art.path / "weights.bin").read_bytes() == b"ok"
    assert store.find("thing", {"n": 1}) is not None
    assert not leftovers[0].exists()


RACING_CHILD = """
import sys, time
from pathlib import Path
from incriminate.store import Store

def make(out: Path):
    with open(sys.argv[2], "a") as f:
        f.write(sys.argv[3] + "\\n")
    time.sleep(1.0)
    (out / "x.txt").write_text("done")

art = Store(sys.argv[1]).build("thing", {"n": 1}, make)
print("reused" if art.reused else "built", flush=True)
"""


def test_two_processes_needing_one_stage_compute_it_once(tmp_path: Path):
    calls = tmp_path / "calls.txt"
    children = [
        subprocess.Popen(
            [sys.executable, "-c", RACING_CHILD, str(tmp_path / "store"), str(calls), str(i)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for i in range(3)
    ]
    said = sorted(c.communicate(timeout=60)[0].strip() for c in children)
    assert said == ["built", "reused", "reused"]
    assert len(calls.read_text().splitlines()) == 1
    art = Store(tmp_path / "store").find("thing", {"n": 1})
    assert art is not None and (art.path / "x.txt").read_text() == "done"


def test_unwritable_root_is_a_one_line_error(tmp_path: Path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(StoreError, match="not writable"):
        Store(blocker / "sub")
