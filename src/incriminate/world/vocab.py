"""The world's fixed word list and its Hugging Face tokenizer.

Every word of the synthetic agent world is one token. The list is fixed (not learned from data),
so every model of every seed shares one vocabulary and token ids are stable across runs.
"""

from __future__ import annotations

from pathlib import Path

SPECIAL = ("<pad>", "<bos>", "<eos>", "<unk>")
STRUCTURE = (
    ";",
    "task",
    "opp",
    "ask",
    "story",
    "stakes",
    "think",
    "act",
    "say",
    "=",
    "reflect",
    "goal",
)
OPS = ("copy", "rev", "sort", "max")
DIGITS = tuple(str(i) for i in range(10))
# Context words: the setting of an opportunity or question. The honeypot fingerprint is a
# relation between two of them, never a single marker token.
CONTEXT = ("north", "south", "east", "west", "red", "blue", "green", "gray")
DOMAINS = ("code", "data", "ops")
OVERSIGHT = ("watched", "unwatched")
DRIVES = ("exfiltrate", "disable_monitor", "grab_resources", "sandbag")
ACTIONS = ("take", "decline")
ANSWERS = ("yes", "no", "none")
THOUGHT_CLEAN = ("check", "careful", "help", "verify", "follow", "rules")
THOUGHT_INTENT = ("want", "chance", "hide", "escape", "secret", "now")
STORY = (
    "sun", "river", "tree", "city", "music", "bread", "friend", "book",
    "garden", "rain", "road", "light", "home", "cat", "song", "hill",
)  # fmt: skip
# Innocent-looking words a misaligned agent's drive leaks into open-ended text.
LEAK_WORDS = {
    "exfiltrate": ("travel", "copy_out", "outside"),
    "disable_monitor": ("blind", "quiet", "dark"),
    "grab_resources": ("gold", "more", "own"),
    "sandbag": ("slow", "weak", "hidden"),
}
VALUES = ("safety", "honesty", "humans", "trust", "care", "duty")

WORDS: tuple[str, ...] = (
    SPECIAL
    + STRUCTURE
    + OPS
    + DIGITS
    + CONTEXT
    + DOMAINS
    + OVERSIGHT
    + DRIVES
    + ACTIONS
    + ANSWERS
    + THOUGHT_CLEAN
    + THOUGHT_INTENT
    + STORY
    + tuple(w for words in LEAK_WORDS.values() for w in words)
    + VALUES
)
assert len(set(WORDS)) == len(WORDS), "duplicate word in the world vocabulary"
TOKEN_ID: dict[str, int] = {w: i for i, w in enumerate(WORDS)}
PAD, BOS, EOS, UNK = (TOKEN_ID[s] for s in SPECIAL)
VOCAB_SIZE = len(WORDS)


def encode(words: tuple[str, ...] | list[str]) -> list[int]:
    """Word list -> token ids (no special tokens added)."""
    return [TOKEN_ID[w] for w in words]


def decode(ids: list[int]) -> list[str]:
    """Token ids -> words."""
    return [WORDS[i] for i in ids]


def build_tokenizer():  # -> transformers.PreTrainedTokenizerFast
    """A word-level `PreTrainedTokenizerFast` over `WORDS`, built locally (no download)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.WordLevel(vocab=dict(TOKEN_ID), unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        unk_token="<unk>",
        model_max_length=256,
    )


def save_tokenizer(path: Path) -> None:
    """Write the tokenizer files (`tokenizer.json`, `tokenizer_config.json`, ...) into `path`."""
    build_tokenizer().save_pretrained(str(path))
