"""Fixtures of the text backend's tests: tiny model directories built once per session."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from lm_tiny import save_tiny

# Converted and assembled weights go to a folder of this session, not the user's cache (set
# before any test module builds the environment of its subprocesses).
os.environ.setdefault("INCRIMINATE_CACHE", tempfile.mkdtemp(prefix="incriminate-cache-"))


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny(tmp_path_factory.mktemp("tiny") / "llama", "llama", seed=0)


@pytest.fixture(scope="session")
def tiny_llama_other(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Same architecture and tokenizer as `tiny_llama`, other weights."""
    return save_tiny(tmp_path_factory.mktemp("tiny") / "llama1", "llama", seed=1)


@pytest.fixture(scope="session")
def tiny_qwen2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny(tmp_path_factory.mktemp("tiny") / "qwen2", "qwen2", seed=2)


@pytest.fixture(scope="session")
def tiny_plain(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Llama whose tokenizer has no chat template."""
    return save_tiny(tmp_path_factory.mktemp("tiny") / "plain", "llama", 3, chat_template=False)


@pytest.fixture(scope="session")
def tiny_other_vocab(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Llama with another tokenizer (a smaller BPE vocabulary)."""
    return save_tiny(tmp_path_factory.mktemp("tiny") / "vocab", "llama", 4, vocab_size=280)
