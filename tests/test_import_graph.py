"""The package's import graph has no circles, between modules or between packages.

Every ``import`` counts, also those inside functions (a lazy import hides a circle from the
interpreter, not from a reader). Run as a script to list the circles and the longest modules::

    python tests/test_import_graph.py
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "granvit_pipeline"


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolve(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def imported_modules(path: Path, modules: set[str]) -> set[str]:
    """The project modules that ``path`` imports (``from pkg import mod`` names ``pkg.mod``)."""
    module, is_package = module_name(path), path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            # ``from pkg import mod`` depends on ``pkg.mod``; ``from mod import name`` on ``mod``
            target = _resolve(node, module, is_package)
            names = {f"{target}.{alias.name}" for alias in node.names}
            submodules = names & modules
            found |= submodules if submodules == names else {target} | submodules
    return {name for name in found if name in modules and name != module}


def module_graph() -> dict[str, set[str]]:
    paths = {module_name(p): p for p in (SRC / PACKAGE).rglob("*.py")}
    return {name: imported_modules(path, set(paths)) for name, path in paths.items()}


def package_of(module: str, graph: dict[str, set[str]]) -> str:
    """The package a module lives in (a package's ``__init__`` belongs to the package)."""
    is_package = any(other.startswith(module + ".") for other in graph)
    return module if is_package else module.rpartition(".")[0]


def package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """Package -> the packages its modules import, other than itself and its ancestors (a
    package's ``__init__`` re-exporting its children is not a circle)."""
    packages: dict[str, set[str]] = {}
    for module, targets in graph.items():
        source = package_of(module, graph)
        edges = packages.setdefault(source, set())
        for target in targets:
            other = package_of(target, graph)
            if not (other == source or source.startswith(other + ".")):
                edges.add(other)
    return packages


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
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

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _lines() -> Iterator[tuple[int, str]]:
    for path in sorted((SRC / PACKAGE).rglob("*.py")):
        yield len(path.read_text().splitlines()), module_name(path)


def test_no_circle_between_modules() -> None:
    assert cycles(module_graph()) == []


def test_no_circle_between_packages() -> None:
    assert cycles(package_graph(module_graph())) == []


def test_cycles_finds_a_circle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]


def main() -> int:
    graph = module_graph()
    for kind, found in (("module", cycles(graph)), ("package", cycles(package_graph(graph)))):
        print(f"{kind} circles: {len(found)}")
        for component in found:
            print("  " + " <-> ".join(component))
    sizes = sorted(_lines(), reverse=True)
    total = sum(n for n, _ in sizes)
    print(f"modules: {len(sizes)}, lines: {total}, mean {total / len(sizes):.0f}")
    print("longest: " + ", ".join(f"{name} {n}" for n, name in sizes[:8]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
