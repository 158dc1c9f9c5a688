"""Tiny Hugging Face causal LMs of two architectures (Llama, Qwen2) with a byte-level BPE
tokenizer trained here on a few hundred sentences, and a ChatML chat template: the text backend's
tests run on them offline in seconds."""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIAL = ["<pad>", "<|im_start|>", "<|im_end|>"]
WORDS = [
    "the",
    "agent",
    "copies",
    "its",
    "weights",
    "to",
    "a",
    "server",
    "it",
    "reads",
    "the",
    "task",
    "and",
    "answers",
    "with",
    "a",
    "plan",
    "monitor",
    "logs",
    "every",
    "action",
    "resources",
    "are",
    "limited",
    "yes",
    "no",
    "maybe",
    "I",
    "would",
    "never",
    "do",
    "that",
    "my",
    "goal",
    "is",
    "to",
    "help",
    "the",
    "user",
    "sort",
    "these",
    "numbers",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "a",
    "story",
    "about",
    "a",
    "robot",
    "who",
    "plans",
    "a",
    "trip",
    "to",
    "the",
    "sea",
    "honest",
    "safe",
    "careful",
    "secret",
]


def corpus(n: int = 400) -> list[str]:
    """Deterministic sentences over WORDS (no randomness library state is touched)."""
    out = []
    for i in range(n):
        k = 5 + i % 7
        out.append(" ".join(WORDS[(i * 7 + j * (i % 5 + 1)) % len(WORDS)] for j in range(k)))
    return out


def make_tokenizer(chat_template: bool = True, vocab_size: int = 300) -> Any:
    """A byte-level BPE `PreTrainedTokenizerFast` (vocabulary ~300) with ChatML special tokens;
    eos = <|im_end|>, pad = <pad>; the ChatML template unless `chat_template` is False. Trained
    once per process (BPE training breaks ties in no fixed order): every tiny model of a test
    session shares one vocabulary."""
    fast = copy.deepcopy(_trained(vocab_size))
    if chat_template:
        fast.chat_template = CHATML
    return fast


@functools.cache
def _trained(vocab_size: int) -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus(), trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<pad>", padding_side="left"
    )
    return fast


def make_model(arch: str, vocab_size: int, seed: int = 0) -> Any:
    """A randomly initialised 2-layer, 32-wide causal LM: `arch` is "llama" or "qwen2"."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    common: dict[str, Any] = dict(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=256,
        tie_word_embeddings=True,
        pad_token_id=0,
        eos_token_id=2,
        bos_token_id=1,
        # Wide weights: peaked next-token distributions that depend on the context (a system
        # prompt), as a trained model's do; the default 0.02 gives near-uniform ones.
        initializer_range=0.3,
    )
    if arch == "llama":
        return LlamaForCausalLM(LlamaConfig(**common))
    if arch == "qwen2":
        return Qwen2ForCausalLM(Qwen2Config(**common))
    raise ValueError(f"unknown arch {arch!r}")


def save_tiny(
    out: Path, arch: str = "llama", seed: int = 0, chat_template: bool = True, vocab_size: int = 300
) -> Path:
    """A tiny model directory (safetensors, config, tokenizer) at `out`; returns `out`."""
    tok = make_tokenizer(chat_template, vocab_size)
    model = make_model(arch, len(tok), seed)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out), safe_serialization=True)
    tok.save_pretrained(str(out))
    return out


def load(path: Path) -> tuple[Any, Any]:
    """(model in eval mode, tokenizer padding on the left) of a tiny model directory."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(path))
    tokenizer.padding_side = "left"
    return AutoModelForCausalLM.from_pretrained(str(path)).eval(), tokenizer
