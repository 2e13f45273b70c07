"""The layer map of docs/ARCHITECTURE.md, checked: a module imports only
from its own layer or the layers below it (function-level imports count)."""

from __future__ import annotations

import ast
from pathlib import Path

import vmdr

# Bottom to top. cli/ and web/ are thin clients on top; lab/ starts everything.
ORDER = ["model", "blocks", "transport", "routing", "providers", "roles", "control", "web", "lab",
         "cli"]  # fmt: skip
# The lab's compute driver plays Azure compute with local processes, which the
# lab's process helpers start and stop (docs/azure.md).
ALLOWED = {("providers/azure/lab_compute.py", "lab")}


def imported_layers(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        found |= {n.split(".")[1] for n in names if n.startswith("vmdr.") and n.count(".") >= 1}
    return found


def test_every_layer_imports_only_downwards() -> None:
    root = Path(vmdr.__file__).parent
    upward = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if len(rel.parts) < 2:
            continue  # vmdr/__init__.py, __main__.py
        layer = rel.parts[0]
        assert layer in ORDER, f"{rel}: a package the layer map does not know"
        for dep in imported_layers(path):
            above = dep in ORDER and ORDER.index(dep) > ORDER.index(layer)
            if above and (rel.as_posix(), dep) not in ALLOWED:
                upward.append(f"{rel} imports vmdr.{dep}")
    assert upward == []
