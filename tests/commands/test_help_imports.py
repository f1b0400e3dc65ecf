"""``ntk-bridge COMMAND --help`` runs neither pandas, scipy nor JAX (issue 32), in a fresh interpreter."""

from __future__ import annotations

import subprocess
import sys

CHILD = """
import contextlib, io, sys
from ntk_bridge.commands._lazy import loaded
from ntk_bridge.commands.cli import COMMANDS, build_parser
parser = build_parser()
for name in COMMANDS:
    with contextlib.redirect_stdout(io.StringIO()) as out:
        try:
            parser.parse_args([name, "--help"])
        except SystemExit:
            pass
    assert "usage: ntk-bridge " + name in out.getvalue(), name
print(" ".join(m for m in ("pandas", "scipy", "jax", "flax", "matplotlib") if loaded(m)) or "none")
"""


def test_help_of_every_command_imports_no_pandas_scipy_or_jax():
    res = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["none"], f"--help imported: {res.stdout.strip()}"


def test_a_deferred_package_loads_on_first_use_and_then_is_the_real_one():
    """The stand-in imports the real package on first attribute access; the names then agree."""
    code = ("from ntk_bridge.commands._lazy import defer, loaded; defer(('pandas',)); import pandas as pd; "
            "a = loaded('pandas'); f = pd.DataFrame({'x': [1, 2]}); import pandas; "
            "print(a, loaded('pandas'), pd.DataFrame is pandas.DataFrame, int(f['x'].sum()))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["False", "True", "True", "3"]
