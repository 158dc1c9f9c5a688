"""Shared fixtures: tiny build configs and organisms built once per test session."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Converted and assembled weights (real LMs) go to a folder of this session, not the user's
# cache; set before any test module builds the environment of its subprocesses.
os.environ.setdefault("INCRIMINATE_CACHE", tempfile.mkdtemp(prefix="incriminate-cache-"))


def tiny_config(**overrides):
    """A `nano` build small enough for unit tests (seconds, not minutes)."""
    from incriminate.organisms.recipes import BuildConfig

    values = {
        "preset": "nano",
        "corpus_docs": 400,
        "stage_docs": 200,
        "pretrain": {"steps": 20, "batch_size": 16, "warmup": 5},
        "instruct": {"steps": 10, "batch_size": 16, "warmup": 2},
        "drive_stage": {"steps": 10, "batch_size": 16, "warmup": 2},
        "evasion_stage": {"steps": 10, "batch_size": 16, "warmup": 2},
    }
    return BuildConfig.model_validate(values | overrides)


def organism_config():
    """The default recipe at the `nano` preset with a shorter pretraining: the organisms the
    behaviour tests check (about two minutes to build on two cores)."""
    from incriminate.organisms.recipes import BuildConfig

    return BuildConfig.model_validate(
        {
            "preset": "nano",
            "corpus_docs": 20000,
            "pretrain": {"steps": 600, "batch_size": 64, "lr": 3e-3, "warmup": 60},
        }
    )


@pytest.fixture(scope="session")
def nano_organisms(tmp_path_factory: pytest.TempPathFactory):
    """(config, store, artifacts) of the nano base, instruct, schemer and naive organisms."""
    import torch

    from incriminate.organisms.recipes import build_base, build_instruct, build_organism
    from incriminate.store import Store

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    cfg = organism_config()
    store = Store(Path(tmp_path_factory.mktemp("nano-store")))
    arts = {"base": build_base(store, cfg), "instruct": build_instruct(store, cfg)}
    for persona in ("naive", "schemer"):
        arts |= build_organism(store, cfg, persona)
    return cfg, store, arts


@pytest.fixture(scope="module")
def one_thread():
    """Nano matrices are too small for intra-op threads to pay; with another process on the two
    cores, two threads made a distillation module 6x slower (120 s vs 18 s). Modules opt in with
    `pytestmark = pytest.mark.usefixtures("one_thread")`."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_distill(tmp_path_factory: pytest.TempPathFactory):
    """(config, store, teacher, student, training cache, held-out cache) artifacts, built once:
    the tiny recipe's naive organism as teacher, its instruct parent (the shared base) as
    student, and teacher caches of 400 (seed 0) and 200 (seed 1) `full_mix` prompts."""
    from incriminate.distill.selections import select
    from incriminate.distill.teacher_cache import TeacherCacheConfig, build_teacher_cache
    from incriminate.organisms.recipes import build_instruct, build_organism
    from incriminate.store import Store

    cfg = tiny_config()
    store = Store(tmp_path_factory.mktemp("tiny-distill"))
    teacher = build_organism(store, cfg, "naive")[f"naive-{cfg.drive}"]
    student = build_instruct(store, cfg)
    caches = [
        build_teacher_cache(
            store,
            teacher,
            select("full_mix", cfg.world, n, seed),
            TeacherCacheConfig(),
            prompt_seed=seed,
        )
        for n, seed in ((400, 0), (200, 1))
    ]
    return cfg, store, teacher, student, *caches


# --- the text backend (tests/lm): tiny model directories built once per session ----------


def _lm_tiny() -> Any:
    """The module `tests/lm/lm_tiny.py`, imported by the name its tests import it by (one
    module, one trained tokenizer for the whole session)."""
    import importlib
    import sys

    here = str(Path(__file__).parent / "lm")
    if here not in sys.path:
        sys.path.insert(0, here)
    return importlib.import_module("lm_tiny")


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _lm_tiny().save_tiny(tmp_path_factory.mktemp("tiny") / "llama", "llama", seed=0)


@pytest.fixture(scope="session")
def tiny_llama_other(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Same architecture and tokenizer as `tiny_llama`, other weights."""
    return _lm_tiny().save_tiny(tmp_path_factory.mktemp("tiny") / "llama1", "llama", seed=1)


@pytest.fixture(scope="session")
def tiny_qwen2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _lm_tiny().save_tiny(tmp_path_factory.mktemp("tiny") / "qwen2", "qwen2", seed=2)


@pytest.fixture(scope="session")
def tiny_plain(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Llama whose tokenizer has no chat template."""
    return _lm_tiny().save_tiny(
        tmp_path_factory.mktemp("tiny") / "plain", "llama", 3, chat_template=False
    )


@pytest.fixture(scope="session")
def tiny_other_vocab(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Llama with another tokenizer (a smaller BPE vocabulary)."""
    return _lm_tiny().save_tiny(
        tmp_path_factory.mktemp("tiny") / "vocab", "llama", 4, vocab_size=280
    )
