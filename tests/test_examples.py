"""The scripts in examples/ run as a user runs them (a fresh interpreter) and print sane numbers."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _run(name: str) -> str:
    done = subprocess.run([sys.executable, str(ROOT / "examples" / name)], capture_output=True, text=True,
                          cwd=ROOT, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_own_tasks_example():
    out = _run("own_tasks.py")
    assert re.search(r"NTK diagonal: 2\.000000 \(depth \+ 1 = 2\); NNGP diagonal: 1\.000000", out), out
    diffs = [float(v) for v in re.findall(r"max \|difference\| = ([0-9.e+-]+)", out)]
    assert len(diffs) == 1 and diffs[0] < 1e-7, out                     # hand-written NTK vs the engine
    errors = dict(re.findall(r"^  (\S+)\s+([0-9.]+)$", out, re.M))
    assert set(errors) == {"mtl-a", "mtl-b", "anil", "maml", "head-only", "ntk"}, out
    assert errors["mtl-a"] == errors["head-only"]                        # the same formula (docs/theory.md 5)
    assert all(0.0 <= float(e) < 1.0 for e in errors.values()), out     # every method beats predicting zero
    d = [float(v) for v in re.findall(r"d_rel = ([0-9.]+), d_tr = ([0-9.]+)", out)[0]]
    assert all(0.0 < v < 1.0 for v in d), out


@pytest.mark.slow
def test_own_kernel_depth_example():
    out = _run("own_kernel_depth.py")
    diag = re.findall(r"L = +(\d+): +([0-9.]+) +\(L \+ 1 = (\d+)\)", out)
    assert [int(L) for L, _, _ in diag] == [1, 2, 4, 8, 16], out
    for L, value, _expected in diag:
        assert abs(float(value) - (int(L) + 1)) < 1e-3, out
    assert "your stax Erf network: mean over 3 task draws" in out
    rates = re.findall(r"^\s*(mtl-\w vs \w+)\s+(-?[0-9.]+)\s+(-?[0-9.]+)$", out, re.M)
    assert len(rates) == 6, out                                          # 3 pairs x 2 kernels, all finite
