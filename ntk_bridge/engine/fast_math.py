"""A fast, accurate arc-cosine in ``jax.numpy`` (the ReLU arc-cosine map's one transcendental).

XLA's ``jnp.arccos`` costs about 18 ns per element on the project's CPUs (it is lowered to
``atan2(sqrt(1 - x^2), x)``); a polynomial of the Cephes kind costs a few ns and is as accurate.

Range reduction (a = |x|; both branches land on z in [0, 1/4]):

    a <= 1/2:  z = a^2,          s = a,        acos(a) = pi/2 - (s + s z R(z))
    a >  1/2:  z = (1 - a) / 2,  s = sqrt(z),  acos(a) = 2 (s + s z R(z))
    x < 0:     acos(x) = pi - acos(a)

with R(z) = (asin(sqrt z) - sqrt z) / (z sqrt z) = sum_k c_{k+1} z^k, c_k = C(2k, k) / (4^k (2k + 1)),
approximated on [0, 1/4] by a polynomial (Chebyshev fit at 600 nodes to the series evaluated in
extended precision, converted to monomials, Horner in the working dtype): degree 11 in float64 (R's
relative error <= 1.4e-15), degree 5 in float32 (<= 1.1e-7). Near |x| = 1 the sqrt((1 - a) / 2) form
keeps relative accuracy (1 - a is exact there, Sterbenz), so acos(1) = 0 exactly and acos(1 - 2^-52) is
right to the last bits, where ``atan2(sqrt(1 - x^2), x)`` would be.

Measured error over [-1, 1] (endpoints and 1 - k ulp included; tests/engine/test_conv_engine.py checks it against
``np.arccos`` in extended precision): float64 absolute <= 1e-15 (ARCCOS_ABS_ERROR_F64), relative
<= 1e-15 wherever acos(x) >= 1e-300 (ARCCOS_REL_ERROR_F64); float32 absolute <= 5e-7 (ARCCOS_ABS_ERROR_F32).
Inputs outside [-1, 1] are not clipped here (callers clip); NaN propagates.
"""

from __future__ import annotations

import math

#: R(z) coefficients (monomials, lowest first) for float64: degree 11, relative error <= 1.4e-15 on [0, 1/4].
R_F64 = (0.1666666666666665, 0.07500000000021108, 0.04464285710243414, 0.030381947441070367,
         0.022372045036359364, 0.01735531123793945, 0.013929032494845704, 0.011880263003076154,
         0.007779570829629883, 0.016106326875078052, -0.010869806360467827, 0.028257884574167537)
#: R(z) coefficients for float32: degree 5, relative error <= 1.1e-7 on [0, 1/4].
R_F32 = (0.16666666316763595, 0.07500098762726033, 0.044598032229690006, 0.0311161564382545,
         0.01707785937278576, 0.03380574830663619)

#: Stated (and tested) bounds of :func:`arccos` over [-1, 1].
ARCCOS_ABS_ERROR_F64 = 1e-15
ARCCOS_REL_ERROR_F64 = 1e-15
ARCCOS_ABS_ERROR_F32 = 5e-7


def _horner(coefs, z):
    """sum_k coefs[k] z^k by Horner's rule (coefs lowest first)."""
    acc = z * 0 + coefs[-1]
    for c in coefs[-2::-1]:
        acc = acc * z + c
    return acc


def arccos(x):
    """acos(x) for x in [-1, 1], elementwise, in x's dtype (float32 or float64); see the module docstring."""
    import jax.numpy as jnp

    coefs = R_F32 if x.dtype == jnp.float32 else R_F64
    a = jnp.abs(x)
    big = a > 0.5
    z = jnp.where(big, 0.5 - 0.5 * a, a * a)
    s = jnp.where(big, jnp.sqrt(z), a)
    p = s + s * z * _horner(coefs, z)
    acos_a = jnp.where(big, 2.0 * p, math.pi / 2 - p)
    return jnp.where(x < 0, math.pi - acos_a, acos_a)
