"""The shape of the house: no import cycles, imports pointing inward, heavy modules imported late.

The import graph is read from the source (every ``import`` and ``from ... import`` inside
``convtool/``, at module level or inside functions), so a cycle hidden by a function-local
import is a cycle too. Only optional or slow packages may be imported inside functions.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "convtool"

# Which family may import which (the arrow points inward): a family may always import itself,
# and every family may import the leaf modules errors, padding, choices (the shared choices),
# _system (cpu_count) and stdio
# (the checked stdout writer: images writes `-o -` through it, the CLI installs it; it imports
# only errors).
ALLOWED = {
    "engine": set(),
    "kernels": set(),
    "images": set(),
    "pipeline": {"engine", "kernels"},
    "match": {"engine", "images"},
    "batch": {"pipeline", "images", "engine", "kernels"},
    "teach": {"pipeline", "images", "engine", "kernels"},  # explain and animate's models
    # convtool.dask: one image across a cluster, on top of the batch runner (the CLI uses it)
    "dask": {"batch", "pipeline", "images", "engine", "kernels"},
    "cli": {"batch", "pipeline", "images", "engine", "kernels", "match", "teach", "dask"},
}
# resources: the memory the machine allows and the one refusal above it (imports only errors).
LEAVES = {"errors", "padding", "choices", "_system", "stdio", "resources", "__init__", "__main__"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    """The convtool modules ``path`` imports, resolved to module names."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = (
        module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    )
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("convtool"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if not module.startswith("convtool"):
                continue
            for alias in node.names:  # `from convtool.engine import plan` names a module
                candidate = f"{module}.{alias.name}"
                found.add(candidate if candidate in MODULES else module)
    return {m for m in found if m in MODULES}


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}
GRAPH = {name: imports_of(path) for name, path in MODULES.items()}


def family(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_the_package_has_no_import_cycle():
    """A depth-first search over the graph finds no module that imports itself back."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for child in sorted(GRAPH[node]):
            if child == node or _is_package_of(child, node):
                continue  # a module reaching its own package's __init__ re-exports
            if state.get(child) == 1:
                cycle = path[path.index(child) :] + [child]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if child not in state:
                visit(child)
        path.pop()
        state[node] = 2

    for node in sorted(GRAPH):
        if node not in state:
            visit(node)


def _is_package_of(package: str, module: str) -> bool:
    return MODULES[package].name == "__init__.py" and module.startswith(package + ".")


@pytest.mark.parametrize("module", sorted(m for m in MODULES if family(m) not in LEAVES))
def test_imports_point_inward(module):
    """engine, kernels and images import no other family; the CLI sits on top of all."""
    mine = family(module)
    for target in GRAPH[module]:
        theirs = family(target)
        if theirs in LEAVES or theirs == mine or target == "convtool":
            continue
        assert theirs in ALLOWED.get(mine, set()), f"{module} imports {target}"


def test_leaf_modules_import_nothing_of_the_package():
    leaves = ("errors", "padding", "choices", "_system", "stdio", "resources")
    for leaf in (f"convtool.{name}" for name in leaves):
        assert GRAPH[leaf] <= {"convtool.errors"}, GRAPH[leaf]


def test_version_imports_neither_numpy_nor_pillow():
    """``convtool --version`` stays quick: the CLI imports the library only in commands."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "convtool", "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines()}
    heavy = {"numpy", "PIL", "scipy", "tifffile", "dask"} & imported
    assert done.stdout.startswith("convtool "), done.stdout
    assert "typer" in imported, "the import log was not read"
    assert not heavy, heavy
