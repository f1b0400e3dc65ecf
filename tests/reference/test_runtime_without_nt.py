"""Every command's runtime path works without neural-tangents (issue 19): it is the tests' reference
and the bridge for users' own stax networks, not a dependency of the package.

The commands run in a fresh interpreter in which ``import neural_tangents`` fails
(``sys.modules['neural_tangents'] = None``), on tiny grids; afterwards neither neural-tangents nor
TensorFlow is loaded. A static check adds that only the three bridge modules name it at all.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "ntk_bridge"
REFERENCE = PACKAGE / "reference"   # the one package that may import neural-tangents

BLOCK = ("import sys; sys.modules['neural_tangents'] = None; "
         "from ntk_bridge.commands.cli import main; rc = main({argv!r}); "
         "print('LOADED', sorted(m for m in ('neural_tangents', 'tensorflow') if sys.modules.get(m))); "
         "sys.exit(rc)")


def _run_blocked(argv: list[str]) -> subprocess.CompletedProcess:
    res = subprocess.run([sys.executable, "-c", BLOCK.format(argv=argv)], capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "LOADED []" in res.stdout, res.stdout[-500:]
    return res


def test_only_the_reference_package_imports_neural_tangents():
    """No module outside ``ntk_bridge/reference/`` imports neural_tangents or the reference package
    (AST check, lazy imports inside functions included). The package's ``__init__`` names the
    reference modules only as strings of its lazy table (``nb.kernels_from_kernel_fn``)."""
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if REFERENCE in path.parents or path.name == "__init__.py" and path.parent == PACKAGE:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names]
            if any(n.split(".")[0] == "neural_tangents" or n.startswith("ntk_bridge.reference") for n in names):
                offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert offenders == [], offenders


@pytest.mark.slow
def test_kernel_commands_run_with_neural_tangents_blocked(tmp_path):
    """depth-sweep, regime-map and width-sweep (finite networks, empirical closed forms) on tiny
    grids, with neural-tangents unimportable."""
    _run_blocked(["depth-sweep", "--depths", "1,4", "--draws", "2", "--train-tasks", "2", "--test-tasks", "2",
                  "--out", str(tmp_path / "ds"), "--figure", str(tmp_path / "ds.png"), "--quiet"])
    _run_blocked(["width-sweep", "--widths", "16,32", "--seeds", "1", "--methods", "mtl-b,anil",
                  "--train-tasks", "2", "--test-tasks", "2", "--d", "4", "--n-query", "2", "--n-support", "2",
                  "--outer-time", "1", "--out", str(tmp_path / "ws"), "--figure", str(tmp_path / "ws.png"),
                  "--quiet"])
    errors = (tmp_path / "ws" / "errors.csv").read_text().splitlines()
    assert len(errors) == 1 + 2 * 2                     # header + 2 widths x 2 methods
    assert json.loads((tmp_path / "ws" / "run.json").read_text())["complete"] is True
