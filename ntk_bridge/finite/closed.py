"""The closed forms that a finite network trained by :mod:`ntk_bridge.finite.training` must match.

These are :func:`ntk_bridge.predictors.predict` (theory.md sections 3-5), called with

- the inner loop ``InnerLoop('steps', a, k)`` (exact for k discrete steps in the kernel regime);
- the f_0 terms: ``f0 = apply(params0, points)``, the finite network's own initial outputs
  (theory.md 4-5: GBML adds ``A_test f_0(Z_test)`` and replaces G by ``A f_0(Z) + G``; MTL-B adds
  ``f_0(X) - K T' f_0(X')`` and replaces U by ``U - f_0(Z)``; MTL-A is
  ``f_0(X) + K T' (Y' - f_0(X'))``). The finite networks are not centred; this is exact;
- the outer loop as the S discrete gradient steps of size lr that the networks take, instead of
  gradient flow for time lr S. For the linear dynamics r <- (I - lr M) r of the kernel regime,
  S steps give exactly ``O(M) = M^{-1} (I - (I - lr M)^S)`` in place of the flow's
  ``M^{-1} (I - exp(-lr S M))`` (same eigenvectors, eigenvalue map (1 - (1 - lr lam)^S) / lam).
  The two differ by a relative O(lr lam_max / 2); with the discrete operator the only gap left
  between network and formula is the width. :func:`closed_form` with ``discrete=False`` gives the
  flow version, so that the size of the correction can be reported.

``predictors.predict`` has no discrete-outer option, so :func:`discrete_outer` swaps
``predictors.outer_operator`` for the discrete one for the duration of a call (a local work-around
until PredictorConfig grows an ``outer_steps`` field).

``head-only`` at finite width is the initial network's head fine-tuned on the test support: its
closed form is MTL-A's ``f_0(X) + K T' (Y' - f_0(X'))`` (``predict('head-only')`` drops f_0).
"""

from __future__ import annotations

from contextlib import contextmanager
from unittest import mock

import numpy as np

from ntk_bridge import predictors
from ntk_bridge.errors import BridgeError
from ntk_bridge.finite.training import FiniteNet, TrainConfig
from ntk_bridge.kernels import Kernels, NetSpec, nt_kernels
from ntk_bridge.linalg import matrix_function, psd_eigh
from ntk_bridge.predictors import PredictorConfig
from ntk_bridge.tasks import TaskSet


def gd_ratio(lr: float, steps: int, lam: np.ndarray) -> np.ndarray:
    """(1 - (1 - lr lam)^S) / lam elementwise, with the limit lr S at lam = 0."""
    lam = np.asarray(lam, np.float64)
    x = lr * lam
    safe = np.where(lam > 0, lam, 1.0)
    # for lr lam < 1 use expm1/log1p (no cancellation at small lam); beyond, the power is exact
    small = x < 1.0
    p = np.where(small, -np.expm1(steps * np.log1p(-np.where(small, x, 0.0))),
                 1.0 - np.power(1.0 - x, steps))
    return np.where(x > 1e-12, p / safe, lr * steps * (1.0 - 0.5 * (steps - 1) * x))


def outer_gd_operator(m: np.ndarray, lr: float, steps: int, name: str) -> np.ndarray:
    """M^{-1} (I - (I - lr M)^S) for symmetric PSD M; refuses lr >= 2 / lam_max (divergent GD)."""
    lam_max = float(psd_eigh(m, name)[0].max())
    if lr * lam_max >= 2.0:
        raise BridgeError(
            f"outer learning rate {lr:g} diverges on the infinite-width {name} (largest eigenvalue "
            f"{lam_max:.4g}); use a learning rate below {2.0 / lam_max:.4g}")
    return matrix_function(m, lambda lam: gd_ratio(lr, steps, lam), name)


@contextmanager
def discrete_outer(lr: float, steps: int):
    """Within the block, ``predictors.predict`` uses S discrete outer steps of size lr."""
    def operator(m, config, name):
        return outer_gd_operator(m, lr, steps, name)

    with mock.patch.object(predictors, "outer_operator", operator):
        yield


def predictor_config(config: TrainConfig) -> PredictorConfig:
    """The PredictorConfig of a TrainConfig (flow time eta t = lr S at rate 1)."""
    return PredictorConfig(inner=config.inner, outer_time=config.outer_time, outer_rate=1.0)


def closed_form(method: str, tasks: TaskSet, gram: Kernels, config: TrainConfig,
                f0: np.ndarray | None, discrete: bool = True, outer_steps: int | None = None) -> np.ndarray:
    """Closed-form test predictions (n_test, n_q, c) matching ``train_and_predict(method, ...)``.

    ``outer_steps`` overrides ``config.outer_steps`` (0 gives the t = 0 predictor).
    """
    steps = int(config.outer_steps if outer_steps is None else outer_steps)
    pconf = PredictorConfig(inner=config.inner, outer_time=float(config.outer_lr) * steps, outer_rate=1.0)
    name = "mtl-a" if method == "head-only" else method
    if not discrete:
        return predictors.predict(name, tasks, gram, pconf, f0)
    with discrete_outer(float(config.outer_lr), steps):
        return predictors.predict(name, tasks, gram, pconf, f0)


def infinite_gram(spec: NetSpec, tasks: TaskSet) -> Kernels:
    """(Theta, K) of ``spec`` over every point of ``tasks`` (neural-tangents kernel_fn)."""
    return nt_kernels(spec, tasks.points)


def empirical_gram(net: FiniteNet, x: np.ndarray) -> Kernels:
    """Empirical (Theta, K) of ``net`` at its initial parameters on ``x`` (n, d).

    Theta contracts the Jacobians of all parameters, K those of the head only; these are the
    kernels of the linearised network, whose training the closed forms describe exactly.
    """
    import jax.numpy as jnp

    from ntk_bridge.nt_backend import jacobian_contraction, nt

    ntk = nt().empirical_ntk_fn
    impl = jacobian_contraction()
    x = jnp.asarray(x, jnp.float64)
    p0 = net.params0
    theta = ntk(net.apply_fn, implementation=impl, trace_axes=(-1,))(x, None, p0)
    body = list(p0[:-1])
    k = ntk(lambda h, xx, **kw: net.apply_fn(body + [h], xx, **kw), implementation=impl,
            trace_axes=(-1,))(x, None, p0[-1])
    return Kernels(theta=np.asarray(theta, np.float64), k=np.asarray(k, np.float64))
