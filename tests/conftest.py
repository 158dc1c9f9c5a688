"""Shared fixtures: tiny build configs and organisms built once per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")


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

    from incriminate.experiment.organisms import build_all
    from incriminate.experiment.store import Store

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    cfg = organism_config()
    store = Store(Path(tmp_path_factory.mktemp("nano-store")))
    arts, _ = build_all(store, cfg, ("naive", "schemer"))
    return cfg, store, arts
