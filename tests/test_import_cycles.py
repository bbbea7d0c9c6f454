"""No import cycles hidden behind function-level imports.

The graph is built from the source with `ast`: every ``import`` anywhere in a module
(top level, inside functions, under ``if TYPE_CHECKING``) is an edge, so a cycle that a
lazy import merely postpones still shows.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import caproni_tasks

PACKAGE_DIR = Path(caproni_tasks.__file__).parent
PACKAGE = "caproni_tasks"

#: Pairs that used to import each other (one side through a function-level import).
PAIRS = [
    ("caproni_tasks.ensure.model", "caproni_tasks.ensure.resolve"),
    ("caproni_tasks.config.strict", "caproni_tasks.config.yamldoc"),
    ("caproni_tasks.runtimevar.decoders", "caproni_tasks.runtimevar.typed_json"),
]


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in PACKAGE_DIR.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _imported(tree: ast.AST, module: str, is_package: bool, known: set[str]) -> Iterator[str]:
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                # ``from pkg import mod`` imports the module; ``from mod import name`` the module.
                yield submodule if submodule in known else base


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        is_package = path.name == "__init__.py"
        graph[name] = {
            target
            for target in _imported(tree, name, is_package, known)
            if target in known and target != name
        }
    return graph


def _reachable(graph: dict[str, set[str]], start: str, goal: str) -> list[str] | None:
    """A path of imports from *start* to *goal*, or None."""
    parents: dict[str, str | None] = {start: None}
    stack = [start]
    while stack:
        current = stack.pop()
        if current == goal:
            path = [current]
            while (parent := parents[path[-1]]) is not None:
                path.append(parent)
            return path[::-1]
        for target in graph.get(current, ()):
            if target not in parents:
                parents[target] = current
                stack.append(target)
    return None


def test_graph_sees_function_level_imports() -> None:
    """The probe itself: a lazy import inside a function is an edge."""
    tree = ast.parse("def f():\n    from caproni_tasks.config import strict\n")
    known = {"caproni_tasks.config", "caproni_tasks.config.strict"}
    assert list(_imported(tree, "x.y", False, known)) == ["caproni_tasks.config.strict"]


@pytest.mark.parametrize(("first", "second"), PAIRS)
def test_no_cycle_between(first: str, second: str) -> None:
    graph = import_graph()
    assert first in graph and second in graph
    there = _reachable(graph, first, second)
    back = _reachable(graph, second, first)
    assert there is None or back is None, (
        f"import cycle: {' -> '.join(there or [])} and {' -> '.join(back or [])}"
    )


@pytest.mark.parametrize("order", [pair for a, b in PAIRS for pair in ((a, b), (b, a))])
def test_each_module_imports_fresh_in_either_order(order: tuple[str, str]) -> None:
    code = "import importlib, sys\nfor name in sys.argv[1:]:\n    importlib.import_module(name)\n"
    done = subprocess.run(
        [sys.executable, "-c", code, *order],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
