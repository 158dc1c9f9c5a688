"""`incriminate sweep --backend ray` on a real Ray head started on loopback: the same outputs as
the local executor, and nothing left behind (no Ray process, no temporary files)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).parents[1]
SWEEP = ROOT / "configs" / "sweeps" / "quick.yaml"
RAY = Path(sys.executable).with_name("ray")
RAY_DAEMONS = ("gcs_server", "raylet", "ray::", "default_worker.py", "dashboard")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ray_processes() -> list[str]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            cmd = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if any(d in cmd for d in RAY_DAEMONS):
            found.append(cmd[:120])
    return found


def _sweep(root: Path, out: str, store: str, *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "incriminate.cli", "sweep", str(SWEEP), "--out", out]
    return subprocess.run(
        [*cmd, "--store", store, *extra],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=900,
        env=os.environ | {"RAY_AUTH_MODE": "disabled"},
    )


def _results(root: Path, out: str) -> dict[str, object]:
    got: dict[str, object] = {"sweep.json": (root / out / "sweep.json").read_text()}
    for path in sorted((root / out / "points").glob("*/results.json")):
        results = json.loads(path.read_text())
        results.pop("timing")
        got[path.parent.name] = results
    return got


@pytest.mark.skipif(
    not RAY.exists(), reason="Ray is not installed (pip install 'incriminate[ray]')"
)
def test_a_sweep_on_a_local_ray_head(tmp_path_factory: pytest.TempPathFactory) -> None:
    assert not _ray_processes(), "another Ray instance is running on this machine"
    root = tmp_path_factory.mktemp("sweep-ray")
    # Ray's socket paths must stay under 107 characters: a short folder of the test's own.
    temp = tmp_path_factory.mktemp("ray")
    default_tmp = Path("/tmp/ray")
    existed = default_tmp.exists()
    port = _free_port()
    env = os.environ | {"RAY_AUTH_MODE": "disabled"}
    start = subprocess.run(
        [
            str(RAY),
            "start",
            "--head",
            f"--port={port}",
            "--node-ip-address=127.0.0.1",
            "--num-cpus=2",
            f"--temp-dir={temp}",
            "--include-dashboard=false",
            "--disable-usage-stats",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    try:
        assert start.returncode == 0, start.stderr[-2000:]
        r = _sweep(root, "ray", "store-ray", "--backend", "ray", "--address", f"127.0.0.1:{port}")
        assert r.returncode == 0, r.stderr[-3000:]
    finally:
        stop = subprocess.run(
            [str(RAY), "stop", "--force"], capture_output=True, text=True, timeout=120, env=env
        )
    assert stop.returncode == 0, stop.stderr
    assert not _ray_processes()
    shutil.rmtree(temp)
    assert default_tmp.exists() == existed  # nothing written to Ray's default folder
    # The same sweep on the local executor gives the same results.
    r = _sweep(root, "local", "store-local", "--workers", "2")
    assert r.returncode == 0, r.stderr[-3000:]
    assert _results(root, "ray") == _results(root, "local")
    doc = json.loads((root / "ray" / "sweep.json").read_text())
    assert all(p["status"] == "done" for p in doc["points"])
