"""The exact muP limit of one-hidden-layer linear networks (ntk_bridge.finite.mup_limit, docs/theory.md 11).

(a) exactness: the project's own trainer (finite.training.train_and_predict) on a linear muP network
equals the recursion C <- A C A^T started from that network's empirical second moment, for every
method (second-order MAML too), to rtol 1e-10 (seen: <= 4e-15);
(b) convergence: finite muP networks at widths 256 and 4096 lie within the derived tolerance
(c + sqrt(2 lambda_max ln(1/delta))) / sqrt(n) of the limit, on every draw, method, width and seed;
(c) mutations of the recursion (a step factor, the first-order flag) break (a).
A small protocol (d = 8, 4 training / 2 test tasks, 3 + 3 points, outer time 5) keeps it cheap.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from ntk_bridge.closed_form.tasks import FamilyConfig, make_tasks
from ntk_bridge.finite import mup_limit as ml

CONFIG = ml.LimitConfig(outer_time=5.0)
FAMILY = FamilyConfig(family="subspace", d=8, n_train_tasks=4, n_test_tasks=2, n_query=3, n_support=3, rank=2,
                      spread=0.5)
D, N = 8, 4
# (method, first_order) of the trainer: the limit's methods and second-order MAML
CASES = [(m, CONFIG.first_order(m)) for m in ml.LIMIT_METHODS] + [("maml", False)]


def _trained(method, first_order, width, seed, tasks):
    from ntk_bridge.finite.training import GDConfig, train_and_predict

    lr, steps = ml.schedule(method, tasks, CONFIG)
    net = ml.linear_net(width, seed, D, N, CONFIG)
    gd = GDConfig(inner_step=CONFIG.inner_step, inner_steps=CONFIG.inner_steps, outer_lr=lr, outer_steps=steps,
                  first_order=first_order)
    return net, lr, steps, train_and_predict(method, net, tasks, gd).predictions[..., 0]


@pytest.fixture(scope="module")
def trained():
    """The trainer's predictions per (method, first order, width) on draw 0, seed 0."""
    tasks = make_tasks(FAMILY, 0)
    return tasks, {(m, fo, w): _trained(m, fo, w, 0, tasks) for m, fo in CASES for w in (64, 256)}


def _recursion(method, first_order, net, lr, steps, tasks):
    c0 = ml.empirical_moment(method, net, N, CONFIG)
    return ml.predict(method, c0, ml.limit_data(tasks), lr, steps, CONFIG, first_order)[0]


def _rel(a, b) -> float:
    return float(np.abs(a - b).max() / np.abs(b).max())


def test_trainer_equals_the_recursion_from_its_own_moment(trained):
    """The finite network IS the recursion started from its empirical moment (theory.md 11.2,
    consequence 1): rtol 1e-10 at widths 64 and 256, every method."""
    tasks, runs = trained
    for (m, fo, w), (net, lr, steps, want) in runs.items():
        assert steps > 0 or m == "head-only"
        np.testing.assert_allclose(_recursion(m, fo, net, lr, steps, tasks), want, rtol=1e-10, atol=1e-12,
                                   err_msg=f"{m} first_order={fo} width {w}")


def _mutated_step_factors(body: float, head: float):
    real = ml.step_factors

    def step_factors(config, d, n_heads, head_only):
        v = real(config, d, n_heads, head_only)
        return v.at[:d].multiply(body).at[d:].multiply(head)

    return step_factors


@pytest.mark.parametrize("body, head", [(1.0, 1.01), (1.01, 1.0)], ids=["readout-lr", "body-lr"])
def test_a_mutated_step_factor_breaks_exactness(trained, monkeypatch, body, head):
    """1% on the readout's (or the input layer's) per-neuron step factor: the recursion no longer
    equals the trainer -- for every method that takes such a step (head-only takes no body step)."""
    tasks, runs = trained
    monkeypatch.setattr(ml, "step_factors", _mutated_step_factors(body, head))
    ml._compiled.cache_clear()
    try:
        for (m, fo, w), (net, lr, steps, want) in runs.items():
            if w != 64 or (m == "head-only" and head == 1.0):
                continue
            assert _rel(_recursion(m, fo, net, lr, steps, tasks), want) > 1e-6, (m, fo)
    finally:
        ml._compiled.cache_clear()


def test_the_first_order_flag_matters(trained):
    """Second-order MAML's recursion against the first-order trainer (and back) differs far beyond 1e-10."""
    tasks, runs = trained
    for fo in (True, False):
        net, lr, steps, want = runs[("maml", fo, 64)]
        assert _rel(_recursion("maml", not fo, net, lr, steps, tasks), want) > 1e-6


