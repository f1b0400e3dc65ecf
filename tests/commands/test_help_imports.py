"""``ntk-bridge COMMAND --help`` runs neither pandas, scipy nor JAX (issue 32), in a fresh interpreter:
command modules import nothing heavy at module level, and the study modules whose configs give the
flags' defaults import pandas inside the functions that make frames."""

from __future__ import annotations

import subprocess
import sys

CHILD = """
import contextlib, io, sys
from ntk_bridge.commands.cli import COMMANDS, build_parser
parser = build_parser()
for name in COMMANDS:
    with contextlib.redirect_stdout(io.StringIO()) as out:
        try:
            parser.parse_args([name, "--help"])
        except SystemExit:
            pass
    assert "usage: ntk-bridge " + name in out.getvalue(), name
print(" ".join(m for m in ("pandas", "scipy", "jax", "flax", "matplotlib") if m in sys.modules) or "none")
"""


def test_help_of_every_command_imports_no_pandas_scipy_or_jax():
    res = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["none"], f"--help imported: {res.stdout.strip()}"
