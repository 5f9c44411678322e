"""The layers of mapgen/ hold: every import (module level, inside functions, under TYPE_CHECKING) goes down,
never up and never sideways between sibling layers, and no two modules import each other, directly or not.

From the bottom: the exceptions (``mapgen.errors``) and the version; ``core`` (the shared vocabulary);
``runtime`` (one process's loop, interrupts, counters); ``llms``, ``store`` and ``tasks``, three siblings;
``mapping`` (the map machinery); ``report``, ``integrations`` and ``clean`` (dataset transforms), three
siblings; the verbs (``generate``, ``label``, ``preference``), ``pipeline`` that composes two of them and
``judging`` that measures a judge with them; the faces (``mapgen`` and its CLI).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "mapgen"

LAYERS: list[set[str]] = [
    {"mapgen.errors", "mapgen._version"},
    {"mapgen.core"},
    {"mapgen.runtime"},
    {"mapgen.llms", "mapgen.store", "mapgen.tasks"},
    {"mapgen.mapping"},
    {"mapgen.report", "mapgen.integrations", "mapgen.clean"},
    {"mapgen.generate", "mapgen.label", "mapgen.preference"},
    {"mapgen.pipeline", "mapgen.judging"},
    {"mapgen"},
    {"mapgen.cli"},
]
"""Each set one level; a name is a module at the top of ``mapgen/`` or a package (a layer of its own)."""

MAX_TOP_LEVEL_MODULES = 12


def modules(root: Path = PACKAGE) -> dict[str, Path]:
    """Every module of the package, by dotted name (a package by its ``__init__``)."""
    found = {}
    for path in root.rglob("*.py"):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The mapgen modules that ``name`` imports anywhere in its file (functions and TYPE_CHECKING too)."""

    def resolve(dotted: str) -> str:
        while dotted not in known:
            dotted = dotted.rpartition(".")[0]
        return dotted

    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {resolve(alias.name) for alias in node.names if alias.name.split(".")[0] == "mapgen"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join([*base, node.module] if node.module else base)
            else:
                source = node.module or ""
            if source.split(".")[0] != "mapgen":
                continue
            for alias in node.names:  # `from mapgen.store import keys` imports the module mapgen.store.keys
                full = f"{source}.{alias.name}"
                found.add(full if full in known else resolve(source))
    found.discard(name)
    return found


def layer(module: str) -> tuple[int, str]:
    """``module``'s level and layer: its package under mapgen/ (``mapgen.llms``), or itself at the top."""
    parts = module.split(".")
    name = ".".join(parts[:2]) if len(parts) > 1 else module
    for level, names in enumerate(LAYERS):
        if name in names:
            return level, name
    raise AssertionError(f"{module} belongs to no layer: add it to LAYERS in tests/test_layers.py")


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(name, path, known) for name, path in known.items()}


def violations(edges: dict[str, set[str]]) -> list[str]:
    """Imports that go up a level, or sideways from one layer into another of its level."""
    wrong = []
    for source, targets in sorted(edges.items()):
        level, home = layer(source)
        for target in sorted(targets):
            target_level, target_home = layer(target)
            if target_home == home:
                continue  # within one package
            if target_level > level:
                wrong.append(f"{source} -> {target}: up from {home} to {target_home}")
            elif target_level == level:
                wrong.append(f"{source} -> {target}: sideways between siblings {home} and {target_home}")
    return wrong


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, ())):
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

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_every_import_goes_down():
    assert violations(graph()) == []


def test_no_import_circles():
    assert circles(graph()) == []


def test_few_modules_sit_at_the_top():
    top = sorted(p.stem for p in PACKAGE.glob("*.py"))
    assert len(top) <= MAX_TOP_LEVEL_MODULES, top


def test_every_module_has_a_layer():
    for name in modules():
        layer(name)


@pytest.mark.parametrize(
    "files, wrong",
    [
        # an upward import inside a function is still an upward import
        ({"core/a.py": "def f():\n    from mapgen.mapping import m\n", "mapping/m.py": ""}, "up"),
        # under TYPE_CHECKING too
        (
            {"llms/a.py": "import typing\nif typing.TYPE_CHECKING:\n    from mapgen.store import s\n"},
            "sideways",
        ),
        ({"llms/a.py": "from mapgen.core import x\n", "core/x.py": ""}, None),
    ],
)
def test_the_check_sees_what_it_must(tmp_path, files, wrong):
    root = tmp_path / "mapgen"
    for sub in ("core", "mapping", "llms", "store"):
        (root / sub).mkdir(parents=True)
        (root / sub / "__init__.py").write_text("")
    (root / "__init__.py").write_text("")
    (root / "store" / "s.py").write_text("")
    for name, text in files.items():
        (root / name).write_text(text)
    known = modules(root)
    edges = {name: imports(name, path, known) for name, path in known.items()}
    found = violations(edges)
    if wrong is None:
        assert found == []
    else:
        assert len(found) == 1 and wrong in found[0], found


def test_a_circle_is_found():
    edges = {
        "mapgen.core.a": {"mapgen.core.b"},
        "mapgen.core.b": {"mapgen.core.c"},
        "mapgen.core.c": {"mapgen.core.a"},
    }
    assert circles(edges) == [["mapgen.core.a", "mapgen.core.b", "mapgen.core.c"]]


def test_the_public_modules_keep_their_earlier_import_paths():
    import subprocess
    import sys

    script = "from mapgen.parsing import parse_model; from mapgen.schema import strict_schema; print('ok')"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "ok", done.stderr
