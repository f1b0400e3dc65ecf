"""Benchmark: the one-pass depth sweep against the strongest peers, in one run.

(Theta, K) of a ReLU network (W_std = sqrt 2, no biases, readout W_std = 1) for every depth 1..L
on n points of the sphere (d = 16, x2 = x1), float64, computed by

- ``nt-per-depth``: neural-tangents as the old benchmark used it: build the depth-l network and
  call its ``kernel_fn`` once per depth l = 1..L (O(L^2) layers; only at small n and L);
- ``nt-one-pass``: neural-tangents' own ``[Dense, Relu]`` layer kernel function, jitted once and
  applied layer by layer to its ``Kernel`` object, each depth read out by the jitted readout
  ``Dense`` (O(L) layers: the strongest way to do the sweep with neural-tangents);
- ``numpy-one-pass``: the arc-cosine recursion in plain numpy, written here independently of
  ntk_bridge (whole-matrix operations, rho = 1 on the diagonal);
- ``jax-jit-step``: the same recursion with one jitted float64 XLA layer step (the alternative
  implementation considered for ntk_bridge);
- ``ntk_bridge``: ``ntk_bridge.engine.fc.depth_sweep``.

Every timed method is first called once (reported as ``first call``: jit compilation for the
JAX methods, warm-up otherwise), then run ``repeats`` times in A-B-A order (the order of the
methods is reversed on every other repeat, so load drifts hit all methods alike); the table gives
the median, min and max wall time, the median CPU time of the process (CPU/wall > 1 means more
than one thread, < 1 that other jobs took the cores) and the ratio peer / ntk_bridge of the wall
medians and of the CPU medians. Every peer's kernels are compared
with ntk_bridge's at every depth (max abs difference, all entries and off the diagonal:
neural-tangents' own diagonal carries arccos rounding of ~1e-8 per layer). The load average is
printed at the start, per size and at the end.

    python experiments/bench_depth_sweep.py \\
        [--points 100,200,400,800,1600] [--depths 32,256] [--out experiments/results/bench/bench_depth_sweep.txt]
"""

from __future__ import annotations

import argparse
import math
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from bench_common import Report, finish, int_tuple, load, out_path  # noqa: E402  (experiments/ is on sys.path)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ntk_bridge.engine.fc import depth_sweep
from ntk_bridge.engine.spec import NetSpec, to_sphere
from ntk_bridge.errors import BridgeError, require  # noqa: E402
from ntk_bridge.reference.stax import nt_kernels

METHODS = ("nt-per-depth", "nt-one-pass", "numpy-one-pass", "jax-jit-step", "ntk_bridge")


@dataclass(frozen=True)
class BenchConfig:
    """Sizes of the benchmark. ``max_points_by_depth``: the largest n run at each L (the outputs
    alone take 16 L n^2 bytes per method); nt-per-depth runs only for n <= per_depth_max_points
    and L <= per_depth_max_depth, once (it costs O(L^2) layers)."""

    points: tuple[int, ...] = (100, 200, 400, 800, 1600)
    depths: tuple[int, ...] = (32, 256)
    max_points_by_depth: tuple[tuple[int, int], ...] = ((32, 1600), (256, 400))
    d: int = 16
    seed: int = 0
    per_depth_max_points: int = 200
    per_depth_max_depth: int = 32

    def __post_init__(self):
        require(len(self.points) > 0 and min(self.points) >= 2, "--points: give sizes >= 2")
        require(len(self.depths) > 0 and min(self.depths) >= 1, "--depths: give depths >= 1")
        require(self.d >= 1, "--d must be >= 1")

    def repeats(self, n: int, depth: int) -> int:
        """Timed repeats per method: 9 up to n^2 L = 400^2 * 32, else 5 (the largest sizes)."""
        return 9 if n * n * depth <= 400 ** 2 * 32 else 5

    def max_points(self, depth: int) -> int:
        return dict(self.max_points_by_depth).get(depth, max(self.points))


# ----------------------------------------------------------------------------- peers

