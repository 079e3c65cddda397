"""The code's shape: small source files and no import circle.

A module over 500 lines holds more than one job, and two modules that import each other
(even from inside a function, where Python lets the circle pass at run time) cannot be
read or changed one at a time.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
SRC = ROOT / "src"
BENCHMARKS = ROOT / "benchmarks"
MAX_LINES = 500


def _module_name(path: Path, base: Path) -> str:
    parts = list(path.relative_to(base).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules(base: Path) -> dict[str, Path]:
    return {_module_name(p, base): p for p in sorted(base.rglob("*.py"))}


def _runtime_imports(tree: ast.AST):
    """Import nodes, leaving out those under ``if TYPE_CHECKING:`` (never run)."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for child in node.body for n in ast.walk(child))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom) and id(node) not in skip:
            yield node


def _import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Edges from each module to the modules it imports; a name a package re-exports counts
    as an import of the module that defines it, so that ``__init__`` files are not hubs."""
    trees = {name: ast.parse(path.read_text()) for name, path in modules.items()}
    packages = {name for name, path in modules.items() if path.name == "__init__.py"}

    def absolute(name: str, node: ast.ImportFrom) -> str:
        if not node.level:
            return node.module or ""
        base = name.split(".") if name in packages else name.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        return ".".join(base + ([node.module] if node.module else []))

    def defining(module: str, attribute: str, seen: frozenset = frozenset()) -> str:
        if f"{module}.{attribute}" in modules:
            return f"{module}.{attribute}"
        if module not in packages or module in seen:
            return module
        for node in _runtime_imports(trees[module]):
            if isinstance(node, ast.ImportFrom) and any(
                (a.asname or a.name) == attribute for a in node.names
            ):
                source = absolute(module, node)
                if source in modules:
                    original = next(a.name for a in node.names if (a.asname or a.name) == attribute)
                    return defining(source, original, seen | {module})
        return module

    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, tree in trees.items():
        for node in _runtime_imports(tree):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                source = absolute(name, node)
                targets = [defining(source, a.name) for a in node.names]
            graph[name].update(t for t in targets if t in modules and t != name)
    # a package importing its own submodules is how re-exports work, not a circle
    for package in packages:
        graph[package] = {t for t in graph[package] if not t.startswith(package + ".")}
    return graph


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_source_file_is_over_500_lines():
    long = {
        str(p.relative_to(ROOT)): n
        for p in SRC.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert not long, f"split these modules: {long}"


@pytest.mark.parametrize("base", [SRC, BENCHMARKS], ids=["src", "benchmarks"])
def test_no_import_circle(base):
    assert _circles(_import_graph(_modules(base))) == []


def test_the_circle_check_finds_a_circle_through_a_function_level_import(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("from .a import f\n")
    (package / "a.py").write_text("from .b import g\n\ndef f():\n    return g()\n")
    (package / "b.py").write_text("def g():\n    from pkg import f\n    return f\n")
    (package / "c.py").write_text("import pkg.a\n")
    assert _circles(_import_graph(_modules(tmp_path))) == [["pkg.a", "pkg.b"]]
