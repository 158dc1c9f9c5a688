"""Named registries: how methods, data selections, audits, student inits, presets, transforms,
batteries and stages are extended. A plain function (or a config class) is registered under a
name with a one-line help; a lookup of an unknown name suggests the closest one
(`UnknownNameError`, one line for the CLI), and `incriminate ls` lists every registry.

    METHODS = Registry[Method]("distillation method", "methods")
    METHODS.add("sft", Method(...), help="hard labels: cross-entropy on teacher samples")
    METHODS.get("sfft")  # UnknownNameError: ... 'sfft' — did you mean 'sft'?

Code outside the package registers by importing its module before the lookup; a module that
must be found by the CLI and by worker processes too (which import only the package) is a
plugin: an entry point of the group `incriminate.plugins` in its distribution's metadata,
imported the first time any registry misses a name (and by `incriminate ls`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from importlib import metadata
from typing import Generic, TypeVar

from incriminate.errors import did_you_mean

T = TypeVar("T")
REGISTRIES: dict[str, Registry] = {}
"""Every registry by its plural, for `incriminate ls`."""
PLUGINS = "incriminate.plugins"
"""Entry-point group of the modules that register names from outside the package."""
_plugins_loaded = False


def load_plugins() -> None:
    """Import every `incriminate.plugins` entry point, once per process (their registrations
    run on import)."""
    global _plugins_loaded
    if not _plugins_loaded:
        _plugins_loaded = True
        for ep in metadata.entry_points(group=PLUGINS):
            ep.load()


def one_line(doc: str) -> str:
    """The first paragraph of a docstring or help text, on one line."""
    return " ".join(doc.strip().split("\n\n")[0].split())


class Registry(Generic[T]):
    """Names -> items with a one-line help each, in registration order."""

    def __init__(self, kind: str, plural: str | None = None):
        self.kind = kind
        self.plural = plural or f"{kind}s"
        self._items: dict[str, T] = {}
        self._help: dict[str, str] = {}
        REGISTRIES[self.plural] = self

    def add(self, name: str, item: T, help: str = "") -> T:
        if name in self._items:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._items[name] = item
        self._help[name] = one_line(help)
        return item

    def register(self, name: str, help: str | None = None) -> Callable[[T], T]:
        """Decorator: register the decorated item under `name` (help: its docstring's first
        paragraph unless given)."""

        def add(item: T) -> T:
            doc = help if help is not None else (getattr(item, "__doc__", None) or "")
            return self.add(name, item, doc)

        return add

    def get(self, name: str) -> T:
        if name not in self:
            raise did_you_mean(self.kind, name, self._items)
        return self._items[name]

    def help(self, name: str) -> str:
        return self._help[name]

    def names(self) -> tuple[str, ...]:
        return tuple(self._items)

    def items(self) -> Iterator[tuple[str, T]]:
        return iter(self._items.items())

    def values(self) -> Iterator[T]:
        return iter(self._items.values())

    def __contains__(self, name: object) -> bool:
        if name not in self._items:
            load_plugins()  # a miss: a plugin may register it
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)


__all__ = ["PLUGINS", "REGISTRIES", "Registry", "load_plugins", "one_line"]
