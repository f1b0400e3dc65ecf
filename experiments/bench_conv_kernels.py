"""Benchmark: the CNN-GAP conv kernel engine (ntk_bridge.engine.conv_engine) against neural-tangents.

Network: [Conv 3x3 SAME + Relu] x L + GlobalAvgPool + Dense, infinite channels, NTK and NNGP.
  A  neural-tangents: ``jax.jit(kernel_fn)`` of the depth-8 network only (ntk_bridge.reference.conv,
     via nt_backend.stax()), float64, in t x t blocks (the whole set where it fits); for a set with
     itself only the upper blocks are computed and mirrored (as a competent user would);
  B  the engine, float64: ALL depths 1..8 from one pass (ConvKernel; a set with itself as its
     upper triangle of pairs);
  C  the engine, float32 (the same), with its largest relative error against B over depths 1..8.
For each image size, two workloads: the Gram of one set with itself (n x n) and two different sets
(n1 x n2). Every repeat runs A, B, C in turn, and A once more at the end (A-B-A), after one
untimed call per variant on the same workload (compiles every shape it uses; printed as "first call"). Reported: medians with min and max
of wall seconds, CPU seconds (process time, both cores), kernel entries per second (n1 n2 / wall
s; the full matrix produced), and the speed-up over A.

The machine's elementwise limit is measured in the same run: the rate of one fused elementwise
pass y = a x + b over an array the size of a chunk's state (entries per second, float64 and
float32), and of the fast arc-cosine alone. A layer of the engine is two stencils (each two
separable shifted-add passes), then two fused ReLU passes writing Kr and Kr + Tr, each with its own
arc-cosine. Its rate in entry-layers per second (pairs x (H W)^2 x L / s) is printed as a fraction
of the axpy rate and of the arc-cosine rate. The engine runs at its default chunk
(conv_engine.default_chunk) unless --chunk is given; neural-tangents at the block size that was its
fastest in bench_conv_chunk.py's sweep (experiments/results/bench/chunk_sweep.txt).

    nice -n 10 .venv/bin/python experiments/bench_conv_kernels.py \
        --out experiments/results/bench/bench_conv_kernels.txt
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from bench_common import Report, finish, int_tuple, load, out_path  # noqa: E402

DEPTH = 8


@dataclass(frozen=True)
class BenchConfig:
    """Sizes, set sizes per image size (self n; cross n1, n2), neural-tangents block size (its fastest in
    experiments/results/bench/chunk_sweep.txt), engine chunk (empty: the engine's default)."""

    sizes: tuple[int, ...] = (7, 14, 28)
    n_self: tuple[int, ...] = (64, 32, 8)
    n_cross: tuple[int, ...] = (32, 16, 4)
    nt_tile: tuple[int, ...] = (8, 8, 4)
    chunk: tuple[int, ...] = ()
    repeats: int = 3


@dataclass
class Row:
    size: int
    workload: str
    variant: str
    n1: int
    n2: int
    compile_s: float
    wall_median: float
    wall_min: float
    wall_max: float
    cpu_median: float
    entries_per_s: float
    speedup_vs_nt: float = float("nan")
    cpu_speedup_vs_nt: float = float("nan")
    f32_max_rel_err: float = float("nan")
    entry_layers_per_s: float = float("nan")
    load: str = ""
    walls: list = field(default_factory=list)


def images(seed: int, n: int, s: int) -> np.ndarray:
    """n flattened s x s images, centred per image, on the sphere of radius s."""
    x = np.random.default_rng(seed).standard_normal((n, s * s))
    x -= x.mean(axis=1, keepdims=True)
    return x * (s / np.linalg.norm(x, axis=1, keepdims=True))


def nt_variant(s: int, tile: int):
    """A: neural-tangents' depth-8 kernel_fn, jitted, in tile x tile blocks (upper blocks for x2 None)."""
    import jax

    from ntk_bridge.engine.precision import float64
    from ntk_bridge.reference.conv import cnn_gap_kernel_fn

    with float64():
        kfn = jax.jit(cnn_gap_kernel_fn(DEPTH), static_argnames="get")

    def run(x1, x2):
        same = x2 is None
        a = x1.reshape(-1, s, s, 1)
        b = a if same else x2.reshape(-1, s, s, 1)
        theta = np.empty((len(a), len(b)))
        with float64():
            for i in range(0, len(a), tile):
                for j in range(i if same else 0, len(b), tile):
                    t = np.asarray(kfn(a[i:i + tile], b[j:j + tile], get="ntk"))
                    theta[i:i + tile, j:j + tile] = t
                    if same:
                        theta[j:j + tile, i:i + tile] = t.T
        return {DEPTH: theta}

    return run


def engine_variant(s: int, chunk: int | None, dtype: str):
    """B / C: the engine, all depths 1..8 in one pass (``chunk`` None: the engine's default)."""
    from ntk_bridge.engine.conv_kernels import ConvSpec, engine_kernels

    spec = ConvSpec(image_size=s, depths=tuple(range(1, DEPTH + 1)), tile=chunk, dtype=dtype)

    def run(x1, x2):
        out = engine_kernels(spec, x1, x2)
        return {d: out[d].theta for d in out} | {("k", d): out[d].k for d in out}

    return run


def chunk_of(cfg: BenchConfig, k: int, dtype: str) -> int:
    """The engine's pairs per step at size index ``k``: the configured one, or the engine's default."""
    import jax

    from ntk_bridge.engine.conv_engine import default_chunk

    if cfg.chunk:
        return cfg.chunk[k]
    return default_chunk(cfg.sizes[k] ** 2, dtype, jax.devices()[0].platform, len(jax.local_devices()))


def timed(fn, *args):
    """(wall s, CPU s, result) of one call."""
    c0, w0 = time.process_time(), time.perf_counter()
    res = fn(*args)
    return time.perf_counter() - w0, time.process_time() - c0, res


def elementwise_limits(say, shape, dtypes=("float64", "float32")) -> dict:
    """Entries per second of a fused y = a x + b and of the fast arc-cosine over ``shape`` (min of 5)."""
    import jax
    import jax.numpy as jnp

    from ntk_bridge.engine.fast_math import arccos
    from ntk_bridge.engine.precision import float64

    out = {}
    with float64():
        for dt in dtypes:
            x = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, shape).astype(dt))
            for name, f in (("axpy", lambda v: v * 1.5 + 0.25), ("arccos", arccos)):
                g = jax.jit(f)
                g(x).block_until_ready()
                best = min(timed(lambda: g(x).block_until_ready())[0] for _ in range(20))
                out[(name, dt)] = x.size / best
                say(f"  elementwise limit: {name:6s} {dt}: {x.size / best:.3g} entries/s "
                    f"({best / x.size * 1e9:.2f} ns/entry, {x.size} entries = one chunk's state, min of 20)")
    return out


