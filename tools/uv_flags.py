"""Print `uv pip install` flags that mirror this machine's pip configuration.

uv does not read pip's configuration files or `PIP_*` variables; the Makefile installs with uv
(it resolves and installs in parallel, pip one package at a time) and passes it what pip would
have used: index URL, extra index URLs, find-links and constraint files, from `pip config list`
and the environment. With more than one index, uv is told to consider them all, as pip does.

    uv pip install $(python tools/uv_flags.py) torch==2.13.0 -e ".[dev]"
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys

OPTIONS = {  # pip option -> uv flag
    "index-url": "--index-url",
    "extra-index-url": "--extra-index-url",
    "find-links": "--find-links",
    "constraint": "--constraint",
}


def pip_config() -> dict[str, list[str]]:
    """Values of the options above, from `pip config list` then the `PIP_*` environment."""
    values: dict[str, list[str]] = {k: [] for k in OPTIONS}
    try:
        listing = subprocess.run(
            [sys.executable, "-m", "pip", "config", "list"],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        listing = ""
    for line in listing.splitlines():
        key, _, raw = line.partition("=")
        option = key.split(".", 1)[-1]
        if option in OPTIONS and raw:
            values[option] += raw.strip().strip("'\"").split()
    for option in OPTIONS:
        env = os.environ.get("PIP_" + option.upper().replace("-", "_"), "")
        values[option] += env.split()
    return {k: list(dict.fromkeys(v)) for k, v in values.items()}


def flags(values: dict[str, list[str]]) -> list[str]:
    out: list[str] = []
    for option, flag in OPTIONS.items():
        for v in values[option][:1] if option == "index-url" else values[option]:
            out += [flag, v]
    if values["extra-index-url"]:  # the main index (PyPI unless set) and at least one more
        out += ["--index-strategy", "unsafe-best-match"]
    return out


if __name__ == "__main__":
    print(shlex.join(flags(pip_config())))
