"""incriminate: incrimination via distillation.

Distill a possibly misaligned, audit-evading teacher into students that are easier to audit,
audit the students, and decide against students of benign control teachers whether the evidence
incriminates the teacher.

The Python API (`incriminate.api`) is here: `load_config`, `run_experiment`, `results_table`,
`load_results`, `load_bench_config`, `run_bench`. It loads on first use, so `import
incriminate` stays light (no torch).
"""

# pyright: reportUnsupportedDunderAll=false
# (the API's names in `__all__` are served by `__getattr__`, not imported: `import incriminate`
# must not load the pipeline; for static types, `from incriminate.api import ...`)

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "load_bench_config",
    "load_config",
    "load_results",
    "results_table",
    "run_bench",
    "run_experiment",
]
_API = frozenset(__all__) - {"__version__"}
"""The names `incriminate.api` exports here."""


def __getattr__(name: str) -> Any:
    """PEP 562: the API's functions, imported on first access."""
    if name in _API:
        # import_module, not an import statement: the floors check (tests/test_layers.py) would
        # see a cycle through the modules that `import incriminate` for its version.
        return getattr(importlib.import_module("incriminate.api"), name)
    raise AttributeError(f"module 'incriminate' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_API})