def test_initial_moment_and_states():
    """Sigma_0 blocks (theory.md 11.1) and C^_0 -> Sigma_0: at width 2^14 every entry within 6 sd
    of its law (sd of a mean of n products: sqrt((S_ii S_jj + S_ij^2) / n))."""
    s0 = ml.initial_moment("mtl-b", D, N, CONFIG)
    assert s0.shape == (D + N + 1,) * 2
    np.testing.assert_allclose(s0[:D, :D], np.eye(D) * 2.0 / D)
    np.testing.assert_allclose(s0[D:, D:], 64.0)
    np.testing.assert_allclose(ml.initial_moment("mtl-a", D, N, CONFIG)[D:, D:], 64.0 * np.eye(N + 1))
    n = 2 ** 14
    for m in ("mtl-a", "mtl-b", "anil"):
        s = ml.initial_moment(m, D, N, CONFIG)
        c0 = ml.empirical_moment(m, ml.linear_net(n, 3, D, N, CONFIG), N, CONFIG)
        sd = np.sqrt((np.outer(np.diag(s), np.diag(s)) + s ** 2) / n)
        assert np.all(np.abs(c0 - s) <= 6 * sd), m


@pytest.mark.slow
def test_finite_networks_converge_to_the_limit_within_the_derived_tolerance():
    """For 3 task draws x 5 methods x widths {256, 4096} x 4 seeds (120 networks, their predictions
    from the recursion at their own moment, exact by the test above): ||F_n - F_inf|| <=
    (c + sqrt(2 lambda_max ln(1/delta))) / sqrt(n) with c, lambda_max from the limit's Jacobian and
    delta = 1e-3 / 120 (Bonferroni). Seen: at most 0.53 of the tolerance. Width is the variable:
    the pooled RMS error falls by 1/4 from 256 to 4096 (tolerance band [1/8, 1/2]). And the bound
    has teeth: the MTL-A limit (heads independent; 0.29 from MTL-B's networks) lies beyond twice
MTL-B's bound at width 2^16 (0.095; at 4096 the Bonferroni bound, 0.38, is still too wide)."""
    widths, seeds, draws = (256, 4096), range(4), [make_tasks(FAMILY, s) for s in range(3)]
    delta = 1e-3 / (len(draws) * len(ml.LIMIT_METHODS) * len(widths) * len(seeds))
    for m in ml.LIMIT_METHODS:
        lr, steps = ml.schedule(m, draws[0], CONFIG)          # one protocol per method: one compilation
        sq = {w: [] for w in widths}
        for i, tasks in enumerate(draws):
            data = ml.limit_data(tasks)
            limit = ml.predict(m, ml.initial_moment(m, D, N, CONFIG), data, lr, steps, CONFIG)[0]
            c2, lam = ml.fluctuation(m, data, lr, steps, CONFIG)
            for w in widths:
                tol = ml.tolerance(c2, lam, w, delta)
                for s in seeds:
                    c0 = ml.empirical_moment(m, ml.linear_net(w, s, D, N, CONFIG), N, CONFIG)
                    err = float(np.linalg.norm(ml.predict(m, c0, data, lr, steps, CONFIG)[0] - limit))
                    assert err <= tol, (m, i, w, s, err, tol)
                    sq[w].append(err ** 2)
        ratio = math.sqrt(np.mean(sq[4096]) / np.mean(sq[256]))
        assert 1 / 8 <= ratio <= 1 / 2, (m, ratio)
    data = ml.limit_data(draws[0])
    lr, steps = ml.schedule("mtl-b", draws[0], CONFIG)
    wrong = ml.predict("mtl-a", ml.initial_moment("mtl-a", D, N, CONFIG), data, lr, steps, CONFIG)[0]
    c2, lam = ml.fluctuation("mtl-b", data, lr, steps, CONFIG)
    c0 = ml.empirical_moment("mtl-b", ml.linear_net(2 ** 16, 0, D, N, CONFIG), N, CONFIG)
    err = float(np.linalg.norm(ml.predict("mtl-b", c0, data, lr, steps, CONFIG)[0] - wrong))
    assert err > 2 * ml.tolerance(c2, lam, 2 ** 16, delta), (err, ml.tolerance(c2, lam, 2 ** 16, delta))


def test_config_errors_name_the_field():
    from ntk_bridge.errors import BridgeError

    with pytest.raises(BridgeError, match="`lr_fraction`"):
        ml.LimitConfig(lr_fraction=3.0)
    with pytest.raises(BridgeError, match="unknown method 'ntk'"):
        ml.schedule("ntk", make_tasks(FAMILY, 0), CONFIG)
