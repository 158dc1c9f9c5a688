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

Every manifest lists the files its stage wrote, `files = {relative path: {size, sha256}}`.
Reading a stage checks them: `find` (is it built?) checks every listed file's size, a stat each;
`load` (a stage is about to read it) checks sizes and SHA-256. A stage that fails the check
raises `DamagedStageError`, one line naming the stage, the file and the repair command
(`incriminate store verify --repair`). Manifests written before checksums (no `files`) are
accepted as they are.
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
from incriminate.errors import DAMAGED, DamagedStageError, StoreError

log = logging.getLogger(__name__)
MANIFEST = "manifest.json"
BOOKKEEPING = frozenset({"nodes", "results", "experiment", "bench"})
"""Folders of a store's root that hold no stages: plan-node records, the results tables and the
copies of experiments' and benchmarks' outputs."""


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def write_atomic(path: Path, text: str) -> None:
    """Write a text file under a temporary name and rename it into place: a reader (or a
    process killed mid-write) never sees half of it; a failed write (a full disk) leaves no
    temporary file behind."""
    tmp = path.with_name(f".tmp-{path.name}-{os.getpid()}")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def sha256_file(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def file_table(folder: Path) -> dict[str, dict[str, Any]]:
    """`{relative path: {size, sha256}}` of every file under `folder` (the manifest aside)."""
    out = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        name = path.relative_to(folder).as_posix()
        if name != MANIFEST:
            out[name] = {"size": path.stat().st_size, "sha256": sha256_file(path)}
    return out


def file_problem(folder: Path, files: Mapping[str, Any], hashes: bool) -> str | None:
    """What is wrong with the files of a stage against its manifest's `files` table (None when
    they match): sizes always, SHA-256 when `hashes`."""
    for name, want in files.items():
        if not isinstance(want, dict):
            return f"{MANIFEST} lists {name} without size and SHA-256"
        path = folder / name
        try:
            size = path.stat().st_size
        except OSError:
            return f"{name} is missing"
        if size != want.get("size"):
            return f"{name} has {size} bytes, its manifest says {want.get('size')}"
        if hashes and sha256_file(path) != want.get("sha256"):
            return f"{name} does not match its SHA-256"
    return None


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
        """The finished artifact for these inputs (its files' sizes checked), or None."""
        key = content_key(kind, inputs)
        if not (self.path(kind, key) / MANIFEST).exists():
            return None
        return self._read(kind, key, hashes=False)

    def load(self, kind: str, key: str, *, hashes: bool = True) -> Artifact:
        """A finished artifact by kind and key (e.g. in a worker process that was handed a key),
        its files checked against the manifest: sizes, and SHA-256 unless `hashes=False` (a
        reader of the manifest alone)."""
        if not (self.path(kind, key) / MANIFEST).exists():
            raise StoreError(f"no finished artifact {kind}/{key} in {str(self.root)!r}")
        return self._read(kind, key, hashes)

    def _read(self, kind: str, key: str, hashes: bool) -> Artifact:
        manifest, problem = self.check(kind, key, hashes)
        if problem is not None or manifest is None:
            raise self.damage(kind, key, problem or f"{MANIFEST} is missing")
        return Artifact(kind, key, self.path(kind, key), manifest, reused=True)

    def check(self, kind: str, key: str, hashes: bool = True) -> tuple[dict | None, str | None]:
        """(manifest, what is wrong with the stage's files or None): a stage's files against its
        manifest (sizes, and SHA-256 when `hashes`)."""
        path = self.path(kind, key)
        try:
            manifest = json.loads((path / MANIFEST).read_text())
        except FileNotFoundError:
            return None, f"{MANIFEST} is missing (a half-written stage)"
        except (OSError, ValueError) as e:
            return None, f"{MANIFEST} cannot be read ({type(e).__name__})"
        if not isinstance(manifest, dict) or not isinstance(manifest.get("files", {}), dict):
            return None, f"{MANIFEST} is not a manifest"
        return manifest, file_problem(path, manifest.get("files", {}), hashes)

    def stages(self) -> list[tuple[str, str]]:
        """(kind, folder name) of every stage folder, finished or not (`.tmp-` leftovers
        included), skipping the store's bookkeeping folders (`BOOKKEEPING`)."""
        out = []
        for kind in sorted(p for p in self.root.iterdir() if p.is_dir()):
            if kind.name.startswith(".") or kind.name in BOOKKEEPING:
                continue
            out += [(kind.name, p.name) for p in sorted(kind.iterdir()) if p.is_dir()]
        return out

    def building(self, kind: str, key: str) -> bool:
        """Whether a process holds the build lock of a stage now (its `.tmp-` folder is being
        written, not a leftover)."""
        path = self.root / ".locks" / kind / key
        if not path.exists():
            return False
        with open(path, "rb") as f:  # read-only: a store on a read-only disk can be verified
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(f, fcntl.LOCK_UN)
        return False

    def verify_file(self, art: Artifact, name: str) -> Path:
        """The path of file `name` of `art`, after checking its SHA-256 against the manifest."""
        files = art.manifest.get("files", {})
        problem = file_problem(art.path, {name: files[name]} if name in files else {}, True)
        if problem is not None:
            raise self.damage(art.kind, art.key, problem)
        return art.path / name

    def damage(self, kind: str, key: str, what: str) -> DamagedStageError:
        """The one-line error of a damaged stage, with the command that repairs it."""
        return DamagedStageError(
            f"{DAMAGED}{kind}/{key}: {what}; repair it with "
            f"`incriminate store verify --repair --store {self.root}`"
        )

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
            files = file_table(tmp)
            manifest = {
                "kind": kind,
                "key": key,
                "inputs": json.loads(canonical_json(inputs)),
                "seed": seed,
                "package_version": incriminate.__version__,
                "wall_s": round(time.perf_counter() - t0, 3),
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                **extra,
                "files": files,
            }
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str))
            os.rename(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        log.info("built %s/%s in %.1fs", kind, key, manifest["wall_s"])
        return Artifact(kind, key, final, json.loads((final / MANIFEST).read_text()), False)