def numpy_one_pass(x: np.ndarray, depth: int, spec: NetSpec) -> list[tuple[np.ndarray, np.ndarray]]:
    """[(Theta_l, K_l) for l = 1..depth] of a ReLU network on x (n, d), x2 = x, in plain numpy.

    Sigma_1 = W^2 x x^T / d + b^2, ntk_1 = Sigma_1; per layer rho = Sigma / sqrt(diag diag^T),
    t = arccos rho, E = sqrt(q q^T) (sin t + (pi - t) cos t) / (2 pi), Edot = (pi - t) / (2 pi);
    K = Wr^2 E + br^2, Theta = K + Wr^2 ntk Edot; Sigma <- W^2 E + b^2, ntk <- Sigma + W^2 ntk Edot.
    """
    w2, b2, rw2, rb2 = spec.W_std ** 2, spec.b_std ** 2, spec.readout_W_std ** 2, spec.readout_b_std ** 2
    sigma = w2 * (x @ x.T) / x.shape[1] + b2
    ntk = sigma.copy()
    out = []
    for _ in range(depth):
        q = np.sqrt(np.diag(sigma))
        norm = np.outer(q, q)
        rho = np.clip(sigma / norm, -1.0, 1.0)
        np.fill_diagonal(rho, 1.0)
        t = np.arccos(rho)
        e = norm * (np.sqrt(1.0 - rho ** 2) + (np.pi - t) * rho) / (2 * np.pi)
        ntk_act = ntk * (np.pi - t) / (2 * np.pi)
        k = rw2 * e + rb2
        out.append((k + rw2 * ntk_act, k))
        sigma = w2 * e + b2
        ntk = sigma + w2 * ntk_act
    return out


def make_nt_one_pass(spec: NetSpec) -> Callable:
    """neural-tangents used in one pass: returns ``run(x, depth) -> [(Theta_l, K_l)]`` (jax arrays).

    ``first = [Dense, Relu]`` on the inputs, then the jitted layer kernel function
    ``[Dense, Relu]`` applied to the previous ``Kernel``; the jitted readout ``Dense`` gives
    ``('ntk', 'nngp')`` at every depth.
    """
    import jax

    from ntk_bridge.engine.precision import float64
    from ntk_bridge.reference.compat import stax as _stax

    stax = _stax()
    b = spec.b_std if spec.b_std > 0 else None
    rb = spec.readout_b_std if spec.readout_b_std > 0 else None
    _, _, layer_fn = stax.serial(stax.Dense(1, W_std=spec.W_std, b_std=b), stax.Relu())
    _, _, readout_fn = stax.Dense(1, W_std=spec.readout_W_std, b_std=rb)
    layer = jax.jit(layer_fn)
    readout = jax.jit(lambda kern: readout_fn(kern, get=("ntk", "nngp")))

    def run(x, depth):
        with float64():
            return _run(x, depth)

    def _run(x, depth):
        kern = layer_fn(x, None, get=None)
        out = []
        for l in range(depth):
            out.append(tuple(readout(kern)))
            if l + 1 < depth:
                kern = layer(kern)
        jax.block_until_ready(out)
        return out

    return run


def make_jax_step(spec: NetSpec) -> Callable:
    """The numpy recursion with one jitted float64 XLA layer step; ``run(x, depth)`` as above.

    float64 is switched on only inside ``run`` (``jax.enable_x64(True)``, via ``nt_backend.float64``).
    """
    import jax
    import jax.numpy as jnp

    from ntk_bridge.engine.precision import float64 as enable_x64

    w2, b2, rw2, rb2 = spec.W_std ** 2, spec.b_std ** 2, spec.readout_W_std ** 2, spec.readout_b_std ** 2

    @jax.jit
    def step(sigma, ntk, eye):
        q = jnp.sqrt(jnp.diag(sigma))
        norm = q[:, None] * q[None, :]
        rho = jnp.where(eye, 1.0, jnp.clip(sigma / norm, -1.0, 1.0))
        t = jnp.arccos(rho)
        e = norm * (jnp.sqrt(1.0 - rho ** 2) + (jnp.pi - t) * rho) / (2 * jnp.pi)
        ntk_act = ntk * (jnp.pi - t) / (2 * jnp.pi)
        k = rw2 * e + rb2
        sigma = w2 * e + b2
        return sigma, sigma + w2 * ntk_act, k + rw2 * ntk_act, k

    def run(x, depth):
        with enable_x64():
            sigma = jnp.asarray(w2 * (x @ x.T) / x.shape[1] + b2)
            ntk, eye = sigma, jnp.eye(len(x), dtype=bool)
            out = []
            for _ in range(depth):
                sigma, ntk, theta, k = step(sigma, ntk, eye)
                out.append((theta, k))
            jax.block_until_ready(out)
        return out

    return run


