"""Benchmark: pairs per step for the conv kernel engine, and block size for neural-tangents' peer call.

Both sides of ``bench_conv_kernels.py`` stream a kernel matrix in pieces, and the piece size decides how
much of a step's state stays in the CPU's caches. This sweep measures, for every image size and dtype,
the engine's time per image pair at several chunk sizes P (pairs per step, ``conv_engine.gap_kernels``
``chunk``; all depths 1..8, two different sets), and neural-tangents' time per pair at several block sizes
t (its depth-8 kernel_fn on t x t blocks, float64), so that the speed bench runs both at their best.
It prints which P ``conv_engine.default_chunk`` picks (the rule the engine uses when no chunk is given).

Within one size, every repeat runs all P (and all t) in turn, the order reversed on every other repeat;
one untimed call per setting first (compiles). Reported: median (min, max) of wall milliseconds per pair,
and the memory of one engine step as XLA plans it (``memory_analysis().temp_size_in_bytes`` of the
compiled step, all depths), in MiB and in units of one state array (P (H W)^2 x bytes). Last, the whole
engine at its default chunk with its ReLU map as it is (two outputs as two fused passes, each with its own
arc-cosine) against the same map written as one expression whose two outputs share the arc-cosine,
alternately (ms per pair, float64; each repeat compiles its variant before timing it).

    nice -n 10 .venv/bin/python experiments/bench_conv_chunk.py \\
        --out experiments/results/bench/chunk_sweep.txt
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from bench_common import Report, finish, load, out_path  # noqa: E402
from bench_conv_kernels import DEPTH, images, nt_variant  # noqa: E402


@dataclass(frozen=True)
class Case:
    """One image size: the two sets' sizes, the engine chunk sizes and neural-tangents block sizes tried."""

    size: int
    n1: int
    n2: int
    chunks: tuple[int, ...]
    nt_tiles: tuple[int, ...]


@dataclass(frozen=True)
class SweepConfig:
    cases: tuple[Case, ...] = (Case(7, 32, 32, (16, 32, 64, 128, 256), (8, 16, 32)),
                               Case(14, 16, 16, (1, 2, 4, 8, 16, 32), (2, 4, 8, 16)),
                               Case(28, 4, 4, (1, 2, 4, 8), (1, 2, 4)))
    repeats: int = 5


@dataclass
class Row:
    size: int
    side: str
    setting: int
    ms_per_pair_median: float
    ms_per_pair_min: float
    ms_per_pair_max: float
    chosen_by_default: bool = False
    walls: list = field(default_factory=list)


def engine_call(size: int, chunk: int, dtype: str):
    from ntk_bridge.engine.conv_engine import gap_kernels
    from ntk_bridge.engine.precision import float64

    def run(x1, x2):
        with float64():
            gap_kernels(x1.reshape(-1, size, size), x2.reshape(-1, size, size), DEPTH, np.sqrt(2.0), dtype,
                        chunk=chunk)

    return run


def step_memory(size: int, chunk: int, dtype: str, layers: int = DEPTH) -> float:
    """XLA's planned temporary memory of one engine step (bytes), from the compiled step's memory_analysis."""
    from ntk_bridge.engine.conv_engine import compiled_pass
    from ntk_bridge.engine.precision import float64

    with float64():
        img, per_layer = np.zeros((size, size, chunk), dtype), np.ones((layers, size, size, chunk), dtype)
        step = compiled_pass(float(np.sqrt(2.0)), dtype, 1).lower(img, img, per_layer, per_layer, per_layer,
                                                                   per_layer, np.zeros(chunk, bool))
        return float(step.compile().memory_analysis().temp_size_in_bytes)


def memory_line(say, case: Case) -> None:
    """One line per dtype: XLA temp MiB per step at each P, and in units of one state array (P n^2 bytes)."""
    for dt in ("float64", "float32"):
        cells = []
        for p in case.chunks:
            temp = step_memory(case.size, p, dt)
            cells.append(f"{p:>3d}: {temp / 2 ** 20:7.1f} MiB = {temp / (p * case.size ** 4 * np.dtype(dt).itemsize):.1f}")
        say(f"  engine {dt} step memory (XLA temp; MiB = state arrays): " + "   ".join(cells))


def shared_relu_map(k, t, ra, rb, sa, sb, diag):
    """The ReLU map as one expression with two outputs sharing the arc-cosine (the form the engine avoids)."""
    from ntk_bridge.engine.conv_engine import _relu_terms

    pm, g = _relu_terms(k, ra, rb, sa, sb, diag)
    return g + pm * k, g + pm * (k + t)


