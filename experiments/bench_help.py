"""Benchmark: ``ntk-bridge COMMAND --help`` for every command, beside ``python -c "import numpy"``.

Each measurement is a fresh interpreter (``sys.executable``) timed from spawn to exit. Per round the
order is: ``import numpy``, then every command's ``--help`` with this checkout on ``PYTHONPATH``,
then (``--before DIR``) the same with another checkout (e.g. /work/main, the code before issue 32);
the order is reversed every other round. Median [min-max] over rounds, and the load average.

    python experiments/bench_help.py [--rounds 5] [--before /work/main] [--out experiments/results/bench/bench_help.txt]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from bench_common import Report, finish, load, out_path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

HELP = "import sys; from ntk_bridge.commands.cli import main; sys.argv[0] = 'ntk-bridge'; main([{!r}, '--help'])"


@dataclass(frozen=True)
class BenchConfig:
    rounds: int = 5
    before: str | None = None


@dataclass(frozen=True)
class Row:
    what: str
    checkout: str
    median_s: float
    min_s: float
    max_s: float


def timed(code: str, path: str | None) -> float:
    env = dict(os.environ)
    if path is not None:
        env["PYTHONPATH"] = path
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main(argv=None) -> None:
    from ntk_bridge.commands.cli import COMMANDS

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--before", default=None, help="another checkout to time beside this one")
    p.add_argument("--out", default=None)
    a = p.parse_args(argv)
    cfg = BenchConfig(a.rounds, a.before)
    out = out_path(a.out)
    say = Report(out)
    say(f"bench_help: {cfg}; python {sys.version.split()[0]}; {load()}")
    jobs = [("python -c 'import numpy'", "-", "import numpy", None)]
    checkouts = [("this", str(ROOT))] + ([("before", cfg.before)] if cfg.before else [])
    for label, path in checkouts:
        jobs += [(f"ntk-bridge {c} --help", label, HELP.format(c), path) for c in COMMANDS]
    times: dict = {j[:2]: [] for j in jobs}
    for r in range(cfg.rounds):
        for what, label, code, path in (jobs if r % 2 == 0 else jobs[::-1]):
            times[(what, label)].append(timed(code, path))
        say(f"round {r + 1}: {load()}")
    rows = [Row(w, lab, float(np.median(t)), float(min(t)), float(max(t))) for (w, lab), t in times.items()]
    base = np.asarray(times[jobs[0][:2]])
    say(f"\n{'what':36s} {'checkout':8s} {'median s':>9s} [min-max]   ratio to import numpy per round")
    for row, t in zip(rows, times.values()):
        r = np.asarray(t) / base
        say(f"{row.what:36s} {row.checkout:8s} {row.median_s:9.3f} [{row.min_s:.3f}-{row.max_s:.3f}]   "
            f"{np.median(r):5.2f}x [{r.min():.2f}-{r.max():.2f}]")
    finish(say, out, cfg, rows)


if __name__ == "__main__":
    main()
