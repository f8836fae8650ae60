"""central/ has no import cycles (issue 14): the pure rules (rollup effects, reconciliation, the floor)
import nothing of the store, and the store imports none of the domain modules above it.

The graph is read from the source with :mod:`ast` (every ``import``, also those under
``TYPE_CHECKING`` or inside functions: a cycle hidden from the interpreter is still a cycle of the
design). Importing ``central.a.b`` runs ``central.a`` too, so an import also reaches every package
above its target that is not a package of the importer itself.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CENTRAL = ROOT / "central"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in CENTRAL.rglob("*.py")}


def _targets(name: str, path: Path, known: set[str]) -> set[str]:
    """The central modules ``name`` imports (the module itself, and each package an import runs)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    out: set[str] = set()
    own = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 2)}
    for target in found:
        parts = target.split(".")
        for i in range(1, len(parts) + 1):
            prefix = ".".join(parts[:i])
            if prefix in known and prefix not in own:
                out.add(prefix)
    return out


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {name: _targets(name, path, known) for name, path in modules.items()}


def test_central_has_no_import_cycle() -> None:
    graph = _graph()
    assert len(graph) > 40, "the walk found too few modules"
    assert _cycles(graph) == []


def test_pure_rules_import_nothing_of_the_store() -> None:
    graph = _graph()
    for rule in ("central.floor", "central.reconcile", "central.rollup"):
        store = sorted(t for t in graph[rule] if t == "central.store" or t.startswith("central.store."))
        assert store == [], f"{rule} imports {store}"


def test_store_imports_no_domain_module() -> None:
    graph = _graph()
    domain = {"central.floor", "central.reconcile", "central.catalog"}
    for name, targets in graph.items():
        if name == "central.store" or name.startswith("central.store."):
            assert not targets & domain, f"{name} imports {sorted(targets & domain)}"


def test_the_walk_sees_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
