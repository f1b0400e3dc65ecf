"""The derived depth law of the MTL-GBML distance (docs/theory.md section 8), as functions.

At depth every network of the map has kernels of the *two-level* form (section 8.1)

    K ~ q J + (informative part),     Theta ~ D [rho J + (1 - rho) I_same] + (informative part),

q = K(x, x), D = Theta(x, x), rho = the off-diagonal ratio Theta(x, x') / D (ReLU without biases
1/4, with biases 4/7; critical Erf: see section 8). The informative part, the only one that still
knows the inputs, has relative order L^-1 (ReLU without biases, critical Erf) or L^-1/2 (ReLU with
biases, once L b^2 / 2 >> 1). On this form the predictors' *constant* parts have closed forms that
use only the draw's labels, q, D, rho and the support kernel's top eigenvalue lambda_1:

- r_1 = 1 - lambda_1 g(lambda_1) (:func:`constant_residual`): what the inner loop leaves of a constant;
- MTL-B's constant: c_B = r_1 (rho D - q) N n_z m_U o(lambda_M),
  lambda_M = (rho D - q) N n_z + (1 - rho) D + q n_z  (:func:`mtl_b_constant`);
- ANIL's constant: c_A = r_1^2 rho D N n_q m_r o(D phi_1), m_r = m_q - (1 - r_1) m_s,
  phi_1 = (1 - rho)(1 + (1 - r_1)^2 n_q / n_s) + rho r_1^2 N n_q  (:func:`anil_constant`);
- MAML's weight on the training query mean (:func:`maml_weights`),

with o(lambda) the outer operator's eigenvalue map (1 - e^{-t lambda / kappa_out}) / lambda, or
1 / (lambda + ridge) at t = inf. :func:`predict_draw` evaluates every prediction for one draw and
depth; :func:`measure_draw` measures the same quantities from the exact predictors. Nothing is fitted,
but one thing is not derived: the *amplitude* of the informative part, which :func:`cell_rows` carries over
from the measured previous depth (only its depth profile, :func:`informative_profile`, is derived).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ntk_bridge.closed_form.inner_loop import InnerLoop
from ntk_bridge.closed_form.predictors import PredictorConfig, predict
from ntk_bridge.closed_form.tasks import TaskSet
from ntk_bridge.engine.spec import Kernels

# exponent in L of the *informative* (input-dependent) part of the transfer terms, per network kind, as L -> inf
INFORMATIVE_EXPONENT = {"relu": -1.0, "relu-bias": -0.5, "erf": -1.0}
# the off-diagonal ratio rho = Theta(x, x') / Theta(x, x) of distinct inputs as L -> inf (docs/theory.md 8.1)
DEEP_RHO = {"relu": 1 / 4, "relu-bias": 4 / 7, "erf": 1 / 3}
# the two-level form and the informative exponents are asymptotic: the law is applied as derived from this depth
# on (below it the neglected O(1/L) terms move the informative exponent of d_rel by more than 0.05; theory 8.6)
LAW_MIN_DEPTH = 256
# ReLU with biases: the informative exponent is within 0.1 of -1/2 only beyond this many L_b (the transition form)
ONSET_SETTLED = 24

# exponent of each quantity in L; "mean removed": L << L* = a / (b r_1); "plateau": L* << L << L** = c / (e r_1^2)
# (bias-free ReLU; with biases replace -1 by -1/2, see INFORMATIVE_EXPONENT)
EXPONENTS = {
    "mean removed": {("d_rel", "mtl-a vs anil"): -1.0, ("d_rel", "mtl-b vs anil"): -1.0,
                     ("d_tr", "mtl-b vs anil"): 0.0, ("d_rel", "mtl-b vs maml"): 0.0},
    "plateau": {("d_rel", "mtl-a vs anil"): -1.0, ("d_rel", "mtl-b vs anil"): 0.0,
                ("d_tr", "mtl-b vs anil"): 1.0, ("d_rel", "mtl-b vs maml"): 0.0},
}


def network_kind(activation: str, b_std: float) -> str:
    """"relu" (no biases), "relu-bias" or "erf" (critical Erf): the keys of the tables above."""
    if activation == "relu":
        return "relu-bias" if b_std > 0 else "relu"
    return "erf"


def deep_rho(activation: str, b_std: float) -> float:
    """rho as L -> inf: 1/4 (ReLU), 4/7 (ReLU with biases, L >> L_b), 1/3 (critical Erf) (docs/theory.md 8.1)."""
    return DEEP_RHO[network_kind(activation, b_std)]


def bias_onset_depth(b_std: float) -> float:
    """L_b = 2 / b^2: the depth where the bias part L b^2 / 2 of K(x, x) = 1 + L b^2 / 2 reaches 1."""
    return math.inf if b_std == 0 else 2.0 / b_std ** 2


def informative_profile(activation: str, b_std: float, depth: float) -> float:
    """I(L) up to a constant factor: the size of the NTK's input-dependent part relative to D (docs/theory.md 8.1).

    L^p (p = INFORMATIVE_EXPONENT) without biases and for critical Erf. ReLU with biases, from the continuum
    recursion du/dl = -u / (l + L_b) - c u^{3/2} (v = u^{-1/2} is linear: v = c L_b (1 + y - sqrt(1 + y)),
    y = l / L_b, its input-dependent part grows like sqrt(1 + y)), the NTK sum over layers
    Theta = sum_l q_l prod_{k>l} (1 - arccos(rho_k) / pi) gives, with S = sqrt(1 + L / L_b), T = S - 1,

        I(L) = (1/12 + 3T/20 + T^2/10 + T^3/42) / (S^4 - 1)

    -> 1 / (24 L / L_b) for L << L_b (exponent -1) and 1 / (42 sqrt(L / L_b)) for L >> L_b (exponent -1/2):
    halfway (-3/4) near 2 L_b, within 0.1 of -1/2 only beyond about 24 L_b. Neglected: the inputs' own
    v_0 = u_0^{-1/2} ~ 1 beside c L_b (S - 1) (relative size 1 / (c L_b (S - 1)), c = 2 sqrt2 / (3 pi)) and O(1/L).
    """
    kind = network_kind(activation, b_std)
    if kind != "relu-bias":
        return float(depth) ** INFORMATIVE_EXPONENT[kind]
    s = math.sqrt(1.0 + depth / bias_onset_depth(b_std))
    t = s - 1.0
    return (1 / 12 + 3 * t / 20 + t * t / 10 + t ** 3 / 42) / (s ** 4 - 1.0)


def informative_ratio(activation: str, b_std: float, from_depth: float, to_depth: float) -> float:
    """I(to_depth) / I(from_depth) (:func:`informative_profile`): what carries an informative part across depths."""
    return informative_profile(activation, b_std, to_depth) / informative_profile(activation, b_std, from_depth)


def informative_exponent(activation: str, b_std: float, depth: float | None = None) -> float:
    """The exponent of the informative part in L: the L -> inf value (-1, or -1/2 for ReLU with biases) when
    ``depth`` is None, else the local slope d ln I / d ln L of :func:`informative_profile` at ``depth``
    (ReLU with biases: -1 well below L_b = 2 / b^2, -1/2 well beyond; docs/theory.md 8.1)."""
    if depth is None:
        return INFORMATIVE_EXPONENT[network_kind(activation, b_std)]
    h = 1e-4
    return math.log(informative_ratio(activation, b_std, depth * math.exp(-h), depth * math.exp(h))) / (2 * h)


def law_conditions(activation: str, b_std: float, depth: int) -> str:
    """Where ``depth`` stands against the derivation's conditions: "" inside them, else a label.

    "outside: shallow" below LAW_MIN_DEPTH; for ReLU with biases "outside: below the bias onset" below L_b and
    "transition" between L_b and ONSET_SETTLED L_b (the exponent there is the transition form's, not -1/2).
    """
    if depth < LAW_MIN_DEPTH:
        return f"outside: shallow (L < {LAW_MIN_DEPTH}; the two-level form and exponents are asymptotic)"
    if network_kind(activation, b_std) != "relu-bias":
        return ""
    onset = bias_onset_depth(b_std)
    p = informative_exponent(activation, b_std, depth)
    if depth < onset:
        return (f"outside: below the bias onset L_b = {onset:g} (L = {depth / onset:.2g} L_b; informative exponent "
                f"{p:+.2f} from the transition form, not -1/2)")
    if depth < ONSET_SETTLED * onset:
        return (f"transition: L = {depth / onset:.3g} L_b (informative exponent {p:+.2f} from the transition form; "
                f"within 0.1 of -1/2 only beyond {ONSET_SETTLED} L_b)")
    return ""


def crossover_depth(depth: float, informative: float, floor: float, exponent: float) -> float:
    """L* (or L**): the depth where the informative part I(L) = informative (L / depth)^exponent falls to
    ``floor``: L* = depth (informative / floor)^(1 / |exponent|) (docs/theory.md 8.4). The informative
    part's size at one depth is the input (the law does not predict it); inf if the floor is 0."""
    if floor <= 0:
        return math.inf
    return depth * (informative / floor) ** (1.0 / abs(exponent))


def constant_residual(inner: InnerLoop, lambda_1: float, kappa: float = 1.0) -> float:
    """r_1 = 1 - lambda_1 g(lambda_1): what the inner loop leaves of a constant function.

    ``lambda_1`` is the support kernel's top eigenvalue (about n_s q at depth, the constant
    direction); ``kappa`` the support kernel's mean diagonal, which divides the rate of a
    ``scale="diag"`` inner loop. exp(-c lambda_1) for flow (c = lam tau, or lam tau / kappa),
    (1 - a lambda_1)^k for steps, mu / (lambda_1 + mu) for ridge, eps / (lambda_1 + eps) for
    tau = inf, 1 for no inner loop.
    """
    div = kappa if inner.scale == "diag" else 1.0
    c = inner.lam * inner.tau / div
    return {
        "flow": lambda: math.exp(-c * lambda_1),
        "steps": lambda: (1.0 - inner.step_size / div * lambda_1) ** inner.steps,
        "ridge": lambda: inner.mu / (lambda_1 + inner.mu),
        "inf": lambda: inner.eps / (lambda_1 + inner.eps),
        "none": lambda: 1.0,
    }[inner.form]()


def outer_map(lam: float, config: PredictorConfig, kappa_out: float) -> float:
    """o(lambda): the outer operator's eigenvalue map (docs/theory.md 4), at one eigenvalue."""
    if not math.isfinite(config.outer_time):
        return 1.0 / (lam + config.outer_ridge)
    c = config.outer_rate * config.outer_time / (kappa_out if config.outer_scale == "diag" else 1.0)
    return -math.expm1(-c * lam) / lam


@dataclass(frozen=True)
class Shape:
    """The two-level form of one draw's kernels at one depth (means over the draw's points).

    q: mean K(x, x); D: mean Theta(x, x); rho: mean Theta(x, x') / D over distinct points;
    lambda_1: mean over test tasks of the support K's top eigenvalue; r_1: the inner loop's
    constant residual at lambda_1 (test side) and r_1_train (mean over training tasks).
    """

    q: float
    D: float
    rho: float
    lambda_1: float
    r_1: float
    r_1_train: float


def _top_eigenvalue(k: np.ndarray, s: np.ndarray) -> np.ndarray:
    return np.array([np.linalg.eigvalsh(k[np.ix_(si, si)])[-1] for si in s])


def shape(tasks: TaskSet, gram: Kernels, inner: InnerLoop) -> Shape:
    """Read q, D, rho and lambda_1 from the draw's kernels; r_1 from the inner loop (nothing fitted)."""
    theta, k = np.asarray(gram.theta), np.asarray(gram.k)
    n = theta.shape[0]
    d = float(np.mean(np.diagonal(theta)))
    off = ~np.eye(n, dtype=bool)
    rho = float(np.mean(theta[off]) / d)
    q = float(np.mean(np.diagonal(k)))
    r1 = [constant_residual(inner, lam, float(np.mean(np.diagonal(k)[si])))
          for lam, si in zip(_top_eigenvalue(k, tasks.test_s), tasks.test_s)]
    r1t = [constant_residual(inner, lam, float(np.mean(np.diagonal(k)[si])))
           for lam, si in zip(_top_eigenvalue(k, tasks.train_s), tasks.train_s)]
    return Shape(q, d, rho, float(np.mean(_top_eigenvalue(k, tasks.test_s))), float(np.mean(r1)), float(np.mean(r1t)))


def _sizes(tasks: TaskSet) -> tuple[int, int, int]:
    return len(tasks.train), tasks.train_q.shape[1], tasks.train_s.shape[1]


def _means(tasks: TaskSet) -> tuple[float, float, float]:
    """(m_q, m_s, m_U): means of the training query labels, support labels, and of both."""
    yq = np.concatenate([t.y_query for t in tasks.train])
    ys = np.concatenate([t.y_support for t in tasks.train])
    return float(yq.mean()), float(ys.mean()), float(np.concatenate([yq, ys]).mean())


def mtl_b_constant(tasks: TaskSet, s: Shape, config: PredictorConfig) -> float:
    """c_B = r_1 (rho D - q) N n_z m_U o(lambda_M): MTL-B's transfer term on the constant direction.

    Theta_MTL = Theta_b + [same task] K ~ (rho D - q) J + (1 - rho) D I + q blockdiag(J_{n_z}) has
    the all-ones vector as eigenvector, eigenvalue lambda_M = (rho D - q) N n_z + (1 - rho) D + q n_z;
    the test side [Theta_b(X, Z) - P' Theta_b(X', Z)] keeps r_1 (rho D - q) of it. t = inf, D >> q:
    c_B -> r_1 kappa m_U, kappa = N n_z / (N n_z + (1 - rho) / rho).
    """
    n, nq, ns = _sizes(tasks)
    nz = nq + ns
    _, _, m_u = _means(tasks)
    lam_m = (s.rho * s.D - s.q) * n * nz + (1 - s.rho) * s.D + s.q * nz
    return s.r_1 * (s.rho * s.D - s.q) * n * nz * m_u * outer_map(lam_m, config, s.D)


def anil_constant(tasks: TaskSet, s: Shape, config: PredictorConfig) -> float:
    """c_A = r_1 r_1' rho D N n_q m_r o(D phi_1): ANIL's transfer term on the constant direction.

    A 1 = r_1' 1 on the training side, A' 1 = r_1 1 on the test side, P_i ~ ((1 - r_1') / n_s) J, so
    Phi = A Theta A^T has the all-ones eigenvalue D phi_1, phi_1 = (1 - rho)(1 + (1 - r_1')^2 n_q / n_s)
    + rho r_1'^2 N n_q, and the residual's mean is m_r = m_q - (1 - r_1') m_s. t = inf and
    rho r_1^2 N n_q << 1 (ReLU without biases: rho = 1/4, n_q = n_s): c_A ~ r_1^2 N n_q m_r / 6.
    """
    n, nq, ns = _sizes(tasks)
    m_q, m_s, _ = _means(tasks)
    rt = s.r_1_train
    m_r = m_q - (1 - rt) * m_s
    phi_1 = (1 - s.rho) * (1 + (1 - rt) ** 2 * nq / ns) + s.rho * rt ** 2 * n * nq
    return s.r_1 * rt * s.rho * s.D * n * nq * m_r * outer_map(s.D * phi_1, config, s.D)


def _g(inner: InnerLoop, lam: float, kappa: float) -> float:
    """The inner loop's eigenvalue map g(lambda) (docs/theory.md 3); 1 - lam g = constant_residual."""
    return (1.0 - constant_residual(inner, lam, kappa)) / lam


def maml_constants(tasks: TaskSet, gram: Kernels, s: Shape, config: PredictorConfig) -> tuple[float, float]:
    """(alpha_M, c_M): MAML's deep prediction alpha_M m'_j + c_M on test task j (support mean m'_j).

    MAML adapts with Theta ~ D [rho J + (1 - rho) I]: the support's top eigenvalue
    lambda_M = D (rho n_s + 1 - rho) (read from the draw), P_M ~ rho D g(lambda_M) J, so
    alpha_M = rho D n_s g(lambda_M) and r_M = 1 - alpha_M (3 / (n_s + 3) at tau = inf, rho = 1/4).
    Its transfer term is ANIL's with (alpha_M, r_M) for (1 - r_1, r_1):
    c_M = r_M^2 rho D N n_q m_r o(D phi_M), m_r = m_q - alpha_M m_s,
    phi_M = (1 - rho)(1 + alpha_M^2 n_q / n_s) + rho r_M^2 N n_q. At t = inf c_M = w m_r with
    w = rho r_M^2 N n_q / phi_M, which tends to 1 only as N -> inf: the "(5/8) support + (3/8)
    training mean" form is that limit with m_q = m_s.
    """
    theta = np.asarray(gram.theta)
    n, nq, ns = _sizes(tasks)
    m_q, m_s, _ = _means(tasks)
    lam = _top_eigenvalue(theta, tasks.train_s)
    kap = [float(np.mean(np.diagonal(theta)[si])) for si in tasks.train_s]
    alpha = float(np.mean([s.rho * s.D * ns * _g(config.inner, l, k) for l, k in zip(lam, kap)]))
    r_m = 1.0 - alpha
    phi = (1 - s.rho) * (1 + alpha ** 2 * nq / ns) + s.rho * r_m ** 2 * n * nq
    c_m = r_m ** 2 * s.rho * s.D * n * nq * (m_q - alpha * m_s) * outer_map(s.D * phi, config, s.D)
    return alpha, c_m


def maml_training_weight(tasks: TaskSet, alpha: float, rho: float) -> float:
    """w = rho r_M^2 N n_q / phi_M (t = inf): the weight of m_q - alpha_M m_s in MAML's deep prediction."""
    n, nq, ns = _sizes(tasks)
    r_m = 1.0 - alpha
    return rho * r_m ** 2 * n * nq / ((1 - rho) * (1 + alpha ** 2 * nq / ns) + rho * r_m ** 2 * n * nq)


@dataclass(frozen=True)
class Law:
    """Every prediction of docs/theory.md 8 for one draw at one depth (nothing fitted).

    c_b, c_a, c_m: MTL-B's, ANIL's and MAML's constants; alpha_m: MAML's weight on the test support
    mean; the deep predictions on test task j (support mean m'_j) are (1 - r_1) m'_j + c_B (MTL-B),
    (1 - r_1) m'_j + c_A (ANIL), alpha_M m'_j + c_M (MAML). From them: norm_anil = ||F_ANIL||,
    plateau_b_anil = |c_B - c_A| sqrt(n) / ||F_ANIL|| (the floor of d_rel(MTL-B, ANIL)),
    plateau_a_anil = |c_A| sqrt(n) / ||F_ANIL|| (the floor of d_rel(MTL-A, ANIL)), d_rel_b_maml
    (the limit of d_rel(MTL-B, MAML)), maml_mean (F_MAML's mean over the test queries), and
    exponent: the informative part's local exponent in L at this depth (:func:`informative_exponent`).
    """

    depth: int
    shape: Shape
    c_b: float
    c_a: float
    alpha_m: float
    c_m: float
    norm_anil: float
    plateau_b_anil: float
    plateau_a_anil: float
    d_rel_b_maml: float
    maml_mean: float
    exponent: float


def predict_draw(tasks: TaskSet, gram: Kernels, config: PredictorConfig, depth: int,
                 activation: str = "relu", b_std: float = 0.0) -> Law:
    """The law's predictions for one draw (its labels and kernels) at one depth."""
    s = shape(tasks, gram, config.inner)
    c_b, c_a = mtl_b_constant(tasks, s, config), anil_constant(tasks, s, config)
    alpha_m, c_m = maml_constants(tasks, gram, s, config)
    m_test = tasks.test_y_support().mean(axis=(1, 2))                  # support mean per test task
    nq = tasks.test_q.shape[1]
    norm = lambda v: float(np.sqrt(nq * np.sum(v ** 2)))               # noqa: E731  (constant per task)
    f_b, f_a, f_m = (1 - s.r_1) * m_test + c_b, (1 - s.r_1) * m_test + c_a, alpha_m * m_test + c_m
    n = tasks.test_q.size
    na = norm(f_a)
    return Law(depth, s, c_b, c_a, alpha_m, c_m, na, abs(c_b - c_a) * math.sqrt(n) / na,
               abs(c_a) * math.sqrt(n) / na, norm(f_b - f_m) / norm(f_m), float(f_m.mean()),
               informative_exponent(activation, b_std, depth))


@dataclass(frozen=True)
class Measured:
    """The same quantities from the exact predictors: the constant (mean over every test query) of
    F_MTL-B - F_ANIL and of F_ANIL - F_head-only, the zero-mean remainders' norms (the informative
    parts), ||F_ANIL||, the d_rel of each pair, F_MAML's mean, and the parts of F_MTL-B - F_MAML and of
    F_MAML that vary within a test task (rest_b_maml, rest_maml: the law predicts them 0)."""

    mean_b_anil: float
    mean_anil_head: float
    rest_b_anil: float
    rest_a_anil: float
    norm_anil: float
    d_rel_b_anil: float
    d_rel_a_anil: float
    d_rel_b_maml: float
    maml_mean: float
    rest_b_maml: float
    rest_maml: float


def _within_task(f: np.ndarray) -> float:
    """||f - its mean over each test task's queries||: the part a per-task constant cannot carry."""
    return float(np.linalg.norm(f - f.mean(axis=(1, 2), keepdims=True)))


def measure_draw(tasks: TaskSet, gram: Kernels, config: PredictorConfig) -> Measured:
    """Run MTL-B, ANIL, MAML and head-only (= MTL-A); split each difference into mean + remainder."""
    f_b, f_a = predict("mtl-b", tasks, gram, config), predict("anil", tasks, gram, config)
    f_h, f_m = predict("head-only", tasks, gram, config), predict("maml", tasks, gram, config)
    db, da = f_b - f_a, f_h - f_a
    na = float(np.linalg.norm(f_a))
    return Measured(float(db.mean()), float((f_a - f_h).mean()), float(np.linalg.norm(db - db.mean())),
                    float(np.linalg.norm(da - da.mean())), na, float(np.linalg.norm(db) / na),
                    float(np.linalg.norm(da) / na), float(np.linalg.norm(f_b - f_m) / np.linalg.norm(f_m)),
                    float(f_m.mean()), _within_task(f_b - f_m), _within_task(f_m))


def mtl_anil_plateau(tasks: TaskSet, r_1: float, f_anil: np.ndarray) -> float:
    """The bias-free, t = inf, small-r_1 limit b r_1 of d_rel(MTL-B, ANIL) (the first form of section 8):
    r_1 kappa |m_U| sqrt(#test queries) / ||F_ANIL||, kappa = N n_z / (N n_z + 3). It leaves out ANIL's own
    constant (see :func:`anil_constant`); kept for the record of what was first derived."""
    u = np.concatenate([np.concatenate([t.y_query, t.y_support]) for t in tasks.train])
    kappa = u.shape[0] / (u.shape[0] + 3.0)
    return float(r_1 * kappa * abs(u.mean()) * math.sqrt(f_anil.size) / np.linalg.norm(f_anil))




# ----------------------------------------------------------------------------- one cell of the map, predicted vs measured

# (quantity, Law field or callable, Measured field); "informative" rows are predicted from the previous depth
COMPARED = (
    ("mean(F_MTL-B - F_ANIL) = c_B - c_A", lambda w: w.c_b - w.c_a, "mean_b_anil"),
    ("mean(F_ANIL - F_head-only) = c_A", lambda w: w.c_a, "mean_anil_head"),
    ("d_rel(MTL-B, ANIL): floor", lambda w: w.plateau_b_anil, "d_rel_b_anil"),
    ("d_rel(MTL-A, ANIL): floor", lambda w: w.plateau_a_anil, "d_rel_a_anil"),
    ("d_rel(MTL-B, MAML)", lambda w: w.d_rel_b_maml, "d_rel_b_maml"),
    ("mean F_MAML = alpha_M m' + c_M", lambda w: w.maml_mean, "maml_mean"),
)
INFORMATIVE = (("informative part of d_rel(MTL-B, ANIL)", "rest_b_anil"),
               ("informative part of d_rel(MTL-A, ANIL)", "rest_a_anil"))


def cell_rows(tasks: TaskSet, grams: dict, config: PredictorConfig, activation: str, b_std: float,
              draw: int) -> list[dict]:
    """Rows (depth, draw, quantity, predicted, measured, carried_from, condition) for one draw of one cell.

    The informative parts (zero-mean remainders over ||F_ANIL||) are not derived in amplitude: each is
    *carried over from the measured previous depth* L0 of the list (``carried_from``) times
    I(L) / I(L0) (:func:`informative_ratio`: the derived depth profile, the bias onset included; NaN at the
    first depth); the full d_rel is then predicted in quadrature, sqrt(floor^2 + informative^2), and, for
    contrast, as the linear sum floor + informative of the first form of section 8. ``condition`` is
    :func:`law_conditions` ("" inside the derivation's conditions).
    """
    rows, prev = [], None
    for depth in sorted(grams):
        law = predict_draw(tasks, grams[depth], config, depth, activation, b_std)
        got = measure_draw(tasks, grams[depth], config)
        base = dict(depth=depth, draw=draw, r_1=law.shape.r_1, rho=law.shape.rho,
                    condition=law_conditions(activation, b_std, depth), carried_from=math.nan)
        rows += [dict(base, quantity=q, predicted=float(f(law)), measured=float(getattr(got, m))) for q, f, m in COMPARED]
        floors = {"rest_b_anil": (law.plateau_b_anil, got.d_rel_b_anil, "d_rel(MTL-B, ANIL)"),
                  "rest_a_anil": (law.plateau_a_anil, got.d_rel_a_anil, "d_rel(MTL-A, ANIL)")}
        carried = dict(base, carried_from=math.nan if prev is None else prev[0])
        for q, m in INFORMATIVE:
            pred = math.nan if prev is None else prev[1][m] * informative_ratio(activation, b_std, prev[0], depth)
            rows.append(dict(carried, quantity=q, predicted=pred, measured=getattr(got, m) / got.norm_anil))
            floor, d, name = floors[m]
            rows.append(dict(carried, quantity=f"{name} = sqrt(floor^2 + informative^2)",
                             predicted=math.hypot(floor, pred), measured=d))
            rows.append(dict(carried, quantity=f"{name} = floor + informative (linear)", predicted=floor + pred,
                             measured=d))
        prev = (depth, {m: getattr(got, m) / got.norm_anil for _, m in INFORMATIVE})
    return rows


def compare_cell(study, progress: bool = False):
    """Predicted beside measured for every draw and depth of one depth study (a regime-map cell):
    a DataFrame with columns depth, draw, quantity, predicted, measured, r_1, rho."""
    import pandas as pd
    from tqdm import tqdm

    from ntk_bridge.closed_form.tasks import make_tasks
    from ntk_bridge.engine.fc import depth_sweep
    from ntk_bridge.engine.precision import float64

    rows = []
    for draw in tqdm(range(study.draws), desc="law vs measured", disable=not progress, unit="draw"):
        tasks = make_tasks(study.family, study.seed + draw)
        with float64():
            grams = depth_sweep(study.net, tasks.points, depths=study.depths)
            rows += cell_rows(tasks, grams, study.predictor, study.net.activation, study.net.b_std, draw)
    return pd.DataFrame(rows)


def summarize_comparison(frame):
    """Per depth x quantity: predicted and measured mean and sd over draws, the largest per-draw
    |measured - predicted| relative to |measured| (max_rel_gap), and the row's carried_from and condition."""
    import pandas as pd

    out = []
    for (depth, q), g in frame.groupby(["depth", "quantity"], sort=False):
        gap = (g["measured"] - g["predicted"]).abs() / g["measured"].abs().clip(lower=1e-300)
        extra = {c: g[c].iloc[0] for c in ("carried_from", "condition") if c in g}
        out.append(dict(depth=depth, quantity=q, predicted=g["predicted"].mean(), predicted_sd=g["predicted"].std(ddof=1),
                        measured=g["measured"].mean(), measured_sd=g["measured"].std(ddof=1),
                        max_rel_gap=gap.max(skipna=False), draws=len(g), **extra))
    return pd.DataFrame(out)
