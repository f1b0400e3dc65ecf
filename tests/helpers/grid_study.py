"""A small synthetic grid study for tests/test_grid.py, and a runner of it as a separate process.

Unit ``i`` computes a few deterministic numbers from ``numpy.random.default_rng(i)`` (CSV and JSON
parts). Its argument may also name a ``log`` file, to which the unit appends ``start I PID`` when
it begins (one line per computation, so a count of these lines is a count of computations and of
cache writes), a ``sleep`` and a ``kill`` marker file: a unit that finds its marker deletes it and
kills its own process (SIGKILL), once. None of these enter the unit's spec, so they do not change
its content key.

    cd tests && python -m helpers.grid_study CACHE OUT [--shard K/N] [--log FILE] [--sleep S] [--units N]
writes the assembled study to OUT when every unit is in the cache, and prints ``computed N``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ntk_bridge.grid import GridOptions, GridOutcome, Unit, parse_shard, run_grid


@dataclass(frozen=True)
class Arg:
    i: int
    log: str | None = None
    sleep: float = 0.0
    kill: str | None = None


def compute(arg: Arg) -> dict[str, bytes]:
    if arg.log:
        with open(arg.log, "a") as fh:
            fh.write(f"start {arg.i} {os.getpid()}\n")
    if arg.kill and os.path.exists(arg.kill):
        os.unlink(arg.kill)
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(arg.sleep)
    x = np.random.default_rng(arg.i).normal(size=3)
    csv = "i,k,x\n" + "".join(f"{arg.i},{k},{v!r}\n" for k, v in enumerate(x))
    return {"rows.csv": csv.encode(), "meta.json": json.dumps({"i": arg.i, "sum": float(x.sum())}).encode()}


def units(n: int = 6, log: str | None = None, sleep: float = 0.0, kill: dict[int, str] | None = None) -> list[Unit]:
    return [Unit("grid-test", f"u{i}", {"i": i}, Arg(i, log, sleep, (kill or {}).get(i))) for i in range(n)]


def assemble(outcome: GridOutcome, grid: list[Unit]) -> bytes:
    """The study's file: every unit's parts in declared order."""
    return b"".join(outcome.parts[u.key][name] for u in grid for name in ("rows.csv", "meta.json"))


def starts(log: Path) -> list[int]:
    """The unit numbers of every ``start`` line of ``log``."""
    return [int(line.split()[1]) for line in log.read_text().splitlines()] if log.exists() else []


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("cache")
    p.add_argument("out")
    p.add_argument("--shard", default=None)
    p.add_argument("--log", default=None)
    p.add_argument("--sleep", type=float, default=0.0)
    p.add_argument("--units", type=int, default=6)
    args = p.parse_args(argv)
    grid = units(args.units, args.log, args.sleep)
    options = GridOptions(shard=None if args.shard is None else parse_shard(args.shard), progress=False)
    outcome = run_grid(grid, compute, args.cache, options)
    if outcome.complete:
        Path(args.out).write_bytes(assemble(outcome, grid))
    sys.stdout.write(f"computed {outcome.computed}\n")


if __name__ == "__main__":
    main(sys.argv[1:])
