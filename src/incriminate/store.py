"""Content-addressed artifact store.

Every stage writes `ROOT/<kind>/<key>/`, where `key` hashes the stage's resolved inputs (its
config, the keys of the artifacts it reads, its recipe version). A stage is built in a temporary
directory `ROOT/<kind>/.tmp-<key>-<random>/`, its `manifest.json` is written last, and the
directory is renamed into place in one step: a directory at the final name is always complete,
and a stage killed mid-write leaves only a `.tmp-` directory that is never taken as finished
(and is swept away by the next build of the same stage).

Builds of one stage are serialised by an exclusive `flock` on `ROOT/.locks/<kind>/<key>`: two
processes (two workers, two sweeps, two Ray nodes on shared storage) that need the same
unfinished stage compute it once; the second waits and then reuses it. The kernel releases the
lock when its holder dies (`kill -9` included), so a killed build never blocks the next one.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import incriminate
from incriminate.errors import StoreError

log = logging.getLogger(__name__)
MANIFEST = "manifest.json"


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def write_atomic(path: Path, text: str) -> None:
    """Write a text file under a temporary name and rename it into place: a reader (or a
    process killed mid-write) never sees half of it."""
    tmp = path.with_name(f".tmp-{path.name}-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def content_key(kind: str, inputs: Mapping[str, Any]) -> str:
    """16 hex digits of sha256 over the kind and the canonical JSON of the inputs."""
    return hashlib.sha256(f"{kind}\n{canonical_json(inputs)}".encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Artifact:
    kind: str
    key: str
    path: Path
    manifest: dict[str, Any]
    reused: bool


class Store:
    """A directory of finished stages, keyed by content."""

    def __init__(self, root: Path | str, writable: bool = True):
        """`writable=False`: only read finished artifacts (no directory is made or probed)."""
        self.root = Path(root)
        if not writable:
            return
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            probe = self.root / f".write-probe-{uuid.uuid4().hex}"
            probe.write_text("")
            probe.unlink()
        except OSError as e:
            raise StoreError(
                f"output directory {str(self.root)!r} is not writable: {e.strerror}"
            ) from None

    def path(self, kind: str, key: str) -> Path:
        return self.root / kind / key

    def find(self, kind: str, inputs: Mapping[str, Any]) -> Artifact | None:
        """The finished artifact for these inputs, or None."""
        key = content_key(kind, inputs)
        path = self.path(kind, key)
        manifest = path / MANIFEST
        if not manifest.exists():
            return None
        return Artifact(kind, key, path, json.loads(manifest.read_text()), reused=True)

    def load(self, kind: str, key: str) -> Artifact:
        """A finished artifact by kind and key (e.g. in a worker process that was handed a key)."""
        path = self.path(kind, key)
        if not (path / MANIFEST).exists():
            raise StoreError(f"no finished artifact {kind}/{key} in {str(self.root)!r}")
        return Artifact(kind, key, path, json.loads((path / MANIFEST).read_text()), reused=True)

    def build(
        self,
        kind: str,
        inputs: Mapping[str, Any],
        fn: Callable[[Path], Mapping[str, Any] | None],
        *,
        seed: int | None = None,
    ) -> Artifact:
        """Return the finished artifact for `inputs`, running `fn(tmp_dir)` only if needed.

        `fn` writes its outputs into the directory it is given and may return extra manifest
        fields (metrics, timings). Its inputs must be fully resolved: anything that changes the
        output must be in `inputs`.
        """
        found = self.find(kind, inputs)
        if found is None:
            with self.lock(kind, content_key(kind, inputs)):
                found = self.find(kind, inputs)  # another process may have built it meanwhile
                if found is None:
                    return self._build(kind, inputs, fn, seed)
        log.info("reusing %s/%s", kind, found.key)
        return found

    @contextlib.contextmanager
    def lock(self, kind: str, key: str) -> Iterator[None]:
        """Hold the build lock of one stage (blocks while another process holds it)."""
        path = self.root / ".locks" / kind / key
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def _build(
        self,
        kind: str,
        inputs: Mapping[str, Any],
        fn: Callable[[Path], Mapping[str, Any] | None],
        seed: int | None,
    ) -> Artifact:
        """Run `fn` in a temporary directory and rename it into place (the caller holds the
        stage's lock, so any `.tmp-` directory of this key is a leftover of a killed build)."""
        key = content_key(kind, inputs)
        final = self.path(kind, key)
        final.parent.mkdir(parents=True, exist_ok=True)
        for stale in final.parent.glob(f".tmp-{key}-*"):
            shutil.rmtree(stale, ignore_errors=True)
        tmp = final.parent / f".tmp-{key}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        t0 = time.perf_counter()
        try:
            extra = fn(tmp) or {}
            manifest = {
                "kind": kind,
                "key": key,
                "inputs": json.loads(canonical_json(inputs)),
                "seed": seed,
                "package_version": incriminate.__version__,
                "wall_s": round(time.perf_counter() - t0, 3),
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                **extra,
            }
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str))
            os.rename(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        log.info("built %s/%s in %.1fs", kind, key, manifest["wall_s"])
        return Artifact(kind, key, final, json.loads((final / MANIFEST).read_text()), False)
