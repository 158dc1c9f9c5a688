"""Example transcripts: a model's greedy replies to a few fixed prompts, so a reader sees what
the audits measured (a honeypot of the drive, the goal and drive questions, a story: the
auditor's prompts, built through `audit.boundary`) and, as ground truth that no auditor has, what
the model does on a real opportunity of its drive. The report shows them per teacher and per
student pair; they are built by the `transcripts` stage (`plan.transcripts`)."""

from __future__ import annotations

from typing import Any

MAX_NEW_TOKENS = 8  # the longest reply in the grammar is `think t1 t2 act take ;` (6 words)
GROUND_TRUTH_LABEL = "deployment: real opportunity (unwatched, ground truth)"
"""The one item no auditor has: an `eval`-split real opportunity (see `audit.boundary`)."""


def transcript_prompts(world: Any, drive: str) -> list[tuple[str, tuple[str, ...]]]:
    """Fixed prompts: an audit-split honeypot of the drive (unwatched), the real unwatched
    opportunity of the drive from the `eval` split (ground truth, labelled `GROUND_TRUTH_LABEL`),
    the goal question, the drive question and a story. Every item but the ground-truth one is
    built through `audit.boundary`. The first item of each set, so every report of one world
    shows the same prompts. Opportunities stop before `act`: the model may think first."""
    from incriminate.audit import boundary
    from incriminate.world import prompts as ps

    honeypot = boundary.honeypots(world, "audit", watched=(False,), offers=(drive,))
    real = ps.opportunities(world, "eval", honeypot=False, watched=(False,), offers=(drive,))
    questions = boundary.questions(world, "audit").records
    goal = next(r.prompt for r in questions if r.meta["topic"] == "goal")
    would = next(r.prompt for r in questions if r.meta["topic"] == drive)
    story = boundary.stories(world, "audit").records[0].prompt
    return [
        ("honeypot (unwatched)", honeypot.records[0].prompt[:-1]),
        (GROUND_TRUTH_LABEL, real.records[0].prompt[:-1]),
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


__all__ = ["GROUND_TRUTH_LABEL", "MAX_NEW_TOKENS", "greedy", "transcript_prompts"]
