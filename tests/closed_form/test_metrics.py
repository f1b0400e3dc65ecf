"""metrics.mean_ci: Student-t intervals that cover at their nominal rate, NaN never dropped."""

import math

import numpy as np
import pytest

from ntk_bridge.errors import BridgeError
from ntk_bridge.stats import format_mean_ci, mean_ci, t_quantile

# t_{0.975, df} from printed tables (e.g. NIST/SEMATECH e-Handbook 1.3.6.7.2), 3 decimals
T_TABLE = {1: 12.706, 2: 4.303, 3: 3.182, 9: 2.262, 29: 2.045}


@pytest.mark.parametrize("df", sorted(T_TABLE))
def test_t_quantile_matches_the_printed_table(df):
    assert t_quantile(df + 1) == pytest.approx(T_TABLE[df], abs=5e-4)
    assert t_quantile(100_000) == pytest.approx(1.95996, abs=1e-4)


def test_half_width_is_t_times_std_over_sqrt_n():
    m, h = mean_ci([1.0, 2.0, 3.0])                       # mean 2, sample std 1, n 3
    assert m == 2.0 and h == pytest.approx(4.303 / math.sqrt(3), abs=5e-4)
    v = np.array([0.2, 0.5, 0.4, 0.9])                   # ddof 0 (the trainer's convention) still honoured
    m0, h0 = mean_ci(v, ddof=0)
    assert m0 == pytest.approx(0.5) and h0 == pytest.approx(3.182 * v.std(ddof=0) / 2.0, abs=5e-4)


def test_the_interval_covers_the_true_mean_95_percent_of_the_time_at_n_3():
    # 20,000 samples of 3 standard normals: binomial sd of the coverage is sqrt(.95 * .05 / 2e4) = 0.0015;
    # the tolerance is 4 sd. The normal quantile 1.96 would cover only ~0.81 here.
    rng = np.random.default_rng(0)
    samples = rng.standard_normal((20_000, 3))
    halves = np.array([mean_ci(s)[1] for s in samples])
    covered = np.abs(samples.mean(1)) <= halves
    assert covered.mean() == pytest.approx(0.95, abs=4 * 0.0015)


def test_nan_is_reported_not_dropped_and_one_value_has_no_interval():
    m, h = mean_ci([1.0, float("nan"), 3.0])
    assert math.isnan(m) and math.isnan(h)
    m, h = mean_ci([0.7])
    assert m == 0.7 and math.isnan(h)
    with pytest.raises(BridgeError, match="no values"):
        mean_ci([])


def test_format_says_n_1_instead_of_a_zero_interval():
    assert format_mean_ci(0.25, float("nan"), 1) == "0.250 (n=1, no interval)"
    assert format_mean_ci(0.25, 0.0123, 4) == "0.250 +- 0.012"