@contextmanager
def relu_form(fn):
    """Within the block the engine traces ``fn`` as its ReLU map (a bench-only A/B of one design choice;
    compiled steps are dropped on entry and on exit)."""
    from ntk_bridge.engine import conv_engine

    original = conv_engine.relu_map
    conv_engine.compiled_pass.cache_clear()
    conv_engine.relu_map = fn
    try:
        yield
    finally:
        conv_engine.relu_map = original
        conv_engine.compiled_pass.cache_clear()


def relu_form_line(say, case: Case, repeats: int, dtype: str = "float64") -> None:
    """ms per pair of the whole engine at its default chunk with the ReLU map as it is (two outputs, two
    fused passes) and written with shared subexpressions (one expression, two outputs), alternately."""
    import jax

    from ntk_bridge.engine.conv_engine import default_chunk, relu_map

    p = default_chunk(case.size ** 2, dtype, jax.devices()[0].platform)
    x1, x2 = images(1, case.n1, case.size), images(2, case.n2, case.size)
    forms = {"two passes (engine)": relu_map, "shared": shared_relu_map}
    walls = {name: [] for name in forms}
    for r in range(repeats + 1):                                    # round 0 compiles, not counted
        for name in (list(forms) if r % 2 == 0 else list(forms)[::-1]):
            with relu_form(forms[name]):
                call = engine_call(case.size, p, dtype)
                call(x1, x2)                                        # compile inside the block
                t0 = time.perf_counter()
                call(x1, x2)
                if r:
                    walls[name].append((time.perf_counter() - t0) / (case.n1 * case.n2) * 1e3)
    say(f"  engine {dtype} P = {p}, ReLU map written as, ms per pair:  " + "   ".join(
        f"{name}: {statistics.median(w):.3f} ({min(w):.3f}-{max(w):.3f})" for name, w in walls.items()))


def sweep(say, case: Case, repeats: int) -> list[Row]:
    """Engine (float64, float32) over ``case.chunks`` and neural-tangents over ``case.nt_tiles``."""
    import jax

    from ntk_bridge.engine.conv_engine import default_chunk

    x1, x2 = images(1, case.n1, case.size), images(2, case.n2, case.size)
    pairs = case.n1 * case.n2
    sides = {f"engine {dt}": {p: engine_call(case.size, p, dt) for p in case.chunks} for dt in ("float64", "float32")}
    sides["neural-tangents float64 depth 8"] = {t: nt_variant(case.size, t) for t in case.nt_tiles}
    say(f"\n{case.size}x{case.size}: {case.n1} x {case.n2} images ({pairs} pairs), all depths 1-{DEPTH} "
        f"(neural-tangents: depth {DEPTH} only); {load()}")
    rows = []
    for side, calls in sides.items():
        for fn in calls.values():
            fn(x1, x2)
        walls = {k: [] for k in calls}
        for r in range(repeats):
            for k in (list(calls) if r % 2 == 0 else list(calls)[::-1]):
                t0 = time.perf_counter()
                calls[k](x1, x2)
                walls[k].append((time.perf_counter() - t0) / pairs * 1e3)
        auto = (default_chunk(case.size ** 2, side.split()[1], jax.devices()[0].platform)
                if side.startswith("engine") else None)
        cells = []
        for k, w in walls.items():
            rows.append(Row(case.size, side, k, statistics.median(w), min(w), max(w), k == auto, w))
            cells.append(f"{k:>3d}: {statistics.median(w):8.3f} ({min(w):.3f}-{max(w):.3f})" + ("*" if k == auto else ""))
        label = "P (pairs per step)" if side.startswith("engine") else "t (block t x t)"
        say(f"  {side:32s} ms per pair by {label}:  " + "   ".join(cells))
    memory_line(say, case)
    relu_form_line(say, case, repeats)
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=SweepConfig.repeats, help="rounds over all settings")
    p.add_argument("--out", default=None, help="also write the report to this .txt (and the rows to .json)")
    args = p.parse_args(argv)
    cfg = SweepConfig(repeats=args.repeats)
    out = out_path(args.out)
    say = Report(out)
    import jax

    say(f"bench_conv_chunk: CNN-GAP kernel piece sizes, {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}; "
        f"JAX {jax.__version__} on {jax.devices()[0].platform} ({len(jax.local_devices())} device(s)); {load()}")
    say(f"config: {cfg}")
    say("cells: median (min-max) wall ms per image pair over the repeats; * = conv_engine.default_chunk's choice")
    rows = []
    for case in cfg.cases:
        rows += sweep(say, case, cfg.repeats)
    finish(say, out, cfg, rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
