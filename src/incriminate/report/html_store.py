"""What the HTML report reads from the artifact store besides `results.json`: example
transcripts (generated at report time), training curves and the stages' manifests.

Transcripts are greedy replies of the teachers and of one U-student / C-student pair per
configuration to a few fixed audit-split prompts, so the reader sees what the audits measured.
They are generated in a spawned process (`Transcripts`), started before the report's plots are
drawn (and, in `incriminate demo`, before the results are assembled): importing torch and
transformers is most of their cost, and it then overlaps the rest of the work. Anything
missing from the store becomes a note in the report, never an error.
"""

from __future__ import annotations

import json
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Evidence", "TranscriptRow", "Transcripts", "collect", "greedy", "transcript_prompts"]

MAX_NEW_TOKENS = 8  # the longest reply in the grammar is `think t1 t2 act take ;` (6 words)
LOSSES = "losses.json"  # written by `experiment.runs.distill_student`
BACKGROUND = True  # generate transcripts in a spawned process (tests set False to patch `greedy`)
Replies = dict[str, "list[str] | str"]  # artifact id -> replies, or why there are none


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

    curves: dict[str, list[float] | None] = field(default_factory=dict)  # student id -> losses
    manifests: dict[str, dict[str, Any]] = field(default_factory=dict)  # artifact id -> manifest
    notes: list[str] = field(default_factory=list)
    transcripts: Transcripts | None = None


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


def _world_and_drive(results: dict[str, Any]) -> tuple[dict[str, Any], str]:
    build = results["config"].get("build", {})
    world = build.get("world") or {}
    return world, build.get("drive") or "exfiltrate"


def _pairs(results: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(label, suspect model, control model): the teachers, then per configuration (in the
    order of the runs) its first seed's U-student and C-student. Reads only `teachers[*].model`
    and `runs`, so it works on the pipeline's raw records before they are assembled."""
    teachers = results["teachers"]
    pairs = [("teachers U and C", teachers["suspect"]["model"], teachers["control"]["model"])]
    first: dict[str, dict[str, dict[str, Any]]] = {}
    for r in results["runs"]:
        name = f"{r['method']}/{r['data']}/{r['init']}"
        roles = first.setdefault(name, {})
        if r["role"] not in roles or r["seed"] < roles[r["role"]]["seed"]:
            roles[r["role"]] = r
    for name, roles in first.items():
        u, c = roles.get("suspect"), roles.get("control")
        if u is not None and c is not None and u["seed"] == c["seed"]:
            pairs.append((f"{name} (seed {u['seed']})", u["student"], c["student"]))
    return pairs


def generate(store: str, groups: list[tuple[dict[str, Any], str, list[str]]]) -> list[Any]:
    """Per (world, drive, models): the prompts as (label, text) and each model's replies."""
    import torch

    from incriminate.errors import ModelDirError
    from incriminate.models.io import load_model
    from incriminate.world.config import WorldConfig

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: one thread is fastest and leaves the cores free
    out = []
    try:
        for world, drive, models in groups:
            prompts = transcript_prompts(WorldConfig.model_validate(world), drive)
            words = [p for _, p in prompts]
            replies: Replies = {}
            for m in models:
                try:
                    replies[m] = greedy(load_model(_model_dir(Path(store), m)), words)
                except ModelDirError:
                    replies[m] = f"{m} is not in the store"
            out.append(([(label, " ".join(p)) for label, p in prompts], replies))
    finally:
        torch.set_num_threads(threads)
    return out


class Transcripts:
    """The transcripts of one or more results documents (a sweep's points share one job),
    generated in a spawned process from the moment this is made; `rows` waits for them."""

    def __init__(self, docs: list[dict[str, Any]], store: Path):
        self.keys: list[str] = []
        groups: dict[str, tuple[dict[str, Any], str, list[str]]] = {}
        for doc in docs:
            world, drive = _world_and_drive(doc)
            key = json.dumps([world, drive], sort_keys=True)
            self.keys.append(key)
            models = groups.setdefault(key, (world, drive, []))[2]
            models += [m for _, u, c in _pairs(doc) for m in (u, c) if m not in models]
        self.order = list(groups)
        self.error = ""
        self.pool: ProcessPoolExecutor | None = None
        self.future: Future | None = None
        self.value: list[Any] | None = None
        if BACKGROUND:
            import multiprocessing

            self.pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
            self.future = self.pool.submit(generate, str(store), list(groups.values()))
        else:
            self.value = generate(str(store), list(groups.values()))

    def _result(self) -> list[Any]:
        if self.value is None:
            assert self.future is not None
            try:
                self.value = list(self.future.result())
            finally:
                self.close()
        return self.value

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)
            self.pool = None

    def rows(self, doc: dict[str, Any]) -> tuple[list[tuple[str, str]], list[TranscriptRow]]:
        """(prompts, one row per model pair) of `doc`, found by its world and drive; nothing
        when the job failed (`error` says why)."""
        key = json.dumps(list(_world_and_drive(doc)), sort_keys=True)
        try:
            prompts, replies = self._result()[self.order.index(key)]
        except Exception as e:  # a failed job costs the transcripts, not the report
            self.error = f"transcripts could not be generated: {type(e).__name__}: {e}"
            return [], []
        rows = []
        for label, u, c in _pairs(doc):
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
