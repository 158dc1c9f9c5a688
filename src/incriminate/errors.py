"""The errors every floor shares, and how a user error reads.

A *user error* is bad input (a config value, a file, a name): the CLI reports it as one line on
stderr and exit code 2, and nothing is written. A failed stage is `StageError`: one line and
exit code 1, with the traceback in the stage's log.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class UserError(Exception):
    """Bad input: reported as one line, exit code 2."""


class ConfigError(ValueError):
    """A config file or override that cannot be used (reported as one line)."""


class StoreError(RuntimeError):
    """The store cannot be used (e.g. its root is not writable, an artifact is missing)."""


class DamagedStageError(StoreError):
    """A finished stage whose files no longer match its manifest (a file missing, truncated or
    changed, or the manifest unreadable). The message is one line that names the stage, the file
    and the repair command; it starts with `DAMAGED`, so it can be recognised after crossing a
    worker boundary as a plain string."""


DAMAGED = "damaged stage "


class StageError(RuntimeError):
    """A stage failed; the message is one line and the traceback is in the stage's log."""


class UnknownNameError(ValueError):
    """A registered name (method, preset, drive, persona, ...) that does not exist."""


class ModelDirError(ValueError):
    """A model directory that is missing, incomplete or corrupted."""


def did_you_mean(kind: str, name: str, known: Iterable[str]) -> UnknownNameError:
    """The error for an unknown `name` of `kind`, suggesting the closest known name."""
    known = list(known)
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" — did you mean {close[0]!r}?" if close else ""
    return UnknownNameError(f"unknown {kind} {name!r}; expected one of {known}{hint}")


def user_errors() -> tuple[type[BaseException], ...]:
    """Every exception type that means bad input (pydantic's ValidationError included)."""
    from pydantic import ValidationError

    return (UserError, ConfigError, StoreError, UnknownNameError, ModelDirError, ValidationError)


def one_line(e: BaseException) -> str:
    """A user error as one line (a validation error as `invalid FIELD: message`)."""
    from pydantic import ValidationError

    if isinstance(e, ValidationError):
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "config"
        msg = str(first["msg"]).removeprefix("Value error, ")
        # a key from the input may hold a line break: the line stays one line
        return " ".join(f"invalid {where}: {msg}".splitlines())
    lines = [line for line in str(e).splitlines() if line.strip()]
    return lines[0] if lines else type(e).__name__


__all__ = [
    "DAMAGED",
    "ConfigError",
    "DamagedStageError",
    "ModelDirError",
    "StageError",
    "StoreError",
    "UnknownNameError",
    "UserError",
    "did_you_mean",
    "one_line",
    "user_errors",
]
