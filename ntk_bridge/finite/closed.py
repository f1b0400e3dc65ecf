"""The closed forms that a finite network trained by :mod:`ntk_bridge.finite.training` must match.

These are :func:`ntk_bridge.closed_form.predictors.predict` (docs/theory.md sections 3-5), called with

- the inner loop ``InnerLoop('steps', a, k)`` (exact for k discrete steps in the kernel regime);
- the f_0 terms: ``f0 = apply(params0, points)``, the finite network's own initial outputs
  (docs/theory.md 4-5: GBML adds ``A_test f_0(Z_test)`` and replaces G by ``A f_0(Z) + G``; MTL-B adds
  ``f_0(X) - K T' f_0(X')`` and replaces U by ``U - f_0(Z)``; MTL-A is
  ``f_0(X) + K T' (Y' - f_0(X'))``). The finite networks are not centred; this is exact;
- the outer loop as the S discrete gradient steps of size lr that the networks take, instead of
  gradient flow for time lr S. For the linear dynamics r <- (I - lr M) r of the kernel regime,
  S steps give exactly ``O(M) = M^{-1} (I - (I - lr M)^S)`` in place of the flow's
  ``M^{-1} (I - exp(-lr S M))`` (same eigenvectors, eigenvalue map (1 - (1 - lr lam)^S) / lam).
  The two differ by a relative O(lr lam_max / 2); with the discrete operator the only gap left
  between network and formula is the width. :func:`closed_form` with ``discrete=False`` gives the
  flow version, so that the size of the correction can be reported.

The discrete outer loop is ``PredictorConfig(outer_time=lr * S, outer_steps=S)``.

``head-only`` at finite width is the initial network's head fine-tuned on the test support: its
closed form is ``f_0(X) + K T' (Y' - f_0(X'))``, the same formula as MTL-A.
"""

from __future__ import annotations

import numpy as np

from ntk_bridge.closed_form import predictors
from ntk_bridge.closed_form.predictors import PredictorConfig
from ntk_bridge.closed_form.tasks import TaskSet
from ntk_bridge.engine.empirical import fc_ntk_and_head_ntk
from ntk_bridge.engine.fc import fc_kernels
from ntk_bridge.engine.precision import in_float64
from ntk_bridge.engine.spec import Kernels, NetSpec
from ntk_bridge.finite.training import FiniteNet, GDConfig


def predictor_config(config: GDConfig) -> PredictorConfig:
    """The PredictorConfig of a GDConfig (flow time eta t = lr S at rate 1)."""
    return PredictorConfig(inner=config.inner, outer_time=config.outer_time, outer_rate=1.0)


def closed_form(method: str, tasks: TaskSet, gram: Kernels, config: GDConfig,
                f0: np.ndarray | None, discrete: bool = True, outer_steps: int | None = None) -> np.ndarray:
    """Closed-form test predictions (n_test, n_q, c) matching ``train_and_predict(method, ...)``.

    ``outer_steps`` overrides ``config.outer_steps`` (0 gives the t = 0 predictor).
    """
    steps = int(config.outer_steps if outer_steps is None else outer_steps)
    pconf = PredictorConfig(inner=config.inner, outer_time=float(config.outer_lr) * steps, outer_rate=1.0,
                            outer_steps=steps if discrete else None)
    return predictors.predict(method, tasks, gram, pconf, f0)


def infinite_gram(spec: NetSpec, tasks: TaskSet) -> Kernels:
    """(Theta, K) of ``spec`` over every point of ``tasks`` (:func:`ntk_bridge.engine.fc.fc_kernels`)."""
    return fc_kernels(spec, tasks.points)


@in_float64
def empirical_gram(net: FiniteNet, x: np.ndarray) -> Kernels:
    """Empirical (Theta, K) of ``net`` at its initial parameters on ``x`` (n, d).

    Theta is over all parameters, K over the head's only (the per-layer formula of
    :func:`ntk_bridge.engine.empirical.fc_ntk_and_head_ntk`, equal to the Jacobian contraction);
    these are the kernels of the linearised network, whose training the closed forms describe exactly.
    """
    import jax.numpy as jnp

    x = jnp.asarray(x, jnp.float64)
    theta, k = fc_ntk_and_head_ntk(net.spec, net.width, list(net.params0), x, param=net.param, d=int(x.shape[1]))
    return Kernels(theta=np.asarray(theta, np.float64), k=np.asarray(k, np.float64))
