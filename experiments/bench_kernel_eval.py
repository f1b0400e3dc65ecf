"""Benchmark: points per second of kernel evaluation, FC (all depths in one pass) and conv.

FC: the fully connected ReLU NTK and head kernel for depths 1,2,4,...,64 from one pass of the
layer recursion (ntk_bridge.engine.fc.depth_sweep), for an n x n Gram matrix of random inputs on the
sphere of radius sqrt(196) (14x14 images), computed in row tiles of --fc-tile points so that the
working set is 2 x depths x tile x n x 8 bytes plus the recursion's temporaries.

Conv: [Conv 3x3 + Relu] x depth + GlobalAvgPool + Dense (neural-tangents, jit), evaluated in
--conv-tile x --conv-tile point blocks (ntk_bridge.studies.kernel_fewshot.conv_kernel_eval); its cost per
pair grows like (H W)^2 (the full spatial covariance), so it is timed at 7x7 and 14x14.

"points per second" = n / seconds for the whole n x n Gram matrix (all depths for FC); the
kernel entries per second (n^2 / seconds) are printed beside it. Compilation is timed apart.

    .venv/bin/python experiments/bench_kernel_eval.py [--fc-n 2000] [--conv-n 96]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402


def bench_fc(n: int, tile: int, depths: tuple[int, ...]) -> dict:
    from ntk_bridge.engine.fc import depth_sweep
    from ntk_bridge.engine.spec import NetSpec, to_sphere

    x = to_sphere(np.random.default_rng(0).standard_normal((n, 196)))
    net = NetSpec(depth=max(depths))
    start = time.perf_counter()
    diag_sum = 0.0
    for i in range(0, n, tile):
        block = depth_sweep(net, x[i:i + tile], x, depths=depths)      # (tile, n) per depth
        diag_sum += float(np.trace(block[max(depths)].k[:, i:i + tile]))
    sec = time.perf_counter() - start
    mb = 2 * len(depths) * min(tile, n) * n * 8 / 2 ** 20
    return {"kernel": "fc", "n": n, "tile": tile, "depths": len(depths), "seconds": sec,
            "points_per_s": n / sec, "entries_per_s": n * n / sec, "tile_mb": mb,
            "check": diag_sum / n}


def bench_conv(n: int, tile: int, size: int, depth: int) -> dict:
    from ntk_bridge.engine.spec import to_sphere
    from ntk_bridge.studies.kernel_fewshot import conv_kernel_eval

    x = to_sphere(np.random.default_rng(1).standard_normal((n, size * size)))
    conv = conv_kernel_eval((depth,), size, tile)
    t0 = time.perf_counter()
    conv(x[:tile], x[:tile])                    # compile (one tile shape)
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    out = conv(x, x)[depth]
    sec = time.perf_counter() - t0
    cov_mb = tile * tile * (size * size) ** 2 * 8 / 2 ** 20
    return {"kernel": f"conv{size}x{size}", "n": n, "tile": tile, "depths": 1, "seconds": sec,
            "compile_s": compile_s, "points_per_s": n / sec, "entries_per_s": n * n / sec,
            "tile_mb": cov_mb, "check": float(np.mean(np.diag(out.k)))}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--fc-n", type=int, default=2000)
    p.add_argument("--fc-tile", type=int, default=500)
    p.add_argument("--conv-n", type=int, default=96)
    p.add_argument("--conv-tile", type=int, default=32)
    p.add_argument("--conv-sizes", default="7,14")
    p.add_argument("--conv-depth", type=int, default=1)
    a = p.parse_args(argv)
    depths = (1, 2, 4, 8, 16, 32, 64)
    rows = [bench_fc(a.fc_n, a.fc_tile, depths)]
    r = rows[-1]
    print(f"FC ReLU kernel, depths {','.join(map(str, depths))} in one pass, d=196: n={r['n']} points, "
          f"tile {r['tile']} rows x {r['n']} columns (~{r['tile_mb']:.0f} MB of kernels per tile): "
          f"{r['seconds']:.2f} s -> {r['points_per_s']:.0f} points/s, {r['entries_per_s']:.3g} entries/s "
          f"(all 7 depths; mean K(x,x) at L=64 = {r['check']:.6f}, expected 1)", flush=True)
    for size in (int(s) for s in a.conv_sizes.split(",") if s.strip()):
        n = a.conv_n if size <= 7 else max(a.conv_tile, a.conv_n // 3)
        r = bench_conv(n, a.conv_tile, size, a.conv_depth)
        rows.append(r)
        print(f"conv kernel [Conv3x3+Relu]x{a.conv_depth}+GAP+Dense on {size}x{size}: n={r['n']} points, tile "
              f"{r['tile']}x{r['tile']} points (~{r['tile_mb']:.0f} MB spatial covariance per tile), compile "
              f"{r['compile_s']:.1f} s, then {r['seconds']:.2f} s -> {r['points_per_s']:.1f} points/s, "
              f"{r['entries_per_s']:.3g} entries/s", flush=True)
    print(f"machine: {os.cpu_count()} cores visible, load average {os.getloadavg()[0]:.1f} (shared machine)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
