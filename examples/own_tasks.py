"""Closed-form MTL and GBML predictors on your own regression tasks, with your own Gram matrix.

Run:  python examples/own_tasks.py      (a few seconds on a CPU)

1. Build a TaskSet from plain arrays (T tasks x n points x d inputs).
2. Write the NTK and NNGP Gram of a one-hidden-layer ReLU network by hand (the arc-cosine
   formulas) and check them against the engine's ``nb.fc_kernels``.
3. Predict the test queries with every closed form and compare MTL with GBML (d_rel, d_tr).
"""

import math

import numpy as np

import ntk_bridge as nb


def my_tasks(rng, n_tasks: int, d: int = 8, n_query: int = 10, n_support: int = 5):
    """Tasks y = a_i * cos(w . x / sqrt(d)) + b_i * (v . x / sqrt(d)): a shared shape, per-task amplitudes."""
    w, v = rng.standard_normal(d), rng.standard_normal(d)
    xq = nb.to_sphere(rng.standard_normal((n_tasks * n_query, d))).reshape(n_tasks, n_query, d)
    xs = nb.to_sphere(rng.standard_normal((n_tasks * n_support, d))).reshape(n_tasks, n_support, d)
    a = 1.0 + 0.3 * rng.standard_normal((n_tasks, 1))
    b = 0.5 + 0.3 * rng.standard_normal((n_tasks, 1))

    def label(x):
        return a * np.cos(x @ w / math.sqrt(d)) + b * (x @ v / math.sqrt(d))

    return xq, label(xq), xs, label(xs)


def relu_gram(x: np.ndarray):
    """NTK and NNGP of Dense(W_std=sqrt 2) -> ReLU -> Dense(1) on the sphere x.x/d = 1 (NTK parameterisation).

    rho = x.x'/d, theta = arccos rho: nngp = (sin theta + (pi - theta) rho) / pi,
    ntk = nngp + rho (pi - theta) / pi; both diagonals: nngp 1, ntk 2 (= depth + 1).
    """
    rho = np.clip(x @ x.T / x.shape[1], -1.0, 1.0)
    theta = np.arccos(rho)
    nngp = (np.sin(theta) + (math.pi - theta) * rho) / math.pi
    return nngp + rho * (math.pi - theta) / math.pi, nngp


def main() -> None:
    rng = np.random.default_rng(0)
    tasks = nb.task_set(train=my_tasks(rng, 20), test=my_tasks(rng, 10))
    ntk, nngp = relu_gram(tasks.points)
    mine = nb.gram(ntk=ntk, nngp=nngp)
    engine = nb.fc_kernels(nb.NetSpec(depth=1), tasks.points)
    print(f"{len(tasks.train)} training / {len(tasks.test)} test tasks, {len(tasks.points)} points, d = {tasks.points.shape[1]}")
    print(f"NTK diagonal: {np.diag(mine.ntk).mean():.6f} (depth + 1 = 2); NNGP diagonal: {np.diag(mine.nngp).mean():.6f}")
    print(f"hand-written Gram vs nb.fc_kernels: max |difference| = {np.max(np.abs(mine.ntk - engine.ntk)):.2e} (ntk), "
          f"{np.max(np.abs(mine.nngp - engine.nngp)):.2e} (nngp)")

    config = nb.PredictorConfig(inner=nb.InnerLoop("flow", tau=1.0), outer_time=math.inf)
    y = tasks.test_y_query()
    preds = {m: nb.predict(m, tasks, mine, config) for m in nb.METHODS}
    print("test error ||F - Y||^2 / ||Y||^2 (1 = predicting zero):")
    for m, f in preds.items():
        print(f"  {m:10s} {nb.relative_error(f, y):.4f}")
    for a, b in (("mtl-b", "anil"), ("mtl-b", "maml")):
        base = nb.adaptation_only(b, tasks, mine, config)
        print(f"{a} vs {b}: d_rel = {nb.d_rel(preds[a], preds[b]):.4f}, d_tr = {nb.d_tr(preds[a], preds[b], base):.4f}")


if __name__ == "__main__":
    main()
