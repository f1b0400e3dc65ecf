"""Distances between predictors and their test errors (docs/theory.md section 6).

All predictions are arrays of the same shape, e.g. (n_test_tasks, n_q, c); norms are Frobenius
norms over every entry. Intervals and fitted rates over draws are in :mod:`ntk_bridge.stats`.
"""

from __future__ import annotations

import numpy as np

from ntk_bridge.errors import require


def _same_shape(*arrays: np.ndarray) -> None:
    shapes = {np.shape(a) for a in arrays}
    require(len(shapes) == 1, f"predictions must have the same shape to be compared; got {sorted(shapes)}")


def d_rel(f_a: np.ndarray, f_b: np.ndarray) -> float:
    """d_rel = ||F_a - F_b|| / ||F_b||."""
    _same_shape(f_a, f_b)
    return float(np.linalg.norm(f_a - f_b) / max(float(np.linalg.norm(f_b)), 1e-300))


def d_tr(f_a: np.ndarray, f_b: np.ndarray, f_b_adapt_only: np.ndarray) -> float:
    """Transfer-normalised d_tr = ||F_a - F_b|| / ||F_b - F_b(t = 0)||.

    ``f_b_adapt_only`` is F_b without outer training (K_in(X, X') T' Y'): the denominator is the
    part of F_b that the training tasks produced.
    """
    _same_shape(f_a, f_b, f_b_adapt_only)
    return float(np.linalg.norm(f_a - f_b) / max(float(np.linalg.norm(f_b - f_b_adapt_only)), 1e-300))


def relative_error(pred: np.ndarray, target: np.ndarray) -> float:
    """Test error ||F - Y||^2 / ||Y||^2: 1 is the error of predicting zero, lower is better."""
    _same_shape(pred, target)
    return float(np.sum((pred - target) ** 2) / max(np.sum(target ** 2), 1e-300))


def accuracy(pred: np.ndarray, labels: np.ndarray) -> float:
    """Classification accuracy of argmax over the last axis against integer ``labels``."""
    require(np.shape(pred)[:-1] == np.shape(labels),
            f"predictions {np.shape(pred)} do not match labels {np.shape(labels)}")
    return float(np.mean(np.argmax(pred, axis=-1) == labels))