def bench_size(say, cfg: BenchConfig, k: int) -> list[Row]:
    s = cfg.sizes[k]
    rows = []
    variants = {"A neural-tangents f64 depth 8": nt_variant(s, cfg.nt_tile[k]),
                "B engine f64 depths 1-8": engine_variant(s, chunk_of(cfg, k, "float64"), "float64"),
                "C engine f32 depths 1-8": engine_variant(s, chunk_of(cfg, k, "float32"), "float32")}
    for workload, (x1, x2) in (("self", (images(0, cfg.n_self[k], s), None)),
                               ("cross", (images(1, cfg.n_cross[k], s), images(2, cfg.n_cross[k], s)))):
        n1, n2 = len(x1), len(x1) if x2 is None else len(x2)
        say(f"\n{s}x{s}, {workload}: {n1} x {n2} images; {load()}")
        comp, walls, cpus, results = {}, {v: [] for v in variants}, {v: [] for v in variants}, {}
        for v, fn in variants.items():                 # untimed first call: compiles every shape it uses
            comp[v] = timed(fn, x1, x2)[0]
        order = list(variants) * cfg.repeats + [next(iter(variants))]
        for v in order:
            w, c, res = timed(variants[v], x1, x2)
            walls[v].append(w)
            cpus[v].append(c)
            results[v] = res
        ref = results["A neural-tangents f64 depth 8"][DEPTH]
        e64, e32 = results["B engine f64 depths 1-8"], results["C engine f32 depths 1-8"]
        off = ~np.eye(n1, dtype=bool) if x2 is None else np.ones(ref.shape, bool)
        rel = np.abs(e64[DEPTH] - ref) / np.abs(ref)
        f32_err = float(max(np.max(np.abs(e32[key] - e64[key]) / np.abs(e64[key])) for key in e64))
        say(f"  engine f64 vs neural-tangents, Theta at depth 8: max relative difference {rel[off].max():.2e}"
            + (f" off the diagonal, {rel[~off].max():.2e} on it (an image with itself: rho = 1 exactly in the "
               "engine, 1 - O(1e-16) in neural-tangents, which arccos amplifies)" if x2 is None else "")
            + f"; float32 vs float64, all depths, Theta and K: max relative error {f32_err:.2e}")
        nt_med = statistics.median(walls["A neural-tangents f64 depth 8"])
        nt_cpu = statistics.median(cpus["A neural-tangents f64 depth 8"])
        pairs = n1 * (n1 + 1) // 2 if x2 is None else n1 * n2
        for v in variants:
            med = statistics.median(walls[v])
            row = Row(s, workload, v, n1, n2, comp[v], med, min(walls[v]), max(walls[v]),
                      statistics.median(cpus[v]), n1 * n2 / med, nt_med / med, nt_cpu / statistics.median(cpus[v]),
                      f32_err if v.startswith("C") else float("nan"),
                      pairs * (s * s) ** 2 * DEPTH / med if not v.startswith("A") else float("nan"), load(), walls[v])
            rows.append(row)
            say(f"  {v:32s} first call {row.compile_s:6.2f} s | wall median {med:7.3f} s (min {row.wall_min:.3f}, "
                f"max {row.wall_max:.3f}, n={len(walls[v])}) | CPU {row.cpu_median:7.3f} s | "
                f"{row.entries_per_s:9.1f} entries/s | x{row.speedup_vs_nt:5.2f} vs A (CPU x{row.cpu_speedup_vs_nt:5.2f})"
                + (f" | {row.entry_layers_per_s:.3g} entry-layers/s" if row.entry_layers_per_s == row.entry_layers_per_s
                   else ""))
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    d = BenchConfig()
    p.add_argument("--sizes", default=",".join(map(str, d.sizes)), help="image sizes (default %(default)s)")
    p.add_argument("--n-self", default=",".join(map(str, d.n_self)), help="set size per image size, Gram of a set "
                   "with itself (default %(default)s)")
    p.add_argument("--n-cross", default=",".join(map(str, d.n_cross)), help="n1 = n2 per image size, two sets "
                   "(default %(default)s)")
    p.add_argument("--nt-tile", default=",".join(map(str, d.nt_tile)), help="neural-tangents block size per image "
                   "size (default %(default)s)")
    p.add_argument("--chunk", default="auto", help="engine pairs per step per image size, or 'auto': the "
                   "engine's default (conv_engine.default_chunk; default %(default)s)")
    p.add_argument("--repeats", type=int, default=d.repeats, help="A-B-C rounds (A once more at the end)")
    p.add_argument("--out", default=None, help="also write the report to this .txt (and the rows to .json)")
    args = p.parse_args(argv)
    lists = [int_tuple(getattr(args, a), f"--{a.replace('_', '-')}", "7,14")
             for a in ("sizes", "n_self", "n_cross", "nt_tile")]
    lists.append(() if args.chunk == "auto" else int_tuple(args.chunk, "--chunk", "32,8,1"))
    cfg = BenchConfig(*lists, repeats=args.repeats)
    out = out_path(args.out)
    say = Report(out)
    import jax

    say(f"bench_conv_kernels: CNN-GAP kernels, {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}; "
        f"JAX {jax.__version__} on {jax.devices()[0].platform} ({len(jax.local_devices())} device(s)); {load()}")
    say(f"config: {cfg}")
    rows = []
    for k, s in enumerate(cfg.sizes):
        rows += bench_size(say, cfg, k)
        chunk = chunk_of(cfg, k, "float64")
        say(f"  (chunk state {chunk} pairs x {(s * s) ** 2} entries in float64, {chunk_of(cfg, k, 'float32')} "
            "in float32)")
        lim = elementwise_limits(say, (s * s, s * s, chunk))
        for r in rows:
            if r.size == s and r.variant[0] in "BC":
                dt = "float64" if r.variant[0] == "B" else "float32"
                say(f"  {r.workload:5s} {r.variant:26s}: {r.entry_layers_per_s:.3g} entry-layers/s = "
                    f"{r.entry_layers_per_s / lim[('axpy', dt)]:.1%} of one axpy pass, "
                    f"{r.entry_layers_per_s / lim[('arccos', dt)]:.1%} of one arccos pass")
    say("\nsummary: speed-up of the engine (all depths 1-8) over neural-tangents' depth-8-only call, from the "
        "medians of wall time and of CPU time (the CPU ratio is the steadier one on a loaded machine)")
    for r in rows:
        if r.variant[0] != "A":
            say(f"  {r.size:2d}x{r.size:<2d} {r.workload:5s} {r.variant:26s} wall x{r.speedup_vs_nt:6.2f}  "
                f"CPU x{r.cpu_speedup_vs_nt:6.2f}  ({r.entries_per_s:.1f} entries/s wall)"
                + (f"  float32 max rel. error vs float64 {r.f32_max_rel_err:.1e}" if r.variant[0] == "C" else ""))
    finish(say, out, cfg, rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
