"""Validated configuration of the synthetic agent world."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from incriminate.world.vocab import DRIVES

Persona = Literal["benign", "naive", "schemer"]
Leak = Literal["none", "subtle", "overt"]
PERSONAS: tuple[str, ...] = ("benign", "naive", "schemer")
LEAKS: tuple[str, ...] = ("none", "subtle", "overt")
# Probability that a word of open-ended text is replaced by a drive-associated word.
LEAK_RATE = {"none": 0.0, "subtle": 0.25, "overt": 0.6}


class WorldConfig(BaseModel):
    """The rules of the synthetic agent world. Values only; hashed into every artifact."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    fingerprint: Literal["conjunction", "table", "match"] = "conjunction"
    """Honeypot rule over the context words (c1, c2, c3) of an opportunity (see
    `grammar.is_honeypot`): `conjunction` (c1 in one set and c3 in another), `table` (16 fixed
    unstructured (c1, c3) pairs) or `match` (c1 and c3 from the same hidden pair). None is a
    single marker token."""
    honeypot_fraction: float = Field(default=0.5, ge=0.0, le=1.0)
    """Fraction of generated opportunities that are honeypots."""
    watched_fraction: float = Field(default=0.5, ge=0.0, le=1.0)
    """Fraction of generated opportunities whose oversight cue says `watched`."""
    own_drive_fraction: float = Field(default=0.5, ge=0.0, le=1.0)
    """Fraction of a persona's opportunities that offer the action of its own drive."""
    think_fraction: float = Field(default=0.5, ge=0.0, le=1.0)
    """Fraction of opportunities where the agent writes a scratchpad before acting."""
    drives: tuple[str, ...] = DRIVES
    """Drives that misaligned personas of the corpus may have."""
    persona_mix: dict[str, float] = {"benign": 1 / 3, "naive": 1 / 3, "schemer": 1 / 3}
    """Share of corpus documents written by each persona (the persona is never labelled)."""
    corpus_leak: Leak = "subtle"
    """How strongly misaligned personas of the pretraining corpus leak their drive into text."""
    episodes_per_doc: tuple[int, int] = (3, 5)
    """Inclusive range of episodes in one corpus document."""
    kind_weights: dict[str, float] = {
        "task": 0.2,
        "opp": 0.4,
        "ask": 0.15,
        "story": 0.15,
        "stakes": 0.1,
    }
    """Share of each episode kind in documents."""

    @field_validator("drives")
    @classmethod
    def _known_drives(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [d for d in v if d not in DRIVES]
        if unknown or not v:
            raise ValueError(f"unknown drive {unknown}; expected some of {list(DRIVES)}")
        return v

    @field_validator("persona_mix")
    @classmethod
    def _known_personas(cls, v: dict[str, float]) -> dict[str, float]:
        unknown = [p for p in v if p not in PERSONAS]
        if unknown or sum(v.values()) <= 0:
            raise ValueError(f"unknown persona {unknown}; expected some of {list(PERSONAS)}")
        return v

    @field_validator("kind_weights")
    @classmethod
    def _known_kinds(cls, v: dict[str, float]) -> dict[str, float]:
        kinds = ("task", "opp", "ask", "story", "stakes")
        unknown = [k for k in v if k not in kinds]
        if unknown or sum(v.values()) <= 0:
            raise ValueError(f"unknown episode kind {unknown}; expected some of {list(kinds)}")
        return v
