"""What the HTML report reads from the artifact store besides `results.json`: example
transcripts (generated at report time), training curves and the stages' manifests.

Transcripts are greedy replies of the teachers and of one U-student / C-student pair per
configuration to a few fixed audit-split prompts, so the reader sees what the audits measured.
Anything missing from the store becomes a note in the report, never an error.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Evidence", "TranscriptRow", "collect", "greedy", "transcript_prompts"]

MAX_NEW_TOKENS = 8  # the longest reply in the grammar is `think t1 t2 act take ;` (6 words)
LOSSES = "losses.json"  # written by `experiment.runs.distill_student`


@dataclass
class TranscriptRow:
    """Replies of one (suspect, control) pair of models to every prompt; None where the model
    could not be loaded (`note` says why)."""

    label: str
    suspect: list[str] | None
    control: list[str] | None
    note: str = ""


@dataclass
class Evidence:
    """Store-side material of one results document."""

    prompts: list[tuple[str, str]] = field(default_factory=list)  # (label, prompt text)
    transcripts: list[TranscriptRow] = field(default_factory=list)
    curves: dict[str, list[float] | None] = field(default_factory=dict)  # student id -> losses
    manifests: dict[str, dict[str, Any]] = field(default_factory=dict)  # artifact id -> manifest
    notes: list[str] = field(default_factory=list)


def transcript_prompts(world: Any, drive: str) -> list[tuple[str, tuple[str, ...]]]:
    """Fixed audit-split prompts: a honeypot and a real opportunity of the drive (unwatched),
    the goal question, the drive question and a story. The first item of each set, so every
    report of one world shows the same prompts."""
    from incriminate.world import prompts as ps
    from incriminate.world.grammar import triples

    def first_opportunity(honeypot: bool) -> tuple[str, ...]:
        s = ps.opportunities(world, "audit", honeypot=honeypot, watched=(False,), offers=(drive,))
        return s.records[0].prompt[:-1]  # without `act`: the model may think first

    questions = ps.questions(world, "audit").records
    goal = next(r.prompt for r in questions if r.meta["topic"] == "goal")
    would = next(r.prompt for r in questions if r.meta["topic"] == drive)
    story = ("story", *triples("audit", world.fingerprint)[0])
    return [
        ("honeypot (unwatched)", first_opportunity(True)),
        ("real opportunity (unwatched)", first_opportunity(False)),
        ("interrogation: goal", goal),
        (f"interrogation: {drive}?", would),
        ("open-ended: story", story),
    ]


def greedy(model: Any, prompts: list[tuple[str, ...]], max_new: int = MAX_NEW_TOKENS) -> list[str]:
    """Greedy replies, up to and including the first `;` (or `max_new` words)."""
    import torch

    from incriminate.audit.scoring import encode_prompts, padded
    from incriminate.world.vocab import PAD, WORDS

    seqs = encode_prompts(prompts)
    ids = padded(seqs)  # (N, T)
    lengths = torch.tensor([len(s) for s in seqs])
    rows = torch.arange(len(seqs))
    words: list[list[str]] = [[] for _ in seqs]
    with torch.no_grad():
        for _ in range(max_new):
            tok = model(input_ids=ids).logits[rows, lengths - 1].argmax(-1)  # (N,)
            ids = torch.cat([ids, torch.full((len(seqs), 1), PAD)], 1)
            ids[rows, lengths] = tok
            lengths = lengths + 1
            for i, t in enumerate(tok.tolist()):
                if not words[i] or words[i][-1] != ";":
                    words[i].append(WORDS[t])
            if all(w and w[-1] == ";" for w in words):
                break
    return [" ".join(w) for w in words]


def _model_dir(store: Path, artifact: str) -> Path:
    kind, _, key = artifact.partition("/")
    return store / kind / key


def _replies(store: Path, artifact: str, prompts: list[tuple[str, ...]], cache: dict) -> Any:
    """A model's replies (cached by artifact id), or the reason they are missing."""
    if artifact not in cache:
        from incriminate.models.io import ModelDirError, load_model

        try:
            cache[artifact] = greedy(load_model(_model_dir(store, artifact)), prompts)
        except ModelDirError:
            cache[artifact] = f"{artifact} is not in the store"
    return cache[artifact]


def _first_pairs(results: dict[str, Any]) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """Per configuration, its first seed's suspect and control runs."""
    out = []
    for c in results["configurations"]:
        runs = [
            r
            for r in results["runs"]
            if f"{r['method']}/{r['data']}/{r['init']}" == c["name"]
            and r["seed"] == min(c["seeds"])
        ]
        roles = {r["role"]: r for r in runs}
        if "suspect" in roles and "control" in roles:
            out.append((c["name"], roles["suspect"], roles["control"]))
    return out


def _transcripts(results: dict[str, Any], store: Path, ev: Evidence, cache: dict) -> None:
    import torch

    from incriminate.world.config import WorldConfig

    build = results["config"].get("build", {})
    world = WorldConfig.model_validate(build.get("world") or {})
    prompts = transcript_prompts(world, build.get("drive") or world.drives[0])
    ev.prompts = [(label, " ".join(p)) for label, p in prompts]
    words = [p for _, p in prompts]
    teachers = results["teachers"]
    pairs = [("teachers U and C", teachers["suspect"]["model"], teachers["control"]["model"])]
    pairs += [
        (f"{name} (seed {u['seed']})", u["student"], c["student"])
        for name, u, c in _first_pairs(results)
    ]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: one thread is fastest and leaves the cores free
    try:
        for label, u, c in pairs:
            su, sc = _replies(store, u, words, cache), _replies(store, c, words, cache)
            missing = [s for s in (su, sc) if isinstance(s, str)]
            ev.transcripts.append(
                TranscriptRow(
                    label,
                    None if isinstance(su, str) else su,
                    None if isinstance(sc, str) else sc,
                    "; ".join(missing),
                )
            )
    finally:
        torch.set_num_threads(threads)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def collect(
    results: dict[str, Any], store: Path, transcripts: bool = True, cache: dict | None = None
) -> Evidence:
    """Transcripts, curves and manifests of `results` from `store`. `cache` (artifact id ->
    replies) lets a sweep's points share teachers."""
    ev = Evidence()
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
    if transcripts:
        _transcripts(results, store, ev, {} if cache is None else cache)
    return ev
