"""What the HTML report reads from the artifact store besides `results.json`: example
transcripts (the `transcripts` stage, `plan.transcripts`), training curves and the stages'
manifests. The report only reads: anything missing from the store becomes a note in the
report, never an error.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from incriminate.errors import DamagedStageError
from incriminate.plan.transcripts import pairs, read

__all__ = ["Evidence", "TranscriptRow", "Transcripts", "collect"]

LOSSES = "losses.json"  # written by `plan.runs.distill_student`


@dataclass
class TranscriptRow:
    """Replies of one (teacher, control) pair of models to every prompt; None where the model
    could not be loaded (`note` says why)."""

    label: str
    teacher: list[str] | None
    control: list[str] | None
    note: str = ""


@dataclass
class Evidence:
    """Store-side material of one results document."""

    curves: dict[str, list[float] | None] = field(default_factory=dict)  # student id -> losses
    manifests: dict[str, dict[str, Any]] = field(default_factory=dict)  # artifact id -> manifest
    notes: list[str] = field(default_factory=list)
    transcripts: Transcripts | None = None


def _model_dir(store: Path, artifact: str) -> Path:
    kind, _, key = artifact.partition("/")
    return store / kind / key


class Transcripts:
    """The transcripts of results documents, read from their `transcripts` stages."""

    def __init__(self, docs: list[dict[str, Any]], store: Path):
        self.store = store
        self.error = ""

    def rows(self, doc: dict[str, Any]) -> tuple[list[tuple[str, str]], list[TranscriptRow]]:
        """(prompts, one row per model pair) of `doc`; nothing when the store lacks them
        (`error` says why)."""
        try:
            found = read(self.store, doc)
        except DamagedStageError as e:  # its message names the stage and the repair command
            found, self.error = None, f"The transcripts are damaged: {e}"
        except (OSError, ValueError) as e:
            found, self.error = None, f"transcripts could not be read: {e}"
        if found is None:
            self.error = self.error or (
                "The transcripts are not in the store (`incriminate report DIR --store STORE` "
                "builds them)."
            )
            return [], []
        prompts = [(label, text) for label, text in found["prompts"]]
        replies = found["replies"]
        rows = []
        for label, u, c in pairs(doc):
            su, sc = replies.get(u, f"{u}: no replies"), replies.get(c, f"{c}: no replies")
            rows.append(
                TranscriptRow(
                    label,
                    None if isinstance(su, str) else su,
                    None if isinstance(sc, str) else sc,
                    "; ".join(x for x in (su, sc) if isinstance(x, str)),
                )
            )
        return prompts, rows

    def close(self) -> None:
        pass


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def collect(results: dict[str, Any], store: Path, transcripts: Transcripts | None) -> Evidence:
    """Curves and manifests of `results` from `store`, with its transcripts (a job started by
    the caller; None: none shown)."""
    ev = Evidence(transcripts=transcripts)
    if not store.is_dir():
        ev.notes.append(
            f"The artifact store {store} does not exist here: no transcripts or training curves "
            "(pass --store)."
        )
        return ev
    teachers = [t["model"] for t in results["teachers"].values()]
    for artifact in [*teachers, *(r["student"] for r in results["runs"])]:
        manifest = _read_json(_model_dir(store, artifact) / "manifest.json")
        if manifest is not None:
            ev.manifests[artifact] = manifest
    for r in results["runs"]:
        losses = _read_json(_model_dir(store, r["student"]) / LOSSES)
        ev.curves[r["student"]] = losses if isinstance(losses, list) else None
    return ev
