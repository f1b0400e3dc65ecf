"""Closed-form predictors per task draw against the Cholesky floor, at 40 and 160 training tasks.

One draw is what one depth of one draw of the depth study / regime map needs: MTL-B, MTL-A, ANIL,
MAML, head-only and the ANIL / MAML adaptation-only parts (the seven predictors), at t = inf
(outer ridge 1e-6), flow inner loop. Three sides, alternated in one process (order reversed every
other round), one BLAS thread:

- ``before``: ntk_bridge/closed_form/predictors.py as of BEFORE_COMMIT (every outer solve by eigh),
  loaded from git;
- ``after``: the current module (Cholesky outer solves where they equal the eigh ones);
- ``floor``: three Cholesky solves (factor + solve, scipy) of the draw's three outer matrices
  Phi(ANIL) + ridge I, Phi(MAML) + ridge I and Theta_MTL + ridge I, with their right-hand sides:
  what no implementation of the seven predictors can avoid.

Printed: median [min-max] seconds per side, the ratios before / after and after / floor per round
(median [min-max]), the first (warm-up) call apart, the largest relative difference between before
and after, and the load average.

    python experiments/bench_predictors.py [--repeats 5] [--tasks 40,160] [--depth 16] [--quick]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
BEFORE_COMMIT = "76448a0"   # the code before issue 32
METHODS = ("mtl-b", "mtl-a", "anil", "maml", "head-only")


def load_before():
    """The predictors module of BEFORE_COMMIT, imported from a temporary file."""
    src = subprocess.run(["git", "-C", str(ROOT), "show", f"{BEFORE_COMMIT}:ntk_bridge/closed_form/predictors.py"],
                         check=True, capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp()) / "predictors_before.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("predictors_before", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module          # dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module


def one_draw(module, tasks, gram, inner):
    """Every prediction one depth of one draw needs, with ``module``'s predict / adaptation_only."""
    cfg = module.PredictorConfig(inner=inner, outer_ridge=1e-6)
    out = [module.predict(m, tasks, gram, cfg) for m in METHODS]
    out += [module.adaptation_only(m, tasks, gram, cfg) for m in ("anil", "maml")]
    return out


def floor_fn(tasks, gram, inner):
    """Three Cholesky solves of the draw's outer matrices (+ ridge I) with c right-hand sides."""
    from scipy.linalg import cho_factor, cho_solve

    from ntk_bridge.closed_form import predictors as P

    q, s = tasks.train_q, tasks.train_s
    mats = [P._phi(gram.theta, q, s, P.inner_blocks(kin, q, s, inner)) for kin in (gram.k, gram.theta)]
    z = tasks.train_z.reshape(-1)
    tid = np.repeat(np.arange(len(tasks.train)), tasks.train_z.shape[1])
    mats.append((gram.theta - gram.k)[np.ix_(z, z)] + (tid[:, None] == tid[None, :]) * gram.k[np.ix_(z, z)])
    c = tasks.train[0].y_query.shape[1]
    mats = [m + 1e-6 * np.eye(len(m)) for m in mats]
    rhs = [np.ones((len(m), c)) for m in mats]
    return lambda: [cho_solve(cho_factor(m), r) for m, r in zip(mats, rhs)]


def bench(n_tasks: int, depth: int, repeats: int, before, after) -> dict:
    from bench_common import alternate, ratio_stats

    from ntk_bridge.closed_form.inner_loop import InnerLoop
    from ntk_bridge.closed_form.tasks import FamilyConfig, make_tasks
    from ntk_bridge.engine.fc import depth_sweep
    from ntk_bridge.engine.spec import NetSpec

    tasks = make_tasks(FamilyConfig(n_train_tasks=n_tasks, n_test_tasks=10), seed=0)
    gram = depth_sweep(NetSpec(depth=depth), tasks.points, depths=[depth])[depth]
    inner = InnerLoop("flow", tau=1.0)
    fns = {"before": lambda: one_draw(before, tasks, gram, inner), "after": lambda: one_draw(after, tasks, gram, inner),
           "floor": floor_fn(tasks, gram, inner)}
    first, times = alternate(fns, repeats)
    a, b = fns["after"](), fns["before"]()
    diff = max(float(np.abs(x - y).max() / max(np.abs(y).max(), 1e-300)) for x, y in zip(a, b))
    return {"tasks": n_tasks, "points": tasks.points.shape[0], "first": first, "times": times, "max_rel_diff": diff,
            "speedup": ratio_stats(times["before"], times["after"]), "to_floor": ratio_stats(times["after"], times["floor"]),
            "before_to_floor": ratio_stats(times["before"], times["floor"])}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--tasks", default="40,160", help="training-task counts (default 40,160)")
    p.add_argument("--depth", type=int, default=16)
    p.add_argument("--quick", action="store_true", help="3 repeats")
    p.add_argument("--blas-threads", type=int, default=1,
                   help="BLAS threads for every side (default 1: on a loaded 2-core machine a 2-thread "
                        "OpenBLAS eigh was measured 10-20x slower)")
    args = p.parse_args()
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "experiments"))
    from threadpoolctl import threadpool_limits

    from ntk_bridge.closed_form import predictors as after

    before = load_before()
    threadpool_limits(limits=args.blas_threads, user_api="blas")
    repeats = 3 if args.quick else args.repeats
    print(f"bench_predictors: load average before: {os.getloadavg()}; {os.cpu_count()} CPUs, {args.blas_threads} BLAS "
          f"thread(s); depth {args.depth}; {repeats} rounds, alternating; 10 test tasks, n_q = n_s = 5; before = {BEFORE_COMMIT}")
    for n in (int(v) for v in args.tasks.split(",")):
        r = bench(n, args.depth, repeats, before, after)
        med = {k: float(np.median(v)) for k, v in r["times"].items()}
        sp, tf, bf = r["speedup"], r["to_floor"], r["before_to_floor"]
        print(f"{n:4d} tasks ({r['points']} points): before {med['before']:.4f} s, after {med['after']:.4f} s, "
              f"floor {med['floor']:.4f} s | speed-up before/after {sp[0]:.2f}x [{sp[1]:.2f}-{sp[2]:.2f}] | "
              f"after/floor {tf[0]:.2f}x [{tf[1]:.2f}-{tf[2]:.2f}] (before/floor {bf[0]:.2f}x [{bf[1]:.2f}-{bf[2]:.2f}]) | "
              f"first call before/after {r['first']['before']:.3f}/{r['first']['after']:.3f} s | max rel diff "
              f"{r['max_rel_diff']:.1e} | load {os.getloadavg()[0]:.2f}")
    print(f"load average after: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
