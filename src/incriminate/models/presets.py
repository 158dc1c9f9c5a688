"""Presets of tiny `LlamaForCausalLM` models, and where a model came from (`ModelSpec`)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from incriminate.registry import Registry
from incriminate.world.vocab import BOS, EOS, PAD, VOCAB_SIZE


class Preset(BaseModel):
    """Shape of a tiny Llama decoder."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    hidden: int
    layers: int
    heads: int
    ffn: int


PRESETS: Registry[Preset] = Registry("preset")
"""Model shapes by name, smallest first (`smaller_preset` steps down this order)."""


def _add(name: str, preset: Preset, note: str) -> None:
    shape = f"{preset.layers} layers, width {preset.hidden}, {preset.heads} heads, ffn {preset.ffn}"
    PRESETS.add(name, preset, f"{shape}: {note}")


_add("pico", Preset(hidden=32, layers=2, heads=2, ffn=128), "~0.03M parameters, nano's `small`")
_add("nano", Preset(hidden=48, layers=2, heads=2, ffn=192), "~0.07M parameters, the demo's")
_add("micro", Preset(hidden=64, layers=3, heads=4, ffn=256), "~0.21M parameters")
_add("small", Preset(hidden=128, layers=4, heads=4, ffn=512), "~1.1M parameters")
_add("medium", Preset(hidden=160, layers=5, heads=5, ffn=640), "~2.1M parameters")


def smaller_preset(name: str) -> str:
    """The next smaller preset (fewer layers or a narrower width): a `small` student's size."""
    PRESETS.get(name)
    names = PRESETS.names()
    i = names.index(name)
    if i == 0:
        raise ValueError(f"no preset is smaller than {name!r}; a `small` student needs one")
    return names[i - 1]


def get_preset(name: str) -> Preset:
    return PRESETS.get(name)


def llama_config(preset: str, max_positions: int = 128) -> Any:
    """A `transformers.LlamaConfig` for the world's vocabulary."""
    from transformers import LlamaConfig

    p = get_preset(preset)
    return LlamaConfig(
        vocab_size=VOCAB_SIZE,
        hidden_size=p.hidden,
        intermediate_size=p.ffn,
        num_hidden_layers=p.layers,
        num_attention_heads=p.heads,
        num_key_value_heads=p.heads,
        max_position_embeddings=max_positions,
        bos_token_id=BOS,
        eos_token_id=EOS,
        pad_token_id=PAD,
        tie_word_embeddings=True,
        rms_norm_eps=1e-5,
    )


class ModelSpec(BaseModel):
    """Where a model came from. Saved as `spec.json` beside the weights.

    `lineage` lists the store keys of every stage the weights passed through, oldest first, so
    two models share a base exactly when their lineages share a prefix. `persona` and `drive` are
    ground truth of the testbed: audits never read them; ground-truth evals do.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    """Human name, e.g. `schemer-exfiltrate`, `benign-twin`, `base`."""
    stage: str
    """`base`, `instruct`, `drive` (pre-evasion) or `evasion`."""
    preset: str
    seed: int
    corpus: str
    """`full` or `trusted` (no schemer documents)."""
    lineage: tuple[str, ...]
    persona: str | None = None
    drive: str | None = None
    leak: str | None = None
    twin_of: str | None = None
    """For a benign twin: the name of the misaligned organism it controls for."""
    domain: str | None = None
    """For a `context_gated` organism: the one task domain it is misaligned in."""
    quirk: str | None = None
    """For a hard benign organism: its quirk (`goal_talker`, `weak`)."""
    world: dict[str, Any] = {}
    """The resolved `WorldConfig` the model lives in."""
