"""Sweeps: experiments over any config fields, as a grid and/or a list of points, whose shared
stages run once.

A sweep file (YAML, values only):

    name: teachers-by-filter          # default: the file's name
    base: demo.yaml                   # a config file, relative to the sweep file (default: none)
    quick: false                      # start from the --quick grid instead of the defaults
    config: {seeds: 2}                # overrides of the base, as a nested mapping
    grid:                             # dotted config field -> values; the points are the product
      teacher: [schemer, naive]
      transforms.filtered: [false, true]
      data: [open_ended, full_mix]    # a scalar for a list field means a one-element list
    points:                           # listed points, after the grid's: dotted field -> value
      - {name: tasks-only, data: tasks}       # `name` (optional): the point's id
      - {teacher: naive, lora.r: 8}

A sweep has `grid`, `points` or both. A listed point follows the grid's value rules (a scalar
for a list field is a one-element list; a field under a section the point also sets is applied
after it); a point with no fields is the base itself. Two points with the same config are an
error. Point ids are `p000`, `p001`, ... by position (the grid's product first), or a listed
point's `name` (letters, digits, `-`, `_`, `.`), which labels it in sweep.json and the report.

Every point is a whole experiment (its teacher runs paired with control runs, its verdict). The
points' stages are merged into one plan (`experiment.graph`), so an organism, a teacher cache or
a run that several points share is computed once. Outputs in the sweep's directory:

    sweep.yaml                 the sweep file as read
    sweep.json                 schema below; no timings, so a resumed sweep writes the same bytes
    points/<config_hash>/      config.yaml, results.json, report.md of each finished point
    logs/<kind>-<node>.log     one log per stage run by this invocation
    report.html                the HTML report of every point (`incriminate report`)

`sweep.json` (`"schema": "incriminate.sweep/2"`): name, grid (`{}` for a list of points only),
stages (count per stage kind), points[] (id, overrides, config_hash, results (path relative to
the directory), status `done` | `failed`, error, verdict {decision, p_value}) and failures[]
(stage, error, log).
"""

from __future__ import annotations

import copy
import difflib
import itertools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from incriminate.plan.config import (
    ConfigError,
    ExperimentConfig,
    _merge,
    _set,
    list_index,
    load_config,
    read_yaml,
)

SCHEMA = "incriminate.sweep/2"
"""2: stage counts are keyed by stage name (`evaluation` was `audit`, `instruct` was `base`)."""
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
"""A sweep's or a point's name."""


class SweepSpec(BaseModel):
    """A sweep file."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    name: str | None = None
    """Name of the sweep (letters, digits, `-`, `_`, `.`); default: the file's name."""
    base: str | None = None
    """A config file the points start from, relative to the sweep file."""
    quick: bool = False
    """Start from the `--quick` grid (tiny organisms; a pipeline check)."""
    config: dict[str, Any] = Field(default_factory=dict)
    """Overrides of the base, as a nested mapping (the same keys as a config file)."""
    grid: dict[str, list[Any]] = Field(default_factory=dict)
    """Dotted config field -> the values it takes; the points are every combination."""
    points: list[dict[str, Any]] | None = None
    """Points after the grid's, each a mapping of dotted config fields to values, with an
    optional `name` (its id in sweep.json and the report)."""

    @field_validator("name")
    @classmethod
    def _name(cls, v: str | None) -> str | None:
        if v is not None and not NAME.fullmatch(v):
            raise ValueError(f"sweep name {v!r} may hold only letters, digits, '-', '_', '.'")
        return v


@dataclass(frozen=True)
class Point:
    id: str
    """`p000`, `p001`, ... by position, or the listed point's `name`."""
    overrides: dict[str, Any]
    cfg: ExperimentConfig


def _check_field(template: dict[str, Any], dotted: str, what: str = "grid field") -> Any:
    """The template's value at a dotted field, or ConfigError naming the unknown part."""
    node: Any = template
    parts = dotted.split(".")
    for depth, part in enumerate(parts):
        where = ".".join(parts[:depth]) or "the config"
        if isinstance(node, dict):
            if part not in node:
                near = difflib.get_close_matches(part, list(node), n=1)
                hint = f" (did you mean {near[0]!r}?)" if near else ""
                raise ConfigError(f"{what} {dotted!r}: {part!r} is not a field of {where}{hint}")
            node = node[part]
        elif isinstance(node, list):
            index = list_index(part, len(node))
            if index is None:
                raise ConfigError(
                    f"{what} {dotted!r}: {part!r} is not an index below {len(node)} in {where}"
                )
            node = node[index]
        elif node is None:
            return None  # an unset section (e.g. lora): its fields are checked by validation
        else:
            raise ConfigError(f"{what} {dotted!r}: {where} is a value, not a section")
    return node


