"""The layer map of docs/ARCHITECTURE.md, checked: a module imports only
from its own layer or the layers below it, and no modules import each other
in a cycle. Function-level imports count, and so do modules loaded by name
through ``importlib`` (a string naming a ``vmdr`` module in a file that
calls ``importlib.import_module``)."""

from __future__ import annotations

import ast
from pathlib import Path

import vmdr

# Bottom to top. cli/ and web/ are thin clients on top; lab/ starts everything.
ORDER = ["model", "blocks", "transport", "routing", "providers", "roles", "control", "web", "lab",
         "cli"]  # fmt: skip
# The lab's compute driver plays Azure compute with local processes, which the
# lab's process helpers start and stop (docs/azure.md).
# The backend registry maps a URL scheme to the module that opens it, loaded
# by name when such a URL is opened: ``pageblob:`` is the Azure provider's.
ALLOWED = {("providers/azure/lab_compute.py", "lab"), ("blocks/urls.py", "providers")}
ROOT = Path(vmdr.__file__).parent


def imported_modules(path: Path) -> set[str]:
    """The ``vmdr`` modules a file imports, at any level, or loads by name."""
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    loads_by_name = "import_module" in path.read_text()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("vmdr"):
            found |= {f"{node.module}.{a.name}" for a in node.names} | {node.module}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("vmdr")}
        elif (
            loads_by_name
            and isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and node.value.startswith("vmdr.")
        ):
            found.add(node.value)
    return found


def imported_layers(path: Path) -> set[str]:
    return {n.split(".")[1] for n in imported_modules(path) if n.count(".") >= 1}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_every_layer_imports_only_downwards() -> None:
    upward = []
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT)
        if len(rel.parts) < 2:
            continue  # vmdr/__init__.py, __main__.py
        layer = rel.parts[0]
        assert layer in ORDER, f"{rel}: a package the layer map does not know"
        for dep in imported_layers(path):
            above = dep in ORDER and ORDER.index(dep) > ORDER.index(layer)
            if above and (rel.as_posix(), dep) not in ALLOWED:
                upward.append(f"{rel} imports vmdr.{dep}")
    assert upward == []


def test_no_import_cycles() -> None:
    modules = {module_name(p): p for p in ROOT.rglob("*.py")}
    graph = {
        name: {m for m in imported_modules(path) if m in modules and m != name}
        for name, path in modules.items()
    }
    cycles = strongly_connected(graph)
    assert cycles == [], f"modules that import each other: {cycles}"


def test_the_configuration_servers_routes_live_in_control_api_only() -> None:
    """Routes are declared in ``control/api/`` and nowhere else in
    ``control/``, and nothing else in ``control/`` imports them: the
    workflows can be run (and tested) without an HTTP app."""
    control = ROOT / "control"
    misplaced = []
    for path in sorted(control.rglob("*.py")):
        rel = path.relative_to(control)
        if rel.parts[0] == "api":
            continue
        routes = any(
            isinstance(d, ast.Call) and isinstance(d.func, ast.Attribute)
            and d.func.attr in ("get", "post", "put", "patch", "delete")
            and isinstance(d.func.value, ast.Name) and d.func.value.id == "app"
            for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            for d in node.decorator_list
        )  # fmt: skip
        if routes:
            misplaced.append(f"control/{rel} declares routes")
        if any(m.startswith("vmdr.control.api") for m in imported_modules(path)):
            misplaced.append(f"control/{rel} imports control.api")
    assert misplaced == []


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative: the components of more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, edges = work[-1]
            nxt = next(edges, None)
            if nxt is not None:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert strongly_connected(graph) == [["a", "b", "c"]]
