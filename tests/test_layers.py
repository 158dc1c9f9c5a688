"""The package's floors: each imports only from the floors below it, and no modules import each
other in a cycle. Every import counts, including the lazy ones inside functions."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "incriminate"
FLOORS = [
    ["errors"],
    ["registry"],
    ["store"],
    ["world", "prompts"],
    ["models"],
    ["audit"],
    ["organisms"],
    ["distill"],
    ["verdict"],
    ["plan"],
    ["report", "repro", "evals"],
    ["api"],
    ["cli"],
]
"""Bottom to top. Packages on one floor may not import each other."""
FLOOR = {name: i for i, names in enumerate(FLOORS) for name in names}


def _module(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every `incriminate.*` module the file imports (`from pkg import mod` counts `pkg.mod`
    when that is a module)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("incriminate")}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("incriminate"):
            assert node.module is not None
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                as_file = SRC.parent / Path(*sub.split("."))
                is_module = as_file.with_suffix(".py").exists() or as_file.is_dir()
                out.add(sub if is_module else node.module)
    return out


def _graph() -> dict[str, set[str]]:
    return {_module(p): _imports(p) for p in SRC.rglob("*.py")}


def _floor(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def test_every_package_has_a_floor():
    top = {p.stem for p in SRC.iterdir() if p.suffix == ".py" or p.is_dir()}
    top -= {"__init__", "__pycache__"}
    assert top <= set(FLOOR), f"packages without a floor: {sorted(top - set(FLOOR))}"


def test_no_import_runs_up_a_floor_or_across_one():
    bad = []
    for module, imports in _graph().items():
        mine = _floor(module)
        for imp in imports:
            theirs = _floor(imp)
            if mine is None or theirs is None or theirs == mine:
                continue
            if FLOOR[theirs] >= FLOOR[mine]:
                bad.append(f"{module} imports {imp}")
    assert not bad, "imports that run up or across a floor:\n" + "\n".join(sorted(bad))


def test_no_module_cycle():
    graph = _graph()
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph.get(m, ())):
            if n not in graph:
                continue
            if state.get(n) == 1:
                cycles.append(" -> ".join([*stack[stack.index(n) :], n]))
            elif n not in state:
                visit(n)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_the_check_sees_a_violation(tmp_path):
    """The checker itself: an upward import in a file is found."""
    f = tmp_path / "x.py"
    f.write_text("def f():\n    from incriminate.plan import graph\n")
    assert _imports(f) == {"incriminate.plan.graph"}