def nt_per_depth(x: np.ndarray, depth: int, spec: NetSpec) -> list[tuple[np.ndarray, np.ndarray]]:
    """neural-tangents' kernel_fn of the rebuilt depth-l network, for l = 1..depth."""
    out = []
    for l in range(1, depth + 1):
        kern = nt_kernels(spec.with_depth(l), x)
        out.append((kern.theta, kern.k))
    return out


def ntk_bridge_sweep(x: np.ndarray, depth: int, spec: NetSpec) -> list[tuple[np.ndarray, np.ndarray]]:
    """``depth_sweep`` over depths 1..depth."""
    res = depth_sweep(spec, x, depths=range(1, depth + 1))
    return [(res[l].theta, res[l].k) for l in range(1, depth + 1)]


# ----------------------------------------------------------------------------- timing

@dataclass(frozen=True)
class Row:
    """One method at one (n, L): wall seconds (median, min, max over ``repeats``), the median
    process CPU seconds, the first call, and the max abs differences from ntk_bridge."""

    n: int
    depth: int
    method: str
    repeats: int
    median_s: float
    min_s: float
    max_s: float
    cpu_median_s: float
    first_call_s: float
    max_abs_diff: float
    max_abs_diff_offdiag: float
    ratio_min: float = math.nan       # per-round wall ratio peer / ntk_bridge, min and max over rounds
    ratio_max: float = math.nan


def timed(fn: Callable[[], list]) -> tuple[float, float, list]:
    """(wall seconds, process CPU seconds, result) of one call."""
    c0, t0 = time.process_time(), time.perf_counter()
    res = fn()
    return time.perf_counter() - t0, time.process_time() - c0, res


def max_diffs(ours: list, theirs: list) -> tuple[float, float]:
    """Max |difference| of Theta and K over all depths: all entries, off-diagonal entries."""
    full = off = 0.0
    n = ours[0][0].shape[0]
    offm = ~np.eye(n, dtype=bool)
    for (t1, k1), (t2, k2) in zip(ours, theirs):
        for a, b in ((t1, np.asarray(t2)), (k1, np.asarray(k2))):
            diff = np.abs(a - b)
            full, off = max(full, float(diff.max())), max(off, float(diff[offm].max()))
    return full, off


def bench_size(x: np.ndarray, depth: int, runners: dict, repeats: int) -> list[Row]:
    """Time every method in ``runners`` (name -> fn(x, depth)) at one size, A-B-A order."""
    names = list(runners)
    first, walls, cpus = {}, {m: [] for m in names}, {m: [] for m in names}
    ref = None
    for m in names:
        wall, _, res = timed(lambda: runners[m](x, depth))
        first[m] = wall
        if m == "ntk_bridge":
            ref = res
    diffs = {}
    for r in range(repeats):
        for m in (names if r % 2 == 0 else names[::-1]):
            wall, cpu, res = timed(lambda: runners[m](x, depth))
            walls[m].append(wall)
            cpus[m].append(cpu)
            if m not in diffs:
                diffs[m] = max_diffs(ref, res)
            del res
    per_round = {m: np.asarray(walls[m]) / np.asarray(walls["ntk_bridge"]) for m in names}
    return [Row(len(x), depth, m, repeats, float(np.median(walls[m])), float(np.min(walls[m])),
                float(np.max(walls[m])), float(np.median(cpus[m])), first[m], *diffs[m],
                float(per_round[m].min()), float(per_round[m].max()))
            for m in names]


