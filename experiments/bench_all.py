"""Rerun every committed speed figure's benchmark in a quick mode, one after another, and collect
the ratio lines (each with its min-max over A-B-A rounds) and the load average.

Every benchmark below alternates its sides in one process and prints per-round ratio ranges and
the load; this script only runs them in sequence (``nice -n 10``), keeps each one's full output
under ``--out-dir`` (default experiments/results/bench/rerun/), and prints the lines that carry a
ratio, so that a second run can be set beside the committed figures:

- bench_empirical.py --quick      empirical NTK vs neural-tangents' JC / NTK-VP (FC, Conv-4)
- bench_predictors.py --quick     one draw of the seven predictors vs the three-Cholesky floor
- bench_depth_sweep.py            FC depth sweep vs numpy / neural-tangents, N = 100-400, L = 32
- bench_help.py --rounds 3        ``--help`` of every command vs ``python -c "import numpy"``
- bench_conv_kernels.py           conv engine vs neural-tangents, 14x14 (``--with-conv``: minutes)
- bench_logreg.py                 compiled logistic head vs scikit-learn, 200 episodes (``--with-logreg``)

A figure is reproduced when the rerun's median ratio is within 20% of the committed one; the
machine state (load average, 2 cores shared) is printed with each line.

    python experiments/bench_all.py [--with-conv] [--with-logreg] [--only NAME,...] [--out-dir DIR]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

BENCHES = {
    "empirical": ["bench_empirical.py", "--quick"],
    "predictors": ["bench_predictors.py", "--quick"],
    "depth_sweep": ["bench_depth_sweep.py", "--points", "100,200,400", "--depths", "32"],
    "help": ["bench_help.py", "--rounds", "3"],
    "conv": ["bench_conv_kernels.py", "--sizes", "14", "--repeats", "2"],
    "logreg": ["bench_logreg.py", "--episodes", "200", "--shots", "5"],
}
OPTIONAL = ("conv", "logreg")
RATIO = re.compile(r"\d\.\d+x|peer/ours|ratio|speed-up|/floor|--help|import numpy")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--with-conv", action="store_true")
    p.add_argument("--with-logreg", action="store_true")
    p.add_argument("--only", default=None, help="comma-separated names among " + ", ".join(BENCHES))
    p.add_argument("--out-dir", default=str(HERE / "results" / "bench" / "rerun"))
    a = p.parse_args(argv)
    names = a.only.split(",") if a.only else [n for n in BENCHES if n not in OPTIONAL or
                                               (n == "conv" and a.with_conv) or (n == "logreg" and a.with_logreg)]
    unknown = [n for n in names if n not in BENCHES]
    if unknown:
        print(f"error: unknown benchmark(s) {', '.join(unknown)}; choose among {', '.join(BENCHES)}", file=sys.stderr)
        return 2
    out_dir = Path(a.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3")
    print(f"bench_all: {', '.join(names)}; load average {os.getloadavg()}; {os.cpu_count()} CPUs")
    status = 0
    for name in names:
        start = time.perf_counter()
        res = subprocess.run(["nice", "-n", "10", sys.executable, *BENCHES[name]], cwd=HERE, env=env,
                             capture_output=True, text=True)
        (out_dir / f"{name}.txt").write_text(res.stdout + ("\n# stderr\n" + res.stderr if res.returncode else ""))
        print(f"\n== {name} ({' '.join(BENCHES[name])}): exit {res.returncode}, {time.perf_counter() - start:.0f} s, "
              f"load average now {os.getloadavg()[0]:.2f}")
        for line in res.stdout.splitlines():
            if RATIO.search(line) or "load average" in line:
                print("  " + line)
        status = status or res.returncode
    return status


if __name__ == "__main__":
    sys.exit(main())
