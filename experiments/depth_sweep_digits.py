"""How many significant digits of the depth sweep's result tables survive a change of machine.

Runs the main job's study (the default ``DepthStudyConfig`` of ``ntk-bridge depth-sweep``) in
variants that change only the rounding of the arithmetic, never the maths:

- ``base``       as ``ntk-bridge depth-sweep`` runs it;
- ``threads``    in a child process with one BLAS / XLA thread (OPENBLAS_NUM_THREADS=1,
                 OMP_NUM_THREADS=1, XLA_FLAGS single-threaded Eigen): other summation orders in
                 LAPACK's eigh and in XLA's matrix products;
- ``ulp-K``      at every layer of the kernel recursion (``ntk_bridge.engine.fc``) both outputs of
                 the activation step multiplied by (1 + s * 2^-52) with random signs s (seed K):
                 another CPU's arcsin / sqrt (numpy's SIMD paths differ by an ulp between
                 instruction sets) at each of the 256 layers, carried through the recursion, every
                 eigendecomposition and every predictor.

For each table (depth_sweep.csv, summary.csv, errors.csv) and each variant it prints the largest
relative difference to ``base`` over every float cell, and how many cells differ in their text
when written with ``%.{n}g`` for n = 6..17: the writer's precision
(``ntk_bridge.report.schemas.DEPTH_SWEEP``) is the largest n with no differing cell in any variant,
minus a margin stated there.

    PYTHONPATH=$PWD nice -n 10 python experiments/depth_sweep_digits.py [--draws 20] [--ulp-seeds 2]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import pickle
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

DIGITS = range(6, 18)


def tables(config, perturb_seed: int | None):
    """(frame, summary, errors) of the study; every layer perturbed by one ulp when ``perturb_seed``."""
    from ntk_bridge.engine import fc
    from ntk_bridge.studies import depth_sweep as study

    activation = config.net.activation
    original = fc._STEP[activation]
    if perturb_seed is not None:
        fc._STEP[activation] = _perturbed(original, np.random.default_rng(perturb_seed))
    try:
        frame = study.run(config, progress=False)
    finally:
        fc._STEP[activation] = original
    return frame, study.summarize(frame), study.error_table(frame)


def _perturbed(step, rng):
    """``step`` whose two outputs (act_cov, ntk_act) are multiplied in place by (1 + s * 2^-52)."""
    eps = np.finfo(np.float64).eps

    def wrapped(*args, **kwargs):
        ac, antk = step(*args, **kwargs)
        for a in (ac, antk):
            a *= 1.0 + rng.choice([-eps, eps], size=a.shape)
        return ac, antk

    return wrapped


def compare(base, other) -> tuple[float, dict[int, int], dict[int, float], int]:
    """Largest relative difference over float cells, {n: cells whose %.{n}g text differs}, and
    {n: expected number of differing cells}: the sum over cells of |a - b| / (the spacing of
    %.{n}g at a), the chance that a rounding boundary falls between a and b."""
    cols = [c for c in base.columns if base[c].dtype.kind == "f"]
    a, b = base[cols].to_numpy(), other[cols].to_numpy()
    both = np.isfinite(a) & np.isfinite(b)
    scale = np.maximum(np.maximum(np.abs(a), np.abs(b)), np.finfo(float).tiny)
    rel = float(np.max(np.where(both, np.abs(a - b) / scale, 0.0), initial=0.0))
    text = {n: int(sum((f"{x:.{n}g}" != f"{y:.{n}g}") for x, y in zip(a.ravel(), b.ravel()))) for n in DIGITS}
    exponent = np.floor(np.log10(scale))
    diff = np.where(both & (scale > np.finfo(float).tiny), np.abs(a - b), 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        expected = {n: float(np.nansum(diff / 10.0 ** (exponent - n + 1))) for n in DIGITS}
    return rel, text, expected, a.size


def differing(base, other, upto: int) -> list[str]:
    """The cells whose %.{upto}g text differs: row, column, both values."""
    out = []
    for col in [c for c in base.columns if base[c].dtype.kind == "f"]:
        for row, (x, y) in enumerate(zip(base[col], other[col])):
            if f"{x:.{upto}g}" != f"{y:.{upto}g}":
                out.append(f"row {row} {col}: {x!r} vs {y!r}")
    return out


def child(config_path: str, out_path: str) -> None:
    config = pickle.loads(Path(config_path).read_bytes())
    Path(out_path).write_bytes(pickle.dumps(tables(config, None)))


def one_thread(config):
    """The tables computed in a child process with one BLAS / OpenMP / XLA thread."""
    with tempfile.TemporaryDirectory() as tmp:
        cfg, out = Path(tmp, "config.pkl"), Path(tmp, "out.pkl")
        cfg.write_bytes(pickle.dumps(config))
        env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
                   XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
        subprocess.run([sys.executable, __file__, "--child", str(cfg), str(out)], env=env, check=True)
        return pickle.loads(out.read_bytes())


def main() -> None:
    from ntk_bridge.studies.depth_sweep import DepthStudyConfig

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--draws", type=int, default=DepthStudyConfig.draws)
    p.add_argument("--ulp-seeds", type=int, default=3)
    p.add_argument("--first-seed", type=int, default=0)
    p.add_argument("--no-threads", action="store_true", help="skip the one-thread child run")
    p.add_argument("--show", type=int, default=9, help="list the cells whose %%.ng text differs, n <= this")
    p.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(*args.child)
    defaults = DepthStudyConfig()
    config = dataclasses.replace(defaults, draws=args.draws,
                                 net=dataclasses.replace(defaults.net, depth=max(defaults.depths)))
    variants = {"base": tables(config, None)}
    if not args.no_threads:
        variants["threads"] = one_thread(config)
    for k in range(args.first_seed, args.first_seed + args.ulp_seeds):
        variants[f"ulp-{k}"] = tables(config, k)
    print(f"default depth sweep, {config.draws} draws; load average {os.getloadavg()[0]:.2f}")
    print(f"cells whose %.ng text differs from base, n = {DIGITS.start}..{DIGITS.stop - 1}")
    for i, name in enumerate(("depth_sweep.csv", "summary.csv", "errors.csv")):
        for variant, result in variants.items():
            if variant == "base":
                continue
            rel, text, expected, size = compare(variants["base"][i], result[i])
            counts = " ".join(f"{n}:{text[n]}" for n in DIGITS)
            print(f"{name:16s} {variant:8s} max rel diff {rel:.2e} over {size} cells; differing: {counts}")
            print(f"{'':25s} expected differing: " + " ".join(f"{n}:{expected[n]:.2g}" for n in DIGITS))
            for line in differing(variants["base"][i], result[i], args.show):
                print(f"{'':25s} {line}")


if __name__ == "__main__":
    main()
