"""Numbers quoted in docs/theory.md 8.1 (issue 29): critical Erf's q_l, and the bias transition of the informative part.

Re-create (seconds; writes experiments/results/depth_law/transition.md):

    python experiments/depth_law_transition.py

1. Critical Erf (q* = 1, the map's erf-critical): q_l of the engine's recursion (ntk_bridge.engine.fc) on the
   map's inputs (|x|^2 / d = 1), and (q_{l+1} - 1) / (q_l - 1), which tends to dq'/dq at q* = 1/3.
2. ReLU with biases: the derived profile's local exponent (depth_law.informative_exponent) at multiples of L_b,
   and beside it the kernels' measured slope (sd of Theta(x, x') / D over distinct pairs of 24 points of draw 0,
   between L and 2L) for b = 0.1 and 0.5; and the slope of d_rel(MTL-B, ANIL)'s informative part (depth-normalised
   inner loop, t = inf, draw 0, N = 10), which the law carries with the kernel's profile.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np

from ntk_bridge.closed_form.predictors import PredictorConfig
from ntk_bridge.closed_form.tasks import FamilyConfig, make_tasks
from ntk_bridge.engine.fc import _q_layers, depth_sweep
from ntk_bridge.engine.precision import float64
from ntk_bridge.studies import depth_law, regime_map

NETS = {v.name: v.spec for v in regime_map.NETS}
OUT = Path("experiments/results/depth_law/transition.md")
DEPTHS = tuple(2 ** k for k in range(4, 14))


def erf_lines() -> list[str]:
    spec = NETS["erf-critical"]
    x = make_tasks(FamilyConfig(), 0).points
    q = _q_layers(spec, np.sum(x * x, axis=1) / x.shape[1], 8).mean(axis=1)
    ratio = [(q[i + 1] - 1) / (q[i] - 1) for i in range(7)]
    return ["## Critical Erf: q_l (layers 1-8, mean over the map's inputs, |x|^2/d = 1)", "",
            "q_l: " + ", ".join(f"{v:.4f}" for v in q), "",
            "(q_{l+1} - 1)/(q_l - 1): " + ", ".join(f"{v:.3f}" for v in ratio), ""]


def slopes(net: str) -> tuple[list[float], list[float]]:
    spec = NETS[net]
    tasks = make_tasks(FamilyConfig(n_train_tasks=10, n_test_tasks=5), 0)
    cfg = PredictorConfig(inner=regime_map.INNERS[1].inner, outer_time=math.inf, outer_ridge=1e-6, outer_scale="diag")
    with float64():
        g = depth_sweep(replace(spec, depth=max(DEPTHS)), tasks.points, depths=list(DEPTHS))
        kern, drel = [], []
        for depth in DEPTHS:
            theta = np.asarray(g[depth].theta)[:24, :24]
            off = ~np.eye(24, dtype=bool)
            kern.append(float(np.std(theta[off] / np.mean(np.diagonal(theta)))))
            m = depth_law.measure_draw(tasks, g[depth], cfg)
            drel.append(m.rest_b_anil / m.norm_anil)
    s = lambda v: [math.log(v[i + 1] / v[i]) / math.log(2) for i in range(len(v) - 1)]   # noqa: E731
    return s(kern), s(drel)


def transition_lines() -> list[str]:
    lines = ["## ReLU with biases: local exponent of the informative part", "",
             "Derived profile (depth_law.informative_profile) at L = x L_b: " + ", ".join(
                 f"x = {x:g}: {depth_law.informative_exponent('relu', 0.1, x * 200):+.3f}"
                 for x in (0.1, 0.5, 1, 2, 3, 4, 8, 16, 24, 32, 100)), ""]
    for net in ("relu-b0.1", "relu-b0.5"):
        spec = NETS[net]
        kern, drel = slopes(net)
        lines += [f"### {net} (L_b = {depth_law.bias_onset_depth(spec.b_std):g}); slopes between L and 2L", "",
                  "| L | L / L_b | derived profile | kernel (measured) | d_rel(MTL-B, ANIL) informative (measured) |",
                  "|---|---|---|---|---|"]
        for i, depth in enumerate(DEPTHS[:-1]):
            want = math.log(depth_law.informative_ratio(spec.activation, spec.b_std, depth, 2 * depth)) / math.log(2)
            lines.append(f"| {depth} | {depth / depth_law.bias_onset_depth(spec.b_std):.3g} | {want:+.3f} | "
                         f"{kern[i]:+.3f} | {drel[i]:+.3f} |")
        lines.append("")
    return lines


def main() -> int:
    OUT.parent.mkdir(parents=True, exist_ok=True)
    text = "\n".join(["# Depth-law numbers of docs/theory.md 8.1", "",
                      "Command: `python experiments/depth_law_transition.py`", "", *erf_lines(), *transition_lines()])
    OUT.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
