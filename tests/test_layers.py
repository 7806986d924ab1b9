"""The package's layers hold: no import circles, no import from a lower layer to a higher one.

DESIGN.md section 6 orders the layers: core (1) < data, datasets, simulate and ledger
(2) < model (3) < analyses (4) < the surfaces: reporting and the spec format (5) < what
runs a spec (6) < the CLI (7) < the package itself. ``dims``, ``errors``, ``options``,
``_io``, ``_format`` and ``_version`` sit below them all. Every ``import`` counts,
including those inside functions (which hide a loop, they do not remove it); only
``if TYPE_CHECKING:`` blocks are left out, since they never run.

Any circle or upward import still to be taken apart is listed by name; the tests
fail on any new one, and on a listed one that has gone (then strike it off).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

SRC = REPO / "src"

LEVELS = {
    "dims": 0,
    "errors": 0,
    "options": 0,
    "_io": 0,
    "_format": 0,
    "_version": 0,
    "core": 1,
    "data": 2,
    "simulate": 2,
    "ledger": 2,
    "datasets": 2,
    "model": 3,
    "analyses": 4,
    "reporting": 5,
    "spec": 5,
    "run": 6,
    "cli": 7,
}
SURFACE = 8

#: None left (``CellEffects.from_arm_summaries`` is attached by data/arms.py,
#: which holds its code, instead of data/cells.py importing it).
KNOWN_CIRCLES: set[frozenset[str]] = set()
#: None left: ``ProxyFit.summary`` reads the segment algebra in model/segments.py.
KNOWN_UPWARD: set[tuple[str, str]] = set()


def modules(src: Path = SRC) -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package under ``src``."""
    out = {}
    for path in sorted((src / "proxyscope").rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def import_graph(src: Path = SRC) -> dict[str, set[str]]:
    """Module -> the package's modules it imports (anywhere but ``TYPE_CHECKING`` blocks)."""
    mods = modules(src)
    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        typing_only = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                for inner in node.body:
                    typing_only.update(id(n) for n in ast.walk(inner))
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        targets: set[str] = set()
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package[: len(package) - node.level + 1] + [base] * bool(base))
                for alias in node.names:
                    full = f"{base}.{alias.name}"
                    targets.add(full if full in mods else base)
        graph[name] = {t for t in targets if t in mods and t != name}
    return graph


def circles(graph: dict[str, set[str]]) -> set[frozenset[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: set[frozenset[str]] = set()

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                found.add(frozenset(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def level(module: str) -> int:
    parts = module.split(".")
    return LEVELS.get(parts[1], SURFACE) if len(parts) > 1 else SURFACE


def upward(graph: dict[str, set[str]]) -> set[tuple[str, str]]:
    """Imports from a module to one of a higher layer (a package importing its own
    submodules aside)."""
    return {
        (a, b)
        for a, targets in graph.items()
        for b in targets
        if level(b) > level(a) and not a.startswith(b + ".")
    }


def test_no_import_circles() -> None:
    found = circles(import_graph())
    assert found - KNOWN_CIRCLES == set(), f"new import circles: {found - KNOWN_CIRCLES}"
    assert KNOWN_CIRCLES - found == set(), f"gone, strike off: {KNOWN_CIRCLES - found}"


def test_no_import_from_a_lower_layer_to_a_higher_one() -> None:
    found = upward(import_graph())
    assert found - KNOWN_UPWARD == set(), f"new upward imports: {found - KNOWN_UPWARD}"
    assert KNOWN_UPWARD - found == set(), f"gone, strike off: {KNOWN_UPWARD - found}"


def test_the_checks_find_a_circle_and_an_upward_import(tmp_path: Path) -> None:
    # A circle hidden in a function and a core module importing the model.
    package = tmp_path / "proxyscope"
    (package / "core").mkdir(parents=True)
    (package / "model").mkdir()
    for init in (package, package / "core", package / "model"):
        (init / "__init__.py").write_text("")
    (package / "core" / "a.py").write_text("def f():\n    from proxyscope.model import b\n")
    (package / "model" / "b.py").write_text("from proxyscope.core.a import f\n")
    (package / "model" / "c.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from proxyscope.model import b\n"
    )
    graph = import_graph(tmp_path)
    assert circles(graph) == {frozenset({"proxyscope.core.a", "proxyscope.model.b"})}
    assert upward(graph) == {("proxyscope.core.a", "proxyscope.model.b")}
    assert graph["proxyscope.model.c"] == set()  # typing-only imports never run


@pytest.mark.slow
def test_every_module_imports_on_its_own() -> None:
    # Each in a fresh interpreter: an import order that only works after another
    # module has been imported fails here.
    failed = []
    for name in modules():
        run = subprocess.run(
            [sys.executable, "-c", f"import {name}"], capture_output=True, text=True
        )
        if run.returncode:
            failed.append(f"{name}: {run.stderr.strip().splitlines()[-1]}")
    assert not failed, failed
