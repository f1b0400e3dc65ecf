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

import contextlib
from typing import Callable

import numpy as np

from ntk_bridge.engine._checks import first_line, real_array, require_memory
from ntk_bridge.engine.precision import in_float64
from ntk_bridge.engine.spec import Kernels, NetSpec, check_inputs, on_sphere
from ntk_bridge.errors import BridgeError, require
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


PROBE_POINTS = 2          # kernel_fn is first evaluated on this many points of x1 (and x2)
KERNEL_FN_TEMPORARIES = 4  # (n1, n2) arrays a stax kernel_fn holds besides its two outputs (a lower bound)


@in_float64
def kernels_from_kernel_fn(kernel_fn: Callable, x1: np.ndarray, x2: np.ndarray | None = None) -> Kernels:
    """(Theta, K) = ``kernel_fn(x1, x2, ('ntk', 'nngp'))`` in float64, as :class:`Kernels`.

    ``kernel_fn`` is any neural-tangents ``stax`` kernel function whose network ends in a Dense
    readout; x1 (n1, ...) and x2 (n2, ...) in the layout that network expects. Before the full
    evaluation, ``kernel_fn`` is called on the first :data:`PROBE_POINTS` points of each input and
    must return a pair (ntk, nngp) of finite (p1, p2) arrays; a function that is not callable, takes
    other arguments, raises, or returns another shape is refused in one line, and so is a request
    whose two (n1, n2) outputs and their temporaries cannot fit in memory."""
    if not callable(kernel_fn):
        raise BridgeError(f"kernel_fn must be a neural-tangents kernel function, the third item of "
                          f"stax.serial(...) (init_fn, apply_fn, kernel_fn); got {type(kernel_fn).__name__}")
    a = real_array(x1, "x1")
    b = a if x2 is None else real_array(x2, "x2")
    for name, x in (("x1", a), ("x2", b)):
        require(x.ndim >= 2 and x.shape[0] >= 1, f"{name} must be an array (points, ...) with at least one point; "
                                                  f"got shape {x.shape}")
    require(a.shape[1:] == b.shape[1:], f"x1 {a.shape} and x2 {b.shape} must have the same shape after the first axis")
    _evaluate(kernel_fn, a[:PROBE_POINTS], b[:PROBE_POINTS], "on a probe of its first points")
    n1, n2 = len(a), len(b)
    require_memory(8 * n1 * n2 * (2 + KERNEL_FN_TEMPORARIES), f"the kernels of {n1} x {n2} points",
                   "use fewer points, or call kernel_fn on row blocks (slices of x1)")
    return _evaluate(kernel_fn, a, b, "")


def _evaluate(kernel_fn: Callable, x1: np.ndarray, x2: np.ndarray, when: str) -> Kernels:
    """``kernel_fn(x1, x2, ('ntk', 'nngp'))`` checked: a pair of finite (n1, n2) arrays, else one line."""
    import inspect

    signature = None
    with contextlib.suppress(TypeError, ValueError):          # builtins and some wrappers have no signature
        signature = inspect.signature(kernel_fn)
    try:
        if signature is not None:
            signature.bind(x1, x2, ("ntk", "nngp"))
    except TypeError as err:
        raise BridgeError(f"kernel_fn cannot be called as kernel_fn(x1, x2, ('ntk', 'nngp')) ({err}); pass "
                          "a neural-tangents kernel function, the third item of stax.serial(...)") from None
    try:
        out = kernel_fn(x1, x2, ("ntk", "nngp"))
    except BridgeError:
        raise
    except Exception as err:  # noqa: BLE001 - a user's function: any failure becomes one line
        raise BridgeError(f"kernel_fn failed {when or 'on x1, x2'} of shapes {x1.shape}, {x2.shape} "
                          f"({first_line(err)}); check that it takes inputs laid out like x1") from None
    want = (len(x1), len(x2))
    if not (isinstance(out, (tuple, list)) and len(out) == 2):
        raise BridgeError(f"kernel_fn(x1, x2, ('ntk', 'nngp')) returned {type(out).__name__}"
                          f"{f' of length {len(out)}' if isinstance(out, (tuple, list)) else ''}; it must return "
                          "the pair (ntk, nngp), as a neural-tangents kernel_fn does")
    kernels = []
    for name, m in zip(("ntk", "nngp"), out):
        m = real_array(m, f"kernel_fn's {name} output{' ' + when if when else ''}",
                       "check its network (its parameters' scales, its depth)")
        require(m.shape == want, f"kernel_fn's {name} output has shape {m.shape} {when}, expected {want} (points of "
                                 "x1 x points of x2): its network must end in a Dense readout with one output")
        kernels.append(m)
    return Kernels(theta=kernels[0], k=kernels[1])


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
