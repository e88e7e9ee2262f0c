"""The package's import graph: no cycles, no private names across modules, no CLI in the dashboard.

The graph is read with ``ast`` from the source, so imports inside functions and under
``TYPE_CHECKING`` count too: a loop hidden that way is still a loop.
"""

from __future__ import annotations

import ast
from pathlib import Path

import conveyor

PACKAGE = Path(conveyor.__file__).parent

#: Import cycles known and being removed elsewhere, with why; each must still exist (so the
#: entry goes once the loop is gone).
KNOWN_CYCLES: dict[frozenset[str], str] = {}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, ast.Module]:
    return {
        _module_name(path): ast.parse(path.read_text(), str(path))
        for path in sorted(PACKAGE.rglob("*.py"))
    }


def _imports(name: str, tree: ast.Module, known: set[str]) -> list[tuple[str, str | None]]:
    """Each (conveyor module, imported name or None) that module ``name`` imports."""
    package = name if _is_package(name) else name.rpartition(".")[0]
    found: list[tuple[str, str | None]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, None) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                if f"{base}.{alias.name}" in known:  # a submodule: from conveyor import ops
                    found.append((f"{base}.{alias.name}", None))
                else:
                    found.append((base, alias.name))
    return [(module, what) for module, what in found if module in known]


def _is_package(name: str) -> bool:
    return (PACKAGE.parent / name.replace(".", "/") / "__init__.py").exists()


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {
        name: {module for module, _ in _imports(name, tree, known)} - {name}
        for name, tree in modules.items()
    }


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
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


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _is_within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def test_the_graph_sees_function_level_and_type_checking_imports() -> None:
    tree = ast.parse(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from conveyor.queue import Queue\n"
        "def f():\n    from conveyor.cli import render\n    from . import keys\n"
    )
    known = {"conveyor", "conveyor.queue", "conveyor.cli", "conveyor.cli.render", "conveyor.keys"}
    assert set(_imports("conveyor.dead_letters", tree, known)) == {
        ("conveyor.queue", "Queue"),
        ("conveyor.cli.render", None),
        ("conveyor.keys", None),
    }
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycles() -> None:
    cycles = [c for c in _cycles(_graph()) if frozenset(c) not in KNOWN_CYCLES]
    assert not cycles, "import cycles among conveyor's modules: " + "; ".join(
        " <-> ".join(cycle) for cycle in cycles
    )


def test_the_known_cycles_still_exist() -> None:
    gone = set(KNOWN_CYCLES) - {frozenset(c) for c in _cycles(_graph())}
    assert not gone, f"no longer cycles, remove them from KNOWN_CYCLES: {sorted(map(sorted, gone))}"


def test_no_private_names_imported_across_modules() -> None:
    modules = _modules()
    known = set(modules)
    leaks = [
        f"{name} imports {what} from {module}"
        for name, tree in modules.items()
        for module, what in _imports(name, tree, known)
        if what is not None and _private(what) and module != name
    ]
    assert not leaks, "private names imported across modules:\n" + "\n".join(leaks)


def _own_names(tree: ast.Module) -> set[str]:
    """The names a module defines: functions, classes, and attributes it assigns."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
    return names


#: Underscore attributes of other libraries that are their public API.
FOREIGN_PUBLIC = {"os._exit"}


def test_no_private_attributes_reached_across_modules() -> None:
    """``other._name`` only for a ``_name`` this module defines (its own classes' fields)."""
    leaks: list[tuple[str, int, str]] = []
    for name, tree in _modules().items():
        own = _own_names(tree)
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Attribute) and _private(node.attr)):
                continue
            if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
                continue
            if node.attr in own or ast.unparse(node) in FOREIGN_PUBLIC:
                continue
            leaks.append((name, node.lineno, ast.unparse(node)))
    assert not leaks, "private attributes reached from another module:\n" + "\n".join(
        f"{name}:{line} reaches {code}" for name, line, code in sorted(leaks)
    )


def test_the_dashboard_does_not_import_the_cli() -> None:
    graph = _graph()
    leaks = [
        f"{name} imports {module}"
        for name, imported in graph.items()
        if _is_within(name, "conveyor.dashboard")
        for module in sorted(imported)
        if _is_within(module, "conveyor.cli")
    ]
    assert not leaks, "the dashboard imports the CLI:\n" + "\n".join(leaks)


def test_the_library_imports_neither_the_cli_nor_the_dashboard() -> None:
    graph = _graph()
    leaks = [
        f"{name} imports {module}"
        for name, imported in graph.items()
        if not any(_is_within(name, p) for p in ("conveyor.cli", "conveyor.dashboard"))
        and name != "conveyor.__main__"  # the command line's entry point
        for module in sorted(imported)
        if any(_is_within(module, p) for p in ("conveyor.cli", "conveyor.dashboard"))
    ]
    assert not leaks, "library modules import the CLI or the dashboard:\n" + "\n".join(leaks)


#: Library modules only the CLI imports that are still library API, and why.
LIBRARY_API_USED_BY_THE_CLI = {
    "conveyor.prometheus": "create_exporter_app is documented for apps (docs/metrics.md)",
}


def test_code_only_the_cli_uses_lives_with_the_cli() -> None:
    """The demo's workload, say, belongs under conveyor.cli, not in the library root."""
    graph = _graph()
    users: dict[str, set[str]] = {}
    for name, imported in graph.items():
        for module in imported:
            users.setdefault(module, set()).add(name)
    stray = [
        f"{module} (imported only by {', '.join(sorted(users[module]))})"
        for module in sorted(users)
        if not any(_is_within(module, p) for p in ("conveyor.cli", "conveyor.dashboard"))
        and module != "conveyor"
        and module not in LIBRARY_API_USED_BY_THE_CLI
        and all(_is_within(user, "conveyor.cli") for user in users[module])
    ]
    assert not stray, "library modules only the CLI uses; move them under cli/:\n" + "\n".join(
        stray
    )
