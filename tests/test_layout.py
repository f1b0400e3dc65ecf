"""The package's layout is its architecture (issue 28): folders name the roles, imports run only
downward, there is no import circle, library code below ``commands/`` neither prints nor switches
matplotlib's backend, and every ``ntk_bridge/...`` path named in the documents exists.

The import graph is read from the source (every ``import`` / ``from ... import`` statement,
including the lazy ones inside functions), not from a running interpreter.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "ntk_bridge"

# floors, bottom up: a module may import its own package and any package on a lower floor
FLOORS = {
    "ground": 0,        # errors, io, interrupts, stats (modules directly under ntk_bridge/)
    "engine": 1, "data": 1,
    "reference": 2, "closed_form": 2, "train": 2,
    "finite": 3,
    "studies": 4,
    "report": 5,
    "api": 6,
    "commands": 7,
}
GROUND = {"errors", "grid", "io", "interrupts", "stats"}


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module(p): p for p in PACKAGE.rglob("*.py")}


def _room(module: str) -> str:
    """The floor's name of a module: its package under ntk_bridge, 'ground' or 'api'."""
    parts = module.split(".")
    if len(parts) == 1:
        return "init"
    if len(parts) == 2 and parts[1] in GROUND:
        return "ground"
    return parts[1]


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """Modules of the package that ``path`` imports (a name imported from a package counts as
    the sub-module it names, when there is one)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("ntk_bridge"):
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                out.add(sub if sub in modules else node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("ntk_bridge"))
    return out


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {m: {i for i in _imports(p, modules) if i in modules and i != m} for m, p in modules.items()}


def test_ground_floor_is_small():
    direct = sorted(p.stem for p in PACKAGE.glob("*.py"))
    assert set(direct) == GROUND | {"__init__", "api"}, direct


def test_every_package_has_a_floor():
    rooms = {_room(m) for m in _modules()} - {"init"}
    assert rooms <= set(FLOORS), rooms - set(FLOORS)


def test_no_import_runs_up():
    """A module imports its own package or lower floors only (the package's ``__init__`` names
    modules lazily, as strings, and is not a floor)."""
    up = []
    for module, targets in _graph().items():
        room = _room(module)
        if room == "init":
            continue
        for t in targets:
            other = _room(t)
            if other == "init" or other == room:
                continue
            if FLOORS[other] >= FLOORS[room]:
                up.append(f"{module} -> {t}")
    assert up == [], up


def test_no_import_circles():
    """Tarjan's strongly connected components of the module graph: every one is a single module."""
    graph = _graph()
    index, low, stack, on, circles = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                circles.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert circles == [], circles


def _library_files() -> list[Path]:
    return [p for p in PACKAGE.rglob("*.py") if "commands" not in p.relative_to(PACKAGE).parts]


def test_library_code_neither_prints_nor_switches_the_backend():
    """Below ``commands/`` nothing calls ``print`` (progress and results go to ``logging`` or
    are returned) and nothing calls ``matplotlib.use`` or imports pyplot (figures are
    ``matplotlib.figure.Figure`` objects; ``io.save_figure`` closes a pyplot figure it is given)."""
    offenders = []
    for path in _library_files():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                name = ast.unparse(node.func)
                if name == "print" or name.endswith("matplotlib.use"):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} {name}")
            if isinstance(node, ast.ImportFrom) and node.module == "matplotlib" and \
                    any(a.name == "pyplot" for a in node.names):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} pyplot")
            if isinstance(node, ast.Import) and any(a.name == "matplotlib.pyplot" for a in node.names) \
                    and path.name != "io.py":
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} pyplot")
    assert offenders == [], offenders


def test_the_layout_check_catches_a_print_and_an_upward_import(tmp_path, monkeypatch):
    """The checks above can fail: a planted print and a planted engine -> studies import are found."""
    fake = tmp_path / "ntk_bridge"
    (fake / "engine").mkdir(parents=True)
    (fake / "studies").mkdir()
    for f in ("__init__.py", "engine/__init__.py", "studies/__init__.py", "studies/s.py"):
        (fake / f).write_text("")
    (fake / "engine" / "e.py").write_text("from ntk_bridge.studies import s\n\ndef f():\n    print('x')\n")
    monkeypatch.setattr(__import__(__name__), "ROOT", tmp_path)
    monkeypatch.setattr(__import__(__name__), "PACKAGE", fake)
    with pytest.raises(AssertionError, match="engine.e -> ntk_bridge.studies.s"):
        test_no_import_runs_up()
    with pytest.raises(AssertionError, match="print"):
        test_library_code_neither_prints_nor_switches_the_backend()


DOCUMENTS = ["README.md", "paper_notes.md", "docs/theory.md", "docs/benchmarks.md", "CHANGELOG.md"]
PATH_RE = re.compile(r"(?<![\w/.-])(?:ntk_bridge|tests)/[\w./-]*[\w/]")


def test_every_package_path_named_in_the_documents_exists():
    """Each ``ntk_bridge/...`` and ``tests/...`` path in the README, paper_notes, docs/ and the result folders'
    READMEs names a file or folder that exists (the layout moved; the documents must follow)."""
    docs = [ROOT / d for d in DOCUMENTS] + sorted((ROOT / "experiments" / "results").rglob("README.md"))
    missing = []
    for doc in docs:
        for m in PATH_RE.finditer(doc.read_text()):
            path = m.group(0).rstrip("/.")
            if not (ROOT / path).exists():
                missing.append(f"{doc.relative_to(ROOT)}: {path}")
    assert missing == [], missing
