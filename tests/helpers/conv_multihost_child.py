"""One process of a two-process conv-kernel run for tests/engine/test_conv_engine.py (multi-host on one machine).

The parent starts two of these with ``JAX_COORDINATOR_ADDRESS`` / ``JAX_NUM_PROCESSES=2`` /
``JAX_PROCESS_ID`` set; each joins the run (``parallel.initialize_distributed``, the path of
``--distributed``), computes the CNN-GAP kernels of a few seeded images (a set with itself, and two
sets) and saves them into ``OUT/conv_<process>.npz``. No assertions: the parent compares them with
the one-process kernels.

    cd tests && python -m helpers.conv_multihost_child OUT
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from ntk_bridge.train import parallel


def images(seed: int, n: int, size: int = 5) -> np.ndarray:
    """n seeded images (n, size, size), the same in every process."""
    return np.random.default_rng(seed).standard_normal((n, size, size))


def kernels(x1, x2):
    """(kgap, ugap) of 3 layers, chunk 2 (several chunks, so both processes get work)."""
    from ntk_bridge.engine.conv_engine import gap_kernels
    from ntk_bridge.engine.precision import float64

    with float64():
        return gap_kernels(x1, x2, 3, np.sqrt(2.0), chunk=2)


def main(out: Path) -> None:
    parallel.initialize_distributed()
    import jax

    a, b = images(0, 5), images(1, 3)
    self_k, self_u = kernels(a, None)
    cross_k, cross_u = kernels(a, b)
    np.savez(out / f"conv_{jax.process_index()}.npz", self_k=self_k, self_u=self_u, cross_k=cross_k,
             cross_u=cross_u, processes=jax.process_count())


if __name__ == "__main__":
    main(Path(sys.argv[1]))
