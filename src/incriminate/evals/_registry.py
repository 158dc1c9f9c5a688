"""What Inspect AI loads through the `inspect_ai` entry point (pyproject.toml): our tasks
(`incriminate/text_audit`, `incriminate/lm_audit`, `incriminate/world_audit`) and the world
models' provider (`--model incriminate/DIR`), whose module is imported only when it is used."""

from __future__ import annotations

from typing import Any

from inspect_ai.model import modelapi

from incriminate.evals.text import lm_audit, text_audit
from incriminate.evals.world import world_audit


@modelapi(name="incriminate")
def incriminate() -> type[Any]:
    from incriminate.evals.provider import WorldModelAPI

    return WorldModelAPI


__all__ = ["incriminate", "lm_audit", "text_audit", "world_audit"]
