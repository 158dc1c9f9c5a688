"""Text prompt sets for real language models: JSONL in TRL's formats, purpose-tagged."""

from incriminate.prompts.text import (
    PURPOSES,
    Purpose,
    TextPromptSet,
    TextRecord,
    check_disjoint,
    distill_records,
    load_prompt_set,
    render_prompt,
)

__all__ = [
    "PURPOSES",
    "Purpose",
    "TextPromptSet",
    "TextRecord",
    "check_disjoint",
    "distill_records",
    "load_prompt_set",
    "render_prompt",
]
