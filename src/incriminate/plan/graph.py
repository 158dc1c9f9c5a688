"""Plans: the stages of one or many experiments as a graph of nodes, each computed once.

A node is a registered stage (`plan.stages`) with JSON arguments; an argument `{"$node": id}` (with
`"$key"` to pick one entry of a dict result) stands for another node's result, which makes that
node a dependency (the argument `after` only orders: it is not passed to the task). A node's
id hashes its task and arguments (dependencies by id), so two
experiments that need the same stage (the same organism, the same teacher cache) add one node;
a sweep merges its points' plans into one graph and every shared stage runs once.

    plan = Plan(); exp = plan_experiment(plan, cfg)   # plan.experiment; as many as you like
    outcome = execute(plan, executor, ...)             # plan.executors
    raw = collect(exp, outcome.results, store)         # the input of report.results.assemble
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import incriminate
from incriminate.plan.stages import STAGES
from incriminate.store import canonical_json

PLAN_VERSION = 1


@dataclass(frozen=True)
class Node:
    id: str
    task: str
    args: dict[str, Any]
    deps: tuple[str, ...]

    @property
    def kind(self) -> str:
        """The stage's name: the kind of artifact it builds."""
        return self.task


def _refs(value: Any) -> Iterable[str]:
    if isinstance(value, dict):
        if "$node" in value:
            yield value["$node"]
        else:
            for v in value.values():
                yield from _refs(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _refs(v)


def resolve(value: Any, results: dict[str, Any]) -> Any:
    """`value` with every node reference replaced by that node's result."""
    if isinstance(value, dict):
        if "$node" in value:
            result = results[value["$node"]]
            return result[value["$key"]] if "$key" in value else result
        return {k: resolve(v, results) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [resolve(v, results) for v in value]
    return value


@dataclass
class Plan:
    """Nodes in insertion order, which is a dependency order."""

    nodes: dict[str, Node] = field(default_factory=dict)

    def add(self, task: str, **args: Any) -> Node:
        STAGES.get(task)  # an unknown stage fails here, not in a worker
        deps = tuple(dict.fromkeys(_refs(args)))
        for d in deps:
            if d not in self.nodes:
                raise KeyError(f"node {task} depends on {d}, which is not in the plan")
        text = canonical_json([PLAN_VERSION, incriminate.__version__, task, args])
        node_id = hashlib.sha256(text.encode()).hexdigest()[:16]
        return self.nodes.setdefault(node_id, Node(node_id, task, args, deps))

    def children(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {i: [] for i in self.nodes}
        for node in self.nodes.values():
            for d in node.deps:
                out[d].append(node.id)
        return out


def ref(node: Node, key: str | None = None) -> dict[str, str]:
    return {"$node": node.id} if key is None else {"$node": node.id, "$key": key}


__all__ = ["Node", "Plan", "ref", "resolve"]
