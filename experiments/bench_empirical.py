"""Benchmark: the empirical NTK of ntk_bridge against neural-tangents' fastest working mode, in one run.

For each network and dtype, Theta(x, x) over n inputs (x2 = None, trace over the c outputs) by

- ``ntk_bridge``: :mod:`ntk_bridge.engine.empirical` as the project calls it: the per-layer formula
  (:func:`fc_ntk_and_head_ntk`, which also returns the head kernel K) for the FC networks, the jitted
  per-example Jacobian contraction (:func:`empirical_ntk`) for the Conv-4 and ResNet-12 backbones;
- ``nt-jc`` / ``nt-vp``: neural-tangents 0.6.5 ``empirical_ntk_fn(apply, trace_axes=(-1,),
  vmap_axes=0, implementation=JACOBIAN_CONTRACTION / NTK_VECTOR_PRODUCTS)`` under ``jax.jit`` (its
  best usage: per-example vmap, compiled); STRUCTURED_DERIVATIVES fails on JAX 0.10.2 and is left out.

Networks: the FC net 784-w-...-w-5 of :func:`ntk_bridge.engine.networks.fc_network` (ReLU, NTK
parameterisation) at depth 2 (w = 64, 256) and depth 8 (w = 256); the Conv-4 backbone
(:mod:`ntk_bridge.train.models`, eval-mode batch norm) on 28x28x1 images, channels 64 / 128, with a
dense 5-way head; the ResNet-12 backbone (``--resnet``: channels 16-32-64-128, 28x28x3, 8 images).

Every method is called once apart (``first``: compilation), then ``rounds`` times A-B-A (order
reversed every other round); ratio = peer / ntk_bridge per round (> 1: ntk_bridge faster), median
with min-max over rounds; the load average is printed per case. The largest relative difference
to nt-jc is printed (float64: must be ~1e-15).

    python experiments/bench_empirical.py [--quick] [--rounds 5] [--resnet] \\
        [--out experiments/results/bench/bench_empirical.txt]
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from bench_common import Report, alternate, finish, load, out_path, ratio_stats  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


@dataclass(frozen=True)
class BenchConfig:
    rounds: int = 5
    quick: bool = False
    resnet: bool = False
    fc_points: int = 64
    conv_points: int = 32


@dataclass(frozen=True)
class Row:
    case: str
    dtype: str
    first_s: dict
    median_s: dict
    ratio_vs_nt_best: tuple
    ratio_vs_nt_jc: tuple
    ratio_vs_nt_vp: tuple
    max_rel_diff: float
    load: str


def fc_case(depth: int, width: int, n: int, dtype):
    """(ours, apply, params, x) for the FC net 784-width^depth-5."""
    import jax

    from ntk_bridge.engine.empirical import fc_ntk_and_head_ntk
    from ntk_bridge.engine.networks import fc_network
    from ntk_bridge.engine.spec import NetSpec

    spec = NetSpec(depth=depth)
    init, apply = fc_network(spec, width, 5)
    x = np.random.default_rng(0).standard_normal((n, 784)).astype(dtype)
    _, params = init(jax.random.PRNGKey(0), x.shape)
    return (lambda: fc_ntk_and_head_ntk(spec, width, params, x)[0]), apply, params, x


def flax_case(name: str, channels, n: int, shape: tuple, dtype):
    """(ours, apply, params, x) for a flax backbone (eval mode) with a dense 5-way head."""
    import jax
    import jax.numpy as jnp

    from ntk_bridge.engine.empirical import empirical_ntk
    from ntk_bridge.train.models import build_backbone

    model = build_backbone(name, channels=channels)
    x = np.random.default_rng(0).standard_normal((n,) + shape).astype(dtype)
    variables = model.init(jax.random.PRNGKey(0), jnp.asarray(x[:1]))
    stats = variables["batch_stats"]
    feat = model.apply(variables, jnp.asarray(x[:1])).shape[1]
    params = {"body": variables["params"], "head": jax.random.normal(jax.random.PRNGKey(1), (feat, 5))}
    params = jax.tree_util.tree_map(lambda a: jnp.asarray(a, dtype), params)

    def apply(p, xs):
        f = model.apply({"params": p["body"], "batch_stats": stats}, xs, train=False)
        return f @ p["head"] / math.sqrt(feat)

    return (lambda: empirical_ntk(apply, params, x)), apply, params, x


def peers(apply, params, x, vp: bool = True) -> dict:
    """nt-jc and (``vp``) nt-vp, jitted, per-example vmap, trace over outputs."""
    import jax

    from ntk_bridge.reference.compat import nt

    m = nt()
    out = {}
    for name, impl in (("nt-jc", m.NtkImplementation.JACOBIAN_CONTRACTION),
                       ("nt-vp", m.NtkImplementation.NTK_VECTOR_PRODUCTS))[:2 if vp else 1]:
        fn = jax.jit(m.empirical_ntk_fn(apply, trace_axes=(-1,), vmap_axes=0, implementation=impl))
        out[name] = (lambda f=fn: f(x, None, params))
    return out


def run_case(label: str, build, dtype, rounds: int, say, vp: bool = True) -> Row:
    import contextlib

    from ntk_bridge.engine.precision import float64

    ctx = float64() if dtype == np.float64 else contextlib.nullcontext()
    with ctx:
        ours, apply, params, x = build(dtype)
        fns = {"ntk_bridge": ours, **peers(apply, params, x, vp)}
        first, times = alternate(fns, rounds)
        theirs = np.asarray(fns["nt-jc"]())
        diff = float(np.abs(np.asarray(ours()) - theirs).max() / np.abs(theirs).max())
    if not vp:
        times["nt-vp"], first["nt-vp"] = [math.nan] * rounds, math.nan
    med = {k: float(np.median(v)) for k, v in times.items()}
    best = "nt-jc" if not vp else min(("nt-jc", "nt-vp"), key=lambda k: med[k])
    row = Row(label, np.dtype(dtype).name, first, med, ratio_stats(times[best], times["ntk_bridge"]),
              ratio_stats(times["nt-jc"], times["ntk_bridge"]), ratio_stats(times["nt-vp"], times["ntk_bridge"]),
              diff, load())
    r = row.ratio_vs_nt_best
    say(f"{label:34s} {row.dtype:8s} ours {med['ntk_bridge'] * 1e3:9.2f} ms  nt-jc {med['nt-jc'] * 1e3:9.2f} ms  "
        f"nt-vp {med['nt-vp'] * 1e3:9.2f} ms  ratio vs nt best ({best}) {r[0]:7.2f}x [{r[1]:.2f}-{r[2]:.2f}]  "
        f"rel diff {diff:.1e}  ({row.load})")
    return row


def cases(cfg: BenchConfig) -> list:
    """(label, build(dtype), with nt-vp): nt-vp is left out of the conv cases in quick mode (it
    took 7x nt-jc's time on the Conv-4 in the full run)."""
    n, m = cfg.fc_points, (8 if cfg.quick else cfg.conv_points)
    vp = not cfg.quick
    out = [(f"FC 784-64x2-5, n={n}", lambda dt: fc_case(2, 64, n, dt), True),
           (f"FC 784-256x2-5, n={n}", lambda dt: fc_case(2, 256, n, dt), True),
           (f"FC 784-256x8-5, n={n}", lambda dt: fc_case(8, 256, n, dt), True),
           (f"Conv-4 w=64 28x28, n={m}", lambda dt: flax_case("conv4", 64, m, (28, 28, 1), dt), vp)]
    if not cfg.quick:
        out.append((f"Conv-4 w=128 28x28, n={m}", lambda dt: flax_case("conv4", 128, m, (28, 28, 1), dt), vp))
    if cfg.resnet:
        out.append(("ResNet-12 16-32-64-128 28x28x3, n=8",
                    lambda dt: flax_case("resnet12", [16, 32, 64, 128], 8, (28, 28, 3), dt), vp))
    return out


def fc_flops(n: int, d: int, depth: int, width: int, c: int) -> float:
    """The per-layer formula's cost model (ntk_bridge.engine.empirical docstring), x2 = None:
    forward 2 n P, c backward passes through the activations (no weight gradients) 2 n c P, and the Gram
    products 2 n^2 (d + L w + c L w + c^2) (n1 = n2 = n)."""
    p = d * width + (depth - 1) * width ** 2 + width * c
    return 2 * n * p + 2 * n * c * p + 2 * n * n * (d + depth * width + c * depth * width + c * c)


def cost_model(rounds: int, say) -> None:
    """Check the FC cost model: seconds per predicted flop over widths 256-4096 (depth 4, n = 64,
    float64) should be about flat; prints the measured log-log slope of time vs width and the model's."""
    from ntk_bridge.engine.precision import float64

    widths, secs, flops = (256, 512, 1024, 2048, 4096), [], []
    with float64():
        for w in widths:
            ours = fc_case(4, w, 64, np.float64)[0]
            _, times = alternate({"ours": ours}, rounds)
            secs.append(float(np.median(times["ours"])))
            flops.append(fc_flops(64, 784, 4, w, 5))
            say(f"cost model: FC 784-{w}x4-5, n=64, float64: {secs[-1] * 1e3:9.2f} ms, model {flops[-1] / 1e9:7.3f} GFLOP, "
                f"{flops[-1] / secs[-1] / 1e9:6.2f} GFLOP/s  ({load()})")
    slope = np.polyfit(np.log(widths[2:]), np.log(secs[2:]), 1)[0]
    model = np.polyfit(np.log(widths[2:]), np.log(flops[2:]), 1)[0]
    say(f"cost model: time vs width slope (w = 1024-4096) {slope:.2f}, model {model:.2f}")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--quick", action="store_true", help="3 rounds, Conv-4 at w = 64 on 8 images, against nt-jc only")
    p.add_argument("--resnet", action="store_true", help="add the ResNet-12 case")
    p.add_argument("--cost-model", action="store_true", help="only the FC cost-model check over widths 256-4096")
    p.add_argument("--out", default=None)
    a = p.parse_args(argv)
    if a.cost_model:
        say = Report(out_path(a.out))
        say(f"bench_empirical --cost-model; {load()}")
        cost_model(a.rounds, say)
        return
    cfg = BenchConfig(rounds=3 if a.quick else a.rounds, quick=a.quick, resnet=a.resnet)
    out = out_path(a.out)
    say = Report(out)
    say(f"bench_empirical: {cfg}; {load()}")
    say("ratio = peer time / ntk_bridge time per A-B-A round (> 1: ntk_bridge faster), median [min-max]")
    rows = [run_case(label, build, dt, cfg.rounds, say, vp) for label, build, vp in cases(cfg)
            for dt in (np.float32, np.float64)]
    finish(say, out, cfg, rows)


if __name__ == "__main__":
    main()
