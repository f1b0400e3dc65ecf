"""Wall time of one small grid study on the four runners of ntk_bridge.grid, on this machine.

The study: the regime map over 2 networks (relu-b0, erf-critical) x all 4 inner loops x 3 outer
times, depths 1..1024, 4 draws: 8 units (network x draw), each one depth sweep of the kernels and
12 cells. Runners, each from an empty cache, alternated over ``--repeats`` rounds:

  serial    in this process (the default)
  workers2  --workers 2: two spawned local processes, one XLA / BLAS thread each
  dask2     a Dask LocalCluster of 2 worker processes, 1 thread each (started before the clock)
  shards2   --shard 0/2 and --shard 1/2 as two concurrent processes of the CLI, then the combining
            run in this process (all three inside the clock, as a job array would spend them)

Every runner's frame is checked to be byte-identical to the serial one (as CSV). Worker start-up
(a fresh Python importing JAX per process) is part of the workers2 and shards2 times. The load
average is printed before and after each run: on a shared machine the times say little without it.

    PYTHONPATH=$PWD python experiments/bench_grid.py [--repeats 1] [--draws 4]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_common import Report, load

from ntk_bridge.grid import GridOptions
from ntk_bridge.studies import regime_map

ROOT = Path(__file__).resolve().parents[1]


def config(draws: int) -> regime_map.RegimeMapConfig:
    return regime_map.RegimeMapConfig(nets=("relu-b0", "erf-critical"), draws=draws)


def cli_args(cfg: regime_map.RegimeMapConfig, cache: Path, out: Path) -> list[str]:
    return ["regime-map", "--nets", ",".join(cfg.nets), "--draws", str(cfg.draws), "--cache", str(cache),
            "--out", str(out), "--figure", str(out) + ".png", "--quiet"]


def shards(cfg, cache: Path, out: Path) -> str:
    code = "import sys; from ntk_bridge.commands.cli import main; raise SystemExit(main(sys.argv[1:]))"
    procs = [subprocess.Popen([sys.executable, "-c", code, *cli_args(cfg, cache, out), "--shard", f"{k}/2"], cwd=ROOT,
                              stdout=subprocess.DEVNULL) for k in range(2)]
    assert all(p.wait() == 0 for p in procs)
    return regime_map.compute(cfg, cache, progress=False).to_csv(index=False)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--draws", type=int, default=4)
    args = p.parse_args()
    import distributed

    say = Report(None)
    cfg = config(args.draws)
    say(f"regime map: {len(regime_map.units(cfg))} units; {load()}")
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    runners = {
        "serial": lambda cache, out: regime_map.compute(cfg, cache, False).to_csv(index=False),
        "workers2": lambda cache, out: regime_map.compute(cfg, cache, False, GridOptions(workers=2)).to_csv(index=False),
        "dask2": lambda cache, out: regime_map.compute(cfg, cache, False, GridOptions(
            scheduler=cluster.scheduler_address)).to_csv(index=False),
        "shards2": lambda cache, out: shards(cfg, cache, out),
    }
    times: dict[str, list[float]] = {k: [] for k in runners}
    want = None
    try:
        for r in range(args.repeats):
            for name, runner in runners.items():
                with tempfile.TemporaryDirectory() as tmp:
                    before = load()
                    start = time.perf_counter()
                    got = runner(Path(tmp) / "cache", Path(tmp) / "out")
                    times[name].append(time.perf_counter() - start)
                    want = got if want is None else want
                    assert got == want, f"{name}: the frame differs from the serial one"
                    say(f"round {r} {name:9s} {times[name][-1]:7.2f} s   before: {before}   after: {load()}")
    finally:
        cluster.close()
    for name, ts in times.items():
        say(f"{name:9s} median {statistics.median(ts):7.2f} s  (min {min(ts):.2f}, max {max(ts):.2f}, {len(ts)} runs)")


if __name__ == "__main__":
    main()
