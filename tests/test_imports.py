"""The layout's import rules, read from the source (ast), imports inside functions included.

- no import cycles between the project's modules;
- each top-level folder imports only the folders below it:
  ``fulfillment`` (pure) <- ``include`` (domain, clients) <- ``model_server`` / ``plugins`` /
  ``api`` <- ``dags``; ``ops`` starts processes and may use ``include``;
- no Airflow in ``include``, ``fulfillment``, ``model_server`` or ``api``.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Top-level folder -> the project folders it may import from.
ALLOWED = {
    "fulfillment": set(),
    "include": {"fulfillment"},
    "model_server": {"include"},
    "plugins": {"include", "fulfillment"},
    "api": {"include", "fulfillment"},
    "dags": {"plugins", "include", "fulfillment"},
    "ops": {"include"},
}
NO_AIRFLOW = ("fulfillment", "include", "model_server", "api")


def module_name(path: Path) -> str:
    # plugins/ is on the Python path itself (as Airflow puts it): its packages are imported by name.
    rel = path.relative_to(ROOT / "plugins" if path.is_relative_to(ROOT / "plugins") else ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def folder_of(path: Path) -> str:
    return path.relative_to(ROOT).parts[0]


def project_files() -> dict[str, Path]:
    files = {}
    for folder in ALLOWED:
        for path in (ROOT / folder).rglob("*.py"):
            files[module_name(path)] = path
    return files


def imports_of(path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules ``path`` imports (the most specific existing module of each name)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{a.name}" for a in node.names] + [node.module]
        for name in names:
            parts = name.split(".")
            while parts and ".".join(parts) not in modules:
                parts.pop()
            if parts:
                found.add(".".join(parts))
    return found


def graph() -> tuple[dict[str, set[str]], dict[str, Path]]:
    modules = project_files()
    edges = {name: imports_of(path, modules) - {name} for name, path in modules.items()}
    # Importing a package's submodule runs the package's __init__ first, not the other way round:
    # the edge from a module to its own package is not a dependency to count.
    for name in edges:
        edges[name] = {dep for dep in edges[name] if not name.startswith(dep + ".")}
    return edges, modules


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
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
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles():
    edges, _ = graph()
    assert cycles(edges) == []


def test_each_folder_imports_only_the_folders_below_it():
    edges, modules = graph()
    problems = []
    for name, deps in sorted(edges.items()):
        mine = folder_of(modules[name])
        for dep in sorted(deps):
            theirs = folder_of(modules[dep])
            if theirs != mine and theirs not in ALLOWED[mine]:
                problems.append(f"{modules[name].relative_to(ROOT)} imports {dep} ({theirs}/)")
    assert not problems, "\n".join(problems)


def test_no_airflow_outside_plugins_and_dags():
    problems = []
    for folder in NO_AIRFLOW:
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                    [node.module] if isinstance(node, ast.ImportFrom) and node.module else [])
                problems += [f"{path.relative_to(ROOT)}: {n}" for n in names if n.split(".")[0] == "airflow"]
    assert not problems, "\n".join(problems)


def test_the_checks_see_a_cycle_and_a_wrong_direction():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    edges, modules = graph()
    assert "include.settings" in edges["include.orders"]  # the graph resolves `from include.x import y`
    assert "fulfillment.vendors.base" in edges["include.orders"]
    assert "bitbuddies_airflow.operators" in edges["dags.generate_buddy"]  # plugins/ packages by name
