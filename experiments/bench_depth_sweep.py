"""Benchmark: one-pass depth sweep vs per-depth neural-tangents kernel_fn calls.

Computes (Theta, K) for every depth 1..L_max (default 256) on n points (default 200) both ways,
in one run, checks they agree, and prints the time of each and their ratio (goal: >= 50x).
The per-depth side costs O(L_max^2) layer evaluations: about 30 minutes on 2 cores for the
defaults (27 s for --max-depth 32).

    python experiments/bench_depth_sweep.py [--max-depth 256] [--points 200] [--d 16]
"""

import argparse
import time

import numpy as np

from ntk_bridge.kernels import NetSpec, depth_sweep, nt_kernels, to_sphere


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--max-depth", type=int, default=256)
    p.add_argument("--points", type=int, default=200)
    p.add_argument("--d", type=int, default=16)
    args = p.parse_args()
    x = to_sphere(np.random.default_rng(0).standard_normal((args.points, args.d)))
    depths = range(1, args.max_depth + 1)
    spec = NetSpec(depth=args.max_depth)

    nt_kernels(spec.with_depth(1), x[:2])                      # import neural-tangents / warm up
    t0 = time.perf_counter()
    ours = depth_sweep(spec, x, depths=depths)
    t_sweep = time.perf_counter() - t0

    from tqdm import tqdm

    t0 = time.perf_counter()
    worst = 0.0
    for depth in tqdm(depths, desc="per-depth kernel_fn", unit="depth"):
        ref = nt_kernels(spec.with_depth(depth), x)
        off = ~np.eye(len(x), dtype=bool)
        worst = max(worst, float(np.max(np.abs(ref.theta - ours[depth].theta)[off]) / (depth + 1)))
    t_nt = time.perf_counter() - t0

    print(f"depths 1..{args.max_depth} on {args.points} points (d={args.d}), ReLU, float64")
    print(f"  one-pass depth_sweep           : {t_sweep:8.3f} s")
    print(f"  per-depth neural-tangents calls: {t_nt:8.3f} s")
    print(f"  ratio                          : {t_nt / t_sweep:8.1f}x  (goal >= 50x)")
    print(f"  max off-diagonal |Theta diff| / (L+1): {worst:.2e}")


if __name__ == "__main__":
    main()
