"""Closed-form predictors before and after batching, per task draw, at 40 and 160 training tasks.

"Before" is ntk_bridge/closed_form/predictors.py as of commit 22b631c (one eigendecomposition per task and
per use, outer operators formed as matrices, the Meta-NTK built from a dense block-diagonal A),
loaded from git; "after" is the current module (one batched eigh for all support kernels,
outer operators applied to their right-hand sides, A applied to rows). Both compute what one
depth of one draw of the depth study / regime map needs: MTL-B, MTL-A, ANIL, MAML, head-only
and the ANIL / MAML adaptation-only parts. Runs alternate A-B-A...; medians with min and max,
the load average before and after, the first (warm-up) call reported separately, and the
largest relative difference between the two.

    python experiments/bench_predictors.py [--repeats 5] [--tasks 40,160] [--depth 16]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
BEFORE_COMMIT = "22b631c"
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


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def bench(n_tasks: int, depth: int, repeats: int, before, after) -> dict:
    from ntk_bridge.closed_form.inner_loop import InnerLoop
    from ntk_bridge.closed_form.tasks import FamilyConfig, make_tasks
    from ntk_bridge.engine.fc import depth_sweep
    from ntk_bridge.engine.spec import NetSpec

    tasks = make_tasks(FamilyConfig(n_train_tasks=n_tasks, n_test_tasks=10), seed=0)
    gram = depth_sweep(NetSpec(depth=depth), tasks.points, depths=[depth])[depth]
    inner = InnerLoop("flow", tau=1.0)
    first = {name: timed(lambda m=m: one_draw(m, tasks, gram, inner))[0] for name, m in (("before", before), ("after", after))}
    times = {"before": [], "after": []}
    results = {}
    for r in range(repeats):
        order = (("before", before), ("after", after)) if r % 2 == 0 else (("after", after), ("before", before))
        for name, module in order:
            t, results[name] = timed(lambda m=module: one_draw(m, tasks, gram, inner))
            times[name].append(t)
    diff = max(float(np.abs(a - b).max() / max(np.abs(a).max(), 1e-300)) for a, b in zip(results["before"], results["after"]))
    return {"tasks": n_tasks, "points": tasks.points.shape[0], "first": first, "times": times, "max_rel_diff": diff}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--tasks", default="40,160", help="training-task counts (default 40,160)")
    p.add_argument("--depth", type=int, default=16)
    p.add_argument("--blas-threads", type=int, default=1,
                   help="BLAS threads for both sides (default 1: on a loaded 2-core machine a 2-thread "
                        "OpenBLAS eigh was measured 10-20x slower)")
    args = p.parse_args()
    sys.path.insert(0, str(ROOT))
    from threadpoolctl import threadpool_limits

    from ntk_bridge.closed_form import predictors as after

    before = load_before()
    threadpool_limits(limits=args.blas_threads, user_api="blas")
    print(f"load average before: {os.getloadavg()}; {os.cpu_count()} CPUs, {args.blas_threads} BLAS thread(s); depth {args.depth}; "
          f"{args.repeats} repeats per side, alternating; 10 test tasks, n_q = n_s = 5")
    print(f"{'tasks':>5s} {'points':>6s} | {'before median [min, max] s':>30s} | {'after median [min, max] s':>30s} | "
          f"{'speed-up':>8s} | first call before / after s | max rel diff")
    for n in (int(v) for v in args.tasks.split(",")):
        r = bench(n, args.depth, args.repeats, before, after)
        b, a = np.array(r["times"]["before"]), np.array(r["times"]["after"])
        print(f"{n:5d} {r['points']:6d} | {np.median(b):12.3f} [{b.min():.3f}, {b.max():.3f}]      | "
              f"{np.median(a):12.3f} [{a.min():.3f}, {a.max():.3f}]      | {np.median(b) / np.median(a):7.2f}x | "
              f"{r['first']['before']:.3f} / {r['first']['after']:.3f}             | {r['max_rel_diff']:.1e}")
    print(f"load average after: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
