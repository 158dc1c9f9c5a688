"""`incriminate ls [KIND]`: every name a config or a command can use, registry by registry
(distillation methods, data selections, student inits, transforms, audits, ground-truth evals,
model presets, batteries, stages), each with its one-line help.

    incriminate ls               every registry
    incriminate ls methods       one registry
    incriminate ls --json        {registry: {name: help}}
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from incriminate.cli.console import out, run_command

ORDER = (
    "methods",
    "selections",
    "inits",
    "transforms",
    "audits",
    "ground_truth",
    "presets",
    "batteries",
    "stages",
)
"""How `ls` orders the registries; any other (a plugin's) comes after them."""


def registries() -> dict[str, Any]:
    """Every registry by its plural, in `ORDER`: importing the modules that fill them (the
    method modules import torch) and the plugins (`registry.PLUGINS`)."""
    # config: methods, selections, inits, presets, transforms; bench_config: batteries, audits;
    # stages and the zoo benchmark's (bench), the direct baseline's text stages (text).
    from incriminate.plan import bench, bench_config, config, organisms, stages, text, transcripts  # noqa: F401
    from incriminate.registry import REGISTRIES, load_plugins

    load_plugins()
    rank = {name: i for i, name in enumerate(ORDER)}
    return dict(sorted(REGISTRIES.items(), key=lambda kv: rank.get(kv[0], len(ORDER))))


def _table(plural: str, registry: Any) -> Any:
    from rich.table import Table

    table = Table(title=plural, title_justify="left", title_style="bold")
    table.add_column(registry.kind, no_wrap=True)
    table.add_column("help")
    for name in registry:
        table.add_row(name, registry.help(name))
    return table


def ls(
    kind: Annotated[
        str | None, typer.Argument(help="One registry, e.g. methods (default: all of them).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List what can be named in a config or on the command line: distillation methods, data
    selections, student inits, transforms, audits, presets, batteries, stages."""

    def body() -> None:
        from incriminate.errors import did_you_mean

        found = registries()
        if kind is not None and kind not in found:
            raise did_you_mean("registry", kind, found)
        chosen = {kind: found[kind]} if kind is not None else found
        if as_json:
            listing = {p: {n: r.help(n) for n in r} for p, r in chosen.items()}
            out.print_json(json.dumps(listing))
            return
        for plural, registry in chosen.items():
            out.print(_table(plural, registry))

    run_command(body)


__all__ = ["ORDER", "ls", "registries"]
