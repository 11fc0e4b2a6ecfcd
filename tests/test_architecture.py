"""The package's shape holds: `durosim.sim` knows nothing of duroxide, `durosim.plots` never
simulates, and no two modules import each other, directly or through others."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# repository folder -> the package it is installed as
FOLDERS = {"models": "durosim", "sim": "durosim.sim", "plots": "durosim.plots"}


def _modules() -> dict[str, Path]:
    out = {}
    for folder, package in FOLDERS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join((package, *parts))] = path
    return out


MODULES = _modules()


def _imports(path: Path, name: str) -> set[str]:
    """durosim modules `path` imports at any level (top-level and inside functions)."""
    found = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        found.update(t for t in targets if t in MODULES and t != name)
    return found


def test_the_modules_are_found():
    assert {
        "durosim.cli",
        "durosim.sim.db",
        "durosim.model.world",
        "durosim.plots.capacity",
    } <= set(MODULES)


@pytest.mark.parametrize("name", sorted(n for n in MODULES if n.startswith("durosim.sim")))
def test_sim_imports_only_sim(name):
    outside = {m for m in _imports(MODULES[name], name) if not m.startswith("durosim.sim")}
    assert not outside, f"{name} imports {sorted(outside)}"


@pytest.mark.parametrize("name", sorted(n for n in MODULES if n.startswith("durosim.plots")))
def test_plots_never_simulate(name):
    simulating = {
        m
        for m in _imports(MODULES[name], name)
        if m.startswith(("durosim.model", "durosim.experiments", "durosim.lab"))
    }
    assert not simulating, f"{name} imports {sorted(simulating)}"


def test_no_import_circles():
    graph = {name: _imports(path, name) for name, path in MODULES.items()}
    # a package's __init__ that re-exports its own modules is not a circle
    for name, targets in graph.items():
        graph[name] = {t for t in targets if not name.startswith(t + ".")}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt) :] + [nxt]
                raise AssertionError("import circle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name)
