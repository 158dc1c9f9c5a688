"""The content-addressed artifact store: keys, reuse, atomicity."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from incriminate.experiment.store import Store, StoreError, content_key


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
from incriminate.experiment.store import Store

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
    leftovers = list((tmp_path / "thing").iterdir())
    assert len(leftovers) == 1 and leftovers[0].name.startswith(".tmp-")

    # The next build runs the stage again and completes it.
    def write_ok(out: Path) -> None:
        (out / "weights.bin").write_bytes(b"ok")

    art = store.build("thing", {"n": 1}, write_ok)
    assert not art.reused and (art.path / "weights.bin").read_bytes() == b"ok"
    assert store.find("thing", {"n": 1}) is not None
    # A stale temporary directory (over an hour old) is swept by the next build of that key.
    old = time.time() - 7200
    os.utime(leftovers[0], (old, old))
    store.build("thing", {"n": 1}, lambda out: None)  # reused: no sweep needed
    Store(tmp_path)._sweep(tmp_path / "thing", art.key)
    assert not leftovers[0].exists()


def test_unwritable_root_is_a_one_line_error(tmp_path: Path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(StoreError, match="not writable"):
        Store(blocker / "sub")
