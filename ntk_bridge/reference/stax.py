"""neural-tangents as the reference and as the bridge to a user's own ``stax`` network.

Nothing on a command's runtime path imports this module: the project's own engine
(:mod:`ntk_bridge.engine.fc`, :mod:`ntk_bridge.engine.networks`, :mod:`ntk_bridge.engine.empirical`,
:mod:`ntk_bridge.engine.conv_kernels`) computes every kernel. neural-tangents is imported through
:mod:`ntk_bridge.reference.compat` (current JAX, no TensorFlow), in float64.

- :func:`stax_network`: the ``stax.serial`` network of a :class:`~ntk_bridge.engine.spec.NetSpec`,
  the same definition as :func:`ntk_bridge.engine.networks.fc_network`;
- :func:`nt_kernels`: (Theta, K) from its ``kernel_fn``, what the engine is tested against;
- :func:`kernels_from_kernel_fn`: (Theta, K) of ANY stax ``kernel_fn`` whose last layer is a
  ``Dense`` readout, ready for :func:`ntk_bridge.closed_form.predictors.predict` and the studies. For such a
  network the NNGP kernel is exactly the readout's share K of the NTK (docs/theory.md section 2).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from ntk_bridge.engine.precision import in_float64
from ntk_bridge.engine.spec import Kernels, NetSpec, check_inputs, on_sphere
from ntk_bridge.reference.compat import stax


def stax_network(spec: NetSpec, width: int = 512, out_dim: int = 1):
    """``(init_fn, apply_fn, kernel_fn)`` of ``spec`` (neural-tangents ``stax.serial``)."""
    st = stax()
    act = st.Relu() if spec.activation == "relu" else st.Erf()
    b = spec.b_std if spec.b_std > 0 else None
    hidden = []
    for _ in range(spec.depth):
        hidden += [st.Dense(int(width), W_std=spec.W_std, b_std=b), act]
    rb = spec.readout_b_std if spec.readout_b_std > 0 else None
    return st.serial(*hidden, st.Dense(int(out_dim), W_std=spec.readout_W_std, b_std=rb))


@in_float64
def kernels_from_kernel_fn(kernel_fn: Callable, x1: np.ndarray, x2: np.ndarray | None = None) -> Kernels:
    """(Theta, K) = ``kernel_fn(x1, x2, ('ntk', 'nngp'))`` in float64, as :class:`Kernels`.

    ``kernel_fn`` is any neural-tangents ``stax`` kernel function whose network ends in a Dense
    readout; x1 (n1, ...) and x2 (n2, ...) in the layout that network expects."""
    x1 = np.asarray(x1, np.float64)
    x2 = x1 if x2 is None else np.asarray(x2, np.float64)
    out = kernel_fn(x1, x2, ("ntk", "nngp"))
    return Kernels(theta=np.asarray(out[0], np.float64), k=np.asarray(out[1], np.float64))


def nt_kernels(spec: NetSpec, x1: np.ndarray, x2: np.ndarray | None = None,
               normalize: bool = False) -> Kernels:
    """(Theta, K) at ``spec.depth`` from neural-tangents' ``kernel_fn`` (the engine's reference)."""
    x1, x2 = check_inputs(x1, x2)
    x1 = on_sphere(x1, normalize, "x1")
    x2 = on_sphere(x2, normalize, "x2")
    return kernels_from_kernel_fn(stax_network(spec)[2], x1, x2)


@in_float64
def nt_empirical_ntk(apply_fn: Callable, params, x1: np.ndarray, x2: np.ndarray | None = None) -> np.ndarray:
    """neural-tangents' ``empirical_ntk_fn`` (JACOBIAN_CONTRACTION, trace over outputs), (n1, n2)."""
    from ntk_bridge.reference.compat import jacobian_contraction, nt

    fn = nt().empirical_ntk_fn(apply_fn, implementation=jacobian_contraction(), trace_axes=(-1,))
    return np.asarray(fn(x1, x2, params), np.float64)
