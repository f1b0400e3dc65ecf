"""neural-tangents' CNN-GAP kernel: the reference of :mod:`ntk_bridge.engine.conv_engine` (tests, benchmark).

Nothing on a command's runtime path imports this module; neural-tangents is reached through
:func:`ntk_bridge.reference.compat.stax` (current JAX, no TensorFlow) and evaluated in float64.
"""

from __future__ import annotations

import math

import numpy as np

from ntk_bridge.engine.precision import in_float64
from ntk_bridge.reference.compat import stax


def cnn_gap_kernel_fn(depth: int, W_std: float = math.sqrt(2.0), readout_W_std: float = 1.0):
    """neural-tangents' ``kernel_fn`` of ``[Conv(3x3, SAME, W_std) + Relu] * depth + GlobalAvgPool +
    Dense(1, readout_W_std)`` (infinite channels, NTK parameterisation, no biases); inputs (n, H, W, 1)."""
    st = stax()
    layers = []
    for _ in range(int(depth)):
        layers += [st.Conv(1, (3, 3), padding="SAME", W_std=W_std), st.Relu()]
    return st.serial(*layers, st.GlobalAvgPool(), st.Dense(1, W_std=readout_W_std))[2]


@in_float64
def reference_kernel(depth: int, x1: np.ndarray, x2: np.ndarray | None, image_size: int,
                     W_std: float = math.sqrt(2.0), readout_W_std: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """(Theta, K), each (n1, n2), of one unbatched neural-tangents call of the depth-``depth`` network on
    flattened (image_size x image_size) images x1, x2 (None: x1 with itself)."""
    s = int(image_size)
    a = np.asarray(x1, np.float64).reshape(-1, s, s, 1)
    b = None if x2 is None else np.asarray(x2, np.float64).reshape(-1, s, s, 1)
    t, k = cnn_gap_kernel_fn(depth, W_std, readout_W_std)(a, b, ("ntk", "nngp"))
    return np.asarray(t), np.asarray(k)