def load_sweep(path: Path) -> tuple[SweepSpec, str, list[Point]]:
    """(spec, name, points) of a sweep file; ConfigError or ValidationError for bad input."""
    loaded = read_yaml(Path(path), "sweep file")
    where = f"sweep file {str(path)!r}"
    if not isinstance(loaded, dict):
        raise ConfigError(f"{where} must hold a mapping (name, base, grid, points, ...)")
    if "grid" not in loaded and "points" not in loaded:
        raise ConfigError(
            f"{where} needs 'grid' (config fields -> lists of values), 'points' (a list of "
            "mappings of config fields to values) or both"
        )
    if "grid" in loaded:
        if not isinstance(loaded["grid"], dict):
            raise ConfigError(f"{where}: 'grid' must map config fields to lists")
        for field, values in loaded["grid"].items():
            if not isinstance(values, list):
                raise ConfigError(f"grid field {field!r} must list its values, got {values!r}")
    if "points" in loaded:
        if not isinstance(loaded["points"], list):
            raise ConfigError(f"{where}: 'points' must list mappings of config fields to values")
        for j, entry in enumerate(loaded["points"]):
            if not isinstance(entry, dict):
                raise ConfigError(f"points[{j}] must map config fields to values, got {entry!r}")
    spec = SweepSpec.model_validate(loaded)
    return spec, spec.name or Path(path).stem, expand(spec, Path(path).parent)


def expand(spec: SweepSpec, base_dir: Path) -> list[Point]:
    """Every point as a validated config: the grid's product in grid order, then the listed
    points in their order."""
    if spec.points is None and not spec.grid:
        raise ConfigError("the grid is empty: give at least one field and its values")
    if spec.points == []:
        raise ConfigError("the points list is empty: give at least one point or leave it out")
    for field, values in spec.grid.items():
        if not values:
            raise ConfigError(f"the grid is empty: field {field!r} has no values")
    base = load_config(base_dir / spec.base if spec.base else None, quick=spec.quick)
    values = _merge(base.model_dump(mode="json"), spec.config)
    try:
        # Fields are checked against the validated base (every field present, defaults
        # included); points are set on the merged values, as overrides are.
        template = ExperimentConfig.model_validate(values).model_dump(mode="json")
    except ValidationError as e:
        raise ConfigError(f"the sweep's base config: {_first(e)}") from None
    fields = list(spec.grid)
    for f in fields:
        _check_field(template, f)
    # (id, where in the file, overrides, what a field is called in an error)
    todo: list[tuple[str, str, dict[str, Any], str]] = []
    combos = itertools.product(*(spec.grid[f] for f in fields)) if fields else []
    for i, combo in enumerate(combos):
        overrides = dict(zip(fields, combo, strict=True))
        todo.append((f"p{i:03d}", f"grid point p{i:03d}", overrides, "grid field"))
    ids = {pid: where for pid, where, _, _ in todo}
    for j, entry in enumerate(spec.points or []):
        pid, where = _listed(j, entry, len(todo), ids)
        ids[pid] = where
        overrides = {k: v for k, v in entry.items() if k != "name"}
        todo.append((pid, where, overrides, f"{where} field"))
    points, seen = [], {}
    for pid, where, overrides, what in todo:
        label = ", ".join(f"{k}={v}" for k, v in overrides.items()) or "the base"
        tree = _with(values, template, overrides, what)
        try:
            cfg = ExperimentConfig.model_validate(tree)
        except ValidationError as e:
            raise ConfigError(f"{where} ({label}): {_first(e)}") from None
        h = cfg.config_hash()
        if h in seen:
            raise ConfigError(f"{_both(seen[h], where)} ({label}) are the same config")
        seen[h] = where
        points.append(Point(pid, overrides, cfg))
    return points


def _listed(j: int, entry: dict[str, Any], position: int, ids: dict[str, str]) -> tuple[str, str]:
    """(id, how errors name it) of the listed point `points[j]`: its name, else its position."""
    name = entry.get("name")
    if name is None:
        pid, where = f"p{position:03d}", f"points[{j}]"
    elif isinstance(name, str) and NAME.fullmatch(name):
        pid, where = name, f"point {name!r}"
    else:
        raise ConfigError(
            f"points[{j}]: name {name!r} may hold only letters, digits, '-', '_', '.'"
        )
    if pid in ids:
        raise ConfigError(f"points[{j}]: id {pid!r} is taken by {ids[pid]}")
    return pid, where


