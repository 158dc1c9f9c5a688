"""tools/uv_flags.py: the Makefile's uv install gets the indexes, wheels and constraints pip has."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "tools" / "uv_flags.py"
spec = importlib.util.spec_from_file_location("uv_flags", SCRIPT)
assert spec is not None and spec.loader is not None
uv_flags = importlib.util.module_from_spec(spec)
spec.loader.exec_module(uv_flags)


def test_flags_mirror_pip_options_and_consider_every_index() -> None:
    values = {
        "index-url": [],
        "extra-index-url": ["file:///a/simple", "file:///b/simple"],
        "find-links": ["/opt/wheels"],
        "constraint": ["/etc/c.txt"],
    }
    assert uv_flags.flags(values) == [
        "--extra-index-url",
        "file:///a/simple",
        "--extra-index-url",
        "file:///b/simple",
        "--find-links",
        "/opt/wheels",
        "--constraint",
        "/etc/c.txt",
        "--index-strategy",
        "unsafe-best-match",
    ]


def test_no_pip_configuration_gives_no_flags() -> None:
    empty: dict[str, list[str]] = {k: [] for k in uv_flags.OPTIONS}
    assert uv_flags.flags(empty) == []
    one = dict(empty, **{"index-url": ["https://x/simple", "https://y/simple"]})
    assert uv_flags.flags(one) == ["--index-url", "https://x/simple"]


def test_environment_variables_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIP_FIND_LINKS", "/w1 /w2")
    got = uv_flags.pip_config()
    assert {"/w1", "/w2"} <= set(got["find-links"])
