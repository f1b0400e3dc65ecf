"""How far the kernel's fluctuation at initialisation moves the closed-form predictions (no training).

For one network of a width sweep (depth L, width w, seed s: the task draw ``make_tasks(family, s)``
and exactly the initial parameters ``init_net(spec, w, s, ...)`` that the sweep trained), the
empirical Theta_n, K_n and f_0 at every task point come from
:func:`ntk_bridge.finite.fluctuation.init_kernels` (no Jacobian). Then, with the sweep's own schedule
(S discrete outer steps from the infinite-width objective kernel) and inner loop:

    e_init = ||F(Theta_n, K_n; f0) - F(Theta_inf, K_inf; f0)|| / ||F(Theta_inf, K_inf; f0)||,

F = :func:`ntk_bridge.finite.closed.closed_form`. F(Theta_n, K_n; f0) is exactly what the
linearised network (the network whose kernel never moves) predicts after the same training, so
e_init is the part of the trained error e = ||F_net - F(Theta_inf; f0)|| / ||F(Theta_inf; f0)|| that the
kernel at initialisation causes; the rest is the kernel's movement during training. ``e_init_centred``
is the same with f0 = 0 (the kernel error acting on the targets only). The gain
G = e_init / sqrt(c(L) L / w) says how much a relative kernel error moves the predictions.
"""

from __future__ import annotations

import math

import numpy as np

from ntk_bridge.closed_form.distances import d_rel
from ntk_bridge.closed_form.tasks import FamilyConfig, make_tasks
from ntk_bridge.engine.spec import Kernels, NetSpec
from ntk_bridge.errors import BridgeError
from ntk_bridge.finite import fluctuation as fl


def kernel_error_at_init(spec: NetSpec, width: int, seed: int, family: FamilyConfig, inner_step: float,
                         methods=("mtl-b", "anil"), inner_steps: int = 5, outer_time: float = 10.0,
                         lr_fraction: float = 0.5) -> list[dict]:
    """One row per method: e_init, e_init_centred, the kernel's relative deviations on the task
    points (Frobenius, and the rms of Theta_n(x,x)/Theta_inf(x,x) - 1), sqrt(c(L) L / w) and the gain."""
    from ntk_bridge.finite.closed import closed_form, infinite_gram
    from ntk_bridge.finite.sweep import WidthSweepConfig, schedule
    from ntk_bridge.finite.training import init_net

    config = WidthSweepConfig(widths=(int(width),), net=spec, family=family, methods=tuple(methods),
                              inner_step=inner_step, inner_steps=inner_steps, outer_time=outer_time,
                              lr_fraction=lr_fraction)
    tasks = make_tasks(family, seed)
    inf = infinite_gram(spec, tasks)
    net = init_net(spec, int(width), int(seed), family.d, family.n_train_tasks)
    got = fl.init_kernels(spec, int(width), tasks.points, fl.ParamsSource(net.params0))[spec.depth]
    fin = Kernels(theta=got.theta, k=got.k)
    f0 = got.f0[:, None]
    frob = float(np.linalg.norm(got.theta - inf.theta) / np.linalg.norm(inf.theta))
    diag = float(np.sqrt(np.mean((np.diag(got.theta) / np.diag(inf.theta) - 1) ** 2)))
    law = float(fl.ntk_relsd(spec.depth, width))
    rows = []
    for method in methods:
        tc = schedule(method, tasks, inf, config)
        ref, ref0 = closed_form(method, tasks, inf, tc, f0), closed_form(method, tasks, inf, tc, None)
        try:
            e = d_rel(closed_form(method, tasks, fin, tc, f0), ref)
            e0 = d_rel(closed_form(method, tasks, fin, tc, None), ref0)
        except BridgeError:            # the finite kernel's GD diverges at the infinite kernel's step
            e = e0 = math.nan
        rows.append(dict(depth=spec.depth, width=int(width), seed=int(seed), method=method, e_init=e,
                         e_init_centred=e0, kernel_frob=frob, kernel_diag_rms=diag, law_relsd=law,
                         gain=e / law, f0_rms=float(np.sqrt(np.mean(f0 ** 2))), outer_steps=tc.outer_steps))
    return rows


def predicted_error(depth, width, gain: float) -> np.ndarray:
    """e_init(L, w) = G sqrt(c(L) L / w)."""
    return gain * fl.ntk_relsd(depth, width)


def required_width(depth, distance, gain: float, closeness: float = 4.0) -> np.ndarray:
    """w with G sqrt(c(L) L / w) = d(L) / closeness:  w = c(L) L (closeness G / d(L))^2."""
    L, d = np.asarray(depth, np.float64), np.asarray(distance, np.float64)
    return fl.ntk_constant(L) * L * (closeness * gain / d) ** 2