def bench_per_depth(x: np.ndarray, depth: int, spec: NetSpec, ref: list) -> Row:
    """nt-per-depth once (no separate first call: every depth is a new network)."""
    wall, cpu, res = timed(lambda: nt_per_depth(x, depth, spec))
    return Row(len(x), depth, "nt-per-depth", 1, wall, wall, wall, cpu, float("nan"), *max_diffs(ref, res))


# ----------------------------------------------------------------------------- report

def format_rows(rows: list[Row]) -> list[str]:
    """Table lines for one (n, L): every method and ntk_bridge's speed ratio against it."""
    ours_row = next(r for r in rows if r.method == "ntk_bridge")
    ours, ours_cpu = ours_row.median_s, ours_row.cpu_median_s
    lines = []
    for r in rows:
        ratio = "" if r.method == "ntk_bridge" else f"{r.median_s / ours:7.2f}x"
        cpu_ratio = "" if r.method == "ntk_bridge" else f"{r.cpu_median_s / ours_cpu:6.2f}x"
        first = "      -" if math.isnan(r.first_call_s) else f"{r.first_call_s:7.3f}"
        lines.append(f"  {r.method:<15} {r.median_s:9.4f} [{r.min_s:8.4f}, {r.max_s:8.4f}] "
                     f"{r.cpu_median_s / r.median_s:5.2f} {first} {r.repeats:3d} {ratio:>8} {cpu_ratio:>7}"
                     f"   {r.max_abs_diff:8.1e} {r.max_abs_diff_offdiag:8.1e}"
                     + ("" if math.isnan(r.ratio_min) or r.method == "ntk_bridge"
                        else f"   per-round ratio [{r.ratio_min:.2f}-{r.ratio_max:.2f}]"))
    return lines


HEADER = ("  method          median s [     min,      max] cpu/w  first  rep peer/ours (cpu)"
          "   |diff|  |diff| off-diag (vs ntk_bridge)")


def parse_args(argv) -> tuple[BenchConfig, Path | None]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--points", default="100,200,400,800,1600")
    p.add_argument("--depths", default="32,256")
    p.add_argument("--d", type=int, default=16)
    p.add_argument("--out", help="also write the printed text here (.txt) and the rows next to it (.json)")
    a = p.parse_args(argv)
    points = int_tuple(a.points, "--points / --depths", "100,200")
    depths = int_tuple(a.depths, "--points / --depths", "100,200")
    out = out_path(a.out)
    return BenchConfig(points=points, depths=depths, d=a.d), out


def main(argv=None) -> int:
    try:
        config, out = parse_args(argv)
    except BridgeError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    say = Report(out)
    spec = NetSpec()
    say(f"command: python experiments/bench_depth_sweep.py {' '.join(sys.argv[1:])}")
    say(f"start {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}; {load()}; "
        f"{platform.processor() or platform.machine()}; numpy {np.__version__}")
    say(f"ReLU network {spec.describe()}, float64, d = {config.d}, x2 = x1; times in seconds")
    runners = {"nt-one-pass": make_nt_one_pass(spec),
               "numpy-one-pass": lambda x, L: numpy_one_pass(x, L, spec),
               "jax-jit-step": make_jax_step(spec),
               "ntk_bridge": lambda x, L: ntk_bridge_sweep(x, L, spec)}
    nt_kernels(spec, to_sphere(np.ones((2, config.d)) + np.eye(2, config.d)))  # import neural-tangents
    rows: list[Row] = []
    for depth in config.depths:
        for n in (m for m in config.points if m <= config.max_points(depth)):
            x = to_sphere(np.random.default_rng(config.seed + n).standard_normal((n, config.d)))
            say(f"\nn = {n} points, depths 1..{depth}; {load()}")
            say(HEADER)
            size_rows = bench_size(x, depth, runners, config.repeats(n, depth))
            if n <= config.per_depth_max_points and depth <= config.per_depth_max_depth:
                ref = ntk_bridge_sweep(x, depth, spec)
                size_rows.insert(0, bench_per_depth(x, depth, spec, ref))
                del ref
            for line in format_rows(size_rows):
                say(line)
            rows += size_rows
    finish(say, out, config, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
