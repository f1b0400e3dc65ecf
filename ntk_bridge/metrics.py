"""Distances between predictors, test errors and fitted rates (theory.md section 6).

All predictions are arrays of the same shape, e.g. (n_test_tasks, n_q, c); norms are Frobenius
norms over every entry.
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
    return float(np.linalg.norm(f_a - f_b) / max(np.linalg.norm(f_b), 1e-300))


def d_tr(f_a: np.ndarray, f_b: np.ndarray, f_b_adapt_only: np.ndarray) -> float:
    """Transfer-normalised d_tr = ||F_a - F_b|| / ||F_b - F_b(t = 0)||.

    ``f_b_adapt_only`` is F_b without outer training (K_in(X, X') T' Y'): the denominator is the
    part of F_b that the training tasks produced.
    """
    _same_shape(f_a, f_b, f_b_adapt_only)
    return float(np.linalg.norm(f_a - f_b) / max(np.linalg.norm(f_b - f_b_adapt_only), 1e-300))


def relative_error(pred: np.ndarray, target: np.ndarray) -> float:
    """Test error ||F - Y||^2 / ||Y||^2: 1 is the error of predicting zero, lower is better."""
    _same_shape(pred, target)
    return float(np.sum((pred - target) ** 2) / max(np.sum(target ** 2), 1e-300))


def accuracy(pred: np.ndarray, labels: np.ndarray) -> float:
    """Classification accuracy of argmax over the last axis against integer ``labels``."""
    require(np.shape(pred)[:-1] == np.shape(labels),
            f"predictions {np.shape(pred)} do not match labels {np.shape(labels)}")
    return float(np.mean(np.argmax(pred, axis=-1) == labels))


def fit_loglog(x, y) -> tuple[float, float]:
    """Least-squares fit of log y = slope * log x + intercept; returns (slope, intercept).

    Points with y <= 0 or non-finite are dropped; needs at least two points left.
    """
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    require(ok.sum() >= 2, "a log-log fit needs at least two positive points")
    slope, intercept = np.polyfit(np.log(x[ok]), np.log(y[ok]), 1)
    return float(slope), float(intercept)


def mean_ci(values, ddof: int = 1) -> tuple[float, float]:
    """Mean and 95% normal-approximation half-width 1.96 * std / sqrt(n) (0 for n = 1).

    ``ddof`` is the std's delta degrees of freedom (1: sample std; the episode evaluation of the
    trainer uses 0, the few-shot convention).
    """
    v = np.asarray(values, np.float64)
    v = v[np.isfinite(v)]
    require(v.size >= 1, "no finite values to average")
    half = 1.96 * v.std(ddof=ddof) / np.sqrt(v.size) if v.size > 1 else 0.0
    return float(v.mean()), float(half)
