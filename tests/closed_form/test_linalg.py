"""ridge_solve: the Cholesky route gives the eigh route's numbers, and is refused where it would not."""

from __future__ import annotations

import numpy as np
import pytest

from ntk_bridge.closed_form import linalg
from ntk_bridge.closed_form.linalg import apply_function, ridge_map, ridge_solve
from ntk_bridge.errors import BridgeError


def _eigh_solve(m, ridge, rhs):
    return apply_function(m, ridge_map(ridge), rhs)


@pytest.mark.parametrize("seed", range(4))
def test_cholesky_route_equals_eigh_route_to_1e_12(seed):
    """Well-conditioned kernel-like matrices (cond up to ~1e3): both routes agree to 1e-12, and the
    Cholesky route was the one taken."""
    rng = np.random.default_rng(seed)
    n = 40 + 10 * seed
    a = rng.standard_normal((n, n))
    m = a @ a.T / n + (0.5 + seed) * np.ones((n, n)) + 0.5 * np.eye(n)
    rhs = rng.standard_normal((n, 3))
    assert linalg._cholesky_solve(m, 1e-6, rhs) is not None
    ours, ref = ridge_solve(m, 1e-6, rhs), _eigh_solve(m, 1e-6, rhs)
    assert np.abs(ours - ref).max() <= 1e-12 * np.abs(ref).max()
    assert ridge_solve(m, 1e-6, rhs[:, 0]).shape == (n,)


def test_rank_deficient_or_large_ridge_takes_the_eigh_route():
    """A rank-3 matrix (cond of M + 1e-6 I ~ 1e6 > 1e4) and a ridge above 1e-5 of the diagonal are
    left to eigh, whose numbers and refusals are unchanged."""
    rng = np.random.default_rng(0)
    b = rng.standard_normal((30, 3))
    low = b @ b.T
    rhs = rng.standard_normal((30, 2))
    assert linalg._cholesky_solve(low, 1e-6, rhs) is None
    np.testing.assert_array_equal(ridge_solve(low, 1e-6, rhs), _eigh_solve(low, 1e-6, rhs))
    full = low + np.eye(30)
    assert linalg._cholesky_solve(full, 1.0, rhs) is None
    with pytest.raises(BridgeError, match="singular to float64 precision"):
        ridge_solve(low, 0.0, rhs)
