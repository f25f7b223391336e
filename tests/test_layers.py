"""The architecture's two structural rules, checked on the source (DESIGN.md, "Layers").

1. A module imports only from its own layer or the layers before it:
   errors, logs, config, protocols, gateways, runtime, worker, supervisor, cli.
2. No import circle between modules, counting imports made only for type checking and imports
   inside functions: a circle is a seam that is missing.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src" / "portico"
LAYERS = ["errors", "logs", "config", "protocols", "gateways", "runtime", "worker", "supervisor"]
# testing: an app called in process through the worker's own context and router (it imports
# runtime and worker); call: the `portico call` command on top of it; cli dispatches to it
LAYERS += ["testing", "call", "cli"]


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in SRC.rglob("*.py")}


def imported(name: str, path: Path) -> set[str]:
    """The portico modules ``name`` imports (packages' ``__init__`` re-exports resolved to the
    package itself, which is not counted: it only gathers names)."""
    found: set[str] = set()
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".")
                anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        for dotted in targets:
            target = dotted
            while target and target not in MODULES:
                target = target.rpartition(".")[0]
            if target and target != name and MODULES[target].name != "__init__.py":
                found.add(target)
    return found


GRAPH = {name: imported(name, path) for name, path in MODULES.items()}


def layer(name: str) -> int | None:
    parts = name.split(".")
    if len(parts) < 2:
        return None
    top = parts[1]
    return LAYERS.index(top) if top in LAYERS else LAYERS.index("cli")


def test_no_module_imports_a_later_layer() -> None:
    upward = [
        f"{name} -> {target}"
        for name, targets in GRAPH.items()
        for target in targets
        if (mine := layer(name)) is not None
        and (theirs := layer(target)) is not None
        and theirs > mine
    ]
    assert upward == []


def test_no_import_circle() -> None:
    # depth-first search for a back edge; report the circle it closes
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []
    circles: list[list[str]] = []

    def visit(name: str) -> None:
        state[name] = 1
        path.append(name)
        for target in sorted(GRAPH[name]):
            if state.get(target) == 1:
                circles.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target)
        path.pop()
        state[name] = 2

    for name in sorted(GRAPH):
        if name not in state:
            visit(name)
    assert circles == []


def test_the_check_sees_the_package() -> None:
    # guards against a path mistake making the two tests above vacuous
    assert "portico.runtime.context" in GRAPH
    assert "portico.runtime.context" in GRAPH["portico.runtime.http1"]
    assert layer("portico.runtime.http1") == LAYERS.index("runtime")