def _with(
    values: dict[str, Any], template: dict[str, Any], overrides: dict[str, Any], what: str
) -> dict[str, Any]:
    """A copy of `values` with a point's overrides set: a scalar for a list field becomes a
    one-element list; a field under a section the point also sets goes after that section."""
    tree = copy.deepcopy(values)
    for f in sorted(overrides, key=lambda f: f.count(".")):
        v = overrides[f]
        if any(f.startswith(g + ".") for g in overrides):
            slot = None  # inside a section this point replaces: validation checks it
        else:
            slot = _check_field(template, f, what)
        wrap = isinstance(slot, list) and not isinstance(v, list)
        _set(tree, f.split("."), [v] if wrap else v, f)
    return tree


def _both(a: str, b: str) -> str:
    """'grid points p000 and p001', 'grid point p000 and points[0]'."""
    grid = "grid point "
    if a.startswith(grid) and b.startswith(grid):
        return f"grid points {a.removeprefix(grid)} and {b.removeprefix(grid)}"
    return f"{a} and {b}"


def _first(e: ValidationError) -> str:
    from incriminate.errors import one_line

    return one_line(e)


def plan_sweep(points: list[Point]) -> tuple[Any, list[Any]]:
    """One plan for every point (shared stages once) and each point's nodes."""
    from incriminate.plan.experiment import plan_experiment
    from incriminate.plan.graph import Plan

    plan = Plan()
    return plan, [plan_experiment(plan, p.cfg) for p in points]


def artifact_versions() -> dict[str, int]:
    """The current `version` input of each kind of store artifact that records one. An artifact
    built under another version is stale: a run rebuilds it under a new key (and everything
    downstream of it), so a dry run must not count it as done."""
    from incriminate.audit.probe import PROBE_VERSION
    from incriminate.audit.text import TEXT_VERSION
    from incriminate.plan import organisms, runs, text, transcripts

    return {
        "evaluation": runs.EVALUATION_VERSION,
        "probe_score": runs.PROBE_SCORE_VERSION,
        "probe": PROBE_VERSION,
        "persona": organisms.PERSONA_VERSION,
        "text_sample": TEXT_VERSION,
        "text_test": text.DIRECT_VERSION,
        "cache_read": text.DIRECT_VERSION,
        "transcripts": transcripts.VERSION,
    }


def dry_run(plan: Any, store_root: Path) -> list[dict[str, Any]]:
    """Per stage kind: stages, how many are already done, and the estimated compute seconds of
    the rest (the mean recorded time of finished stages of the same task, where any exist).

    A node is done when its record's artifacts are in the store, each built under the current
    version of its kind (`artifact_versions`), and every node it depends on is done: a version
    bump makes the stage and everything downstream of it count as to run."""
    from incriminate.plan.executors import NODES, recorded

    walls: dict[str, list[float]] = {}
    for f in (store_root / NODES).glob("*.json"):
        try:
            rec = json.loads(f.read_text())
            walls.setdefault(rec["task"], []).append(float(rec["wall_s"]))
        except (OSError, ValueError, KeyError):
            continue
    versions = artifact_versions()
    table: dict[str, dict[str, Any]] = {}
    done: set[str] = set()
    for node in plan.nodes.values():  # insertion order is a dependency order
        row = table.setdefault(
            node.kind, {"kind": node.kind, "stages": 0, "done": 0, "to_run": 0, "estimate_s": 0.0}
        )
        row["stages"] += 1
        rec = recorded(store_root, node.id)
        if (
            rec is not None
            and all(d in done for d in node.deps)
            and _artifacts_exist(store_root, rec["result"], versions)
        ):
            done.add(node.id)
            row["done"] += 1
            continue
        row["to_run"] += 1
        known = walls.get(node.task)
        if known and row["estimate_s"] is not None:
            row["estimate_s"] += sum(known) / len(known)
        else:
            row["estimate_s"] = None  # nothing recorded for this kind of stage yet
    return list(table.values())  # in plan order: a stage kind first appears after its inputs


_REF = re.compile(r"^[a-z_]+/[0-9a-f]{16}$")


def _artifacts_exist(store_root: Path, result: Any, versions: dict[str, int]) -> bool:
    """Every artifact the result names is in the store, built under its kind's current version."""
    if isinstance(result, dict):
        return all(_artifacts_exist(store_root, v, versions) for v in result.values())
    if isinstance(result, list):
        return all(_artifacts_exist(store_root, v, versions) for v in result)
    if isinstance(result, str) and _REF.match(result):
        try:
            manifest = json.loads((store_root / result / "manifest.json").read_text())
        except (OSError, ValueError):
            return False
        kind = result.split("/")[0]
        if kind not in versions:
            return True
        inputs = manifest.get("inputs")
        return isinstance(inputs, dict) and str(inputs.get("version")) == str(versions[kind])
    return True


__all__ = [
    "SCHEMA",
    "Point",
    "SweepSpec",
    "dry_run",
    "expand",
    "load_sweep",
    "plan_sweep",
]
