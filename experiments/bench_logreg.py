"""Benchmark: batched JAX logistic regression vs a scikit-learn loop on the same episodes.

Both fit scikit-learn's objective ``C * sum_i CE(W x_i + b, y_i) + 0.5 ||W||^2`` (C = 3, the MTL
paper's test-time head) on each episode's L2-normalised support features and predict its
queries. Prints the time of each (JAX with and without its one-off compilation), the speed-up,
the accuracy of both (mean +- 95% CI = t(0.975, episodes-1)*std/sqrt(episodes)) and the fraction of query
predictions on which they agree.

Features: by default synthetic "trained-backbone-like" features (non-negative, class signal of
varying strength per episode, D = 640 like ResNet-12). With --run-dir, the real frozen features
of a trained run's test split (e.g. the Omniglot Conv-4 run).

    .venv/bin/python experiments/bench_logreg.py --episodes 2000 --shots 5
    .venv/bin/python experiments/bench_logreg.py --run-dir runs/omniglot_5shot_mtl_cpu
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def synthetic_episodes(episodes, n_way, shots, query, dim, seed):
    rng = np.random.default_rng(seed)
    centres = np.abs(rng.normal(size=(episodes, n_way, dim)))
    strength = rng.uniform(0.15, 0.6, size=(episodes, 1, 1))
    ys = np.tile(np.repeat(np.arange(n_way), shots), (episodes, 1))
    yq = np.tile(np.repeat(np.arange(n_way), query), (episodes, 1))

    def draw(y):
        base = np.take_along_axis(centres, y[..., None], 1) * strength
        return (np.maximum(base + rng.normal(size=base.shape), 0.0) + 0.01).astype(np.float32)

    return draw(ys), ys, draw(yq), yq


def run_episodes(run_dir, episodes, shots, query, seed):
    """Real frozen features of a run's test split on freshly sampled episodes."""
    from ntk_bridge.data.sampler import sample_episodes
    from ntk_bridge.train.evaluation import extract_features
    from ntk_bridge.train.loop import init_state, load_data, load_run_config, restore_for_eval
    config = load_run_config(run_dir)
    data = load_data(config, splits=("train", "test"))
    _, _, state, _ = init_state(config, data)
    state = restore_for_eval(Path(run_dir), state, "best")
    feats = extract_features(state, data.test.images, data.mean, data.std)
    eps = sample_episodes(data.test.labels, config.n_way, shots, query, episodes, seed)
    return (feats[eps.support_idx], eps.support_labels, feats[eps.query_idx], eps.query_labels,
            f"{config.dataset} test split, {config.backbone} features of {run_dir}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--episodes", type=int, default=2000)
    p.add_argument("--shots", type=int, default=5)
    p.add_argument("--queries", type=int, default=15)
    p.add_argument("--way", type=int, default=5)
    p.add_argument("--dim", type=int, default=640)
    p.add_argument("--C", type=float, default=3.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--run-dir", help="use the real features of this trained run's test split")
    p.add_argument("--out", help="write the numbers as JSON here")
    args = p.parse_args(argv)

    import jax
    import jax.numpy as jnp
    from sklearn.linear_model import LogisticRegression

    from ntk_bridge.train.evaluation import mean_ci
    from ntk_bridge.train.heads import l2_normalize, logreg_logits

    if args.run_dir:
        xs, ys, xq, yq, source = run_episodes(args.run_dir, args.episodes, args.shots, args.queries, args.seed)
    else:
        xs, ys, xq, yq = synthetic_episodes(args.episodes, args.way, args.shots, args.queries, args.dim, args.seed)
        source = f"synthetic trained-backbone-like features, D={args.dim}"
    n_way = int(ys.max()) + 1
    xs = np.asarray(l2_normalize(jnp.asarray(xs)))
    xq = np.asarray(l2_normalize(jnp.asarray(xq)))
    e = xs.shape[0]

    def jax_run():
        t = time.perf_counter()
        logits = logreg_logits(jnp.asarray(xs), jnp.asarray(ys), jnp.asarray(xq), n_way, args.C)
        pred = np.asarray(logits.argmax(-1))
        return pred, time.perf_counter() - t

    pred_jax, t_jax_first = jax_run()  # includes compilation
    pred_jax, t_jax = jax_run()

    t = time.perf_counter()
    pred_sk = np.empty_like(yq)
    for i in range(e):
        pred_sk[i] = LogisticRegression(C=args.C, max_iter=1000).fit(xs[i], ys[i]).predict(xq[i])
    t_sk = time.perf_counter() - t

    acc_jax = mean_ci((pred_jax == yq).mean(-1))
    acc_sk = mean_ci((pred_sk == yq).mean(-1))
    agree = float((pred_jax == pred_sk).mean())
    out = {
        "episodes": e, "n_way": n_way, "shots": args.shots, "queries": args.queries, "C": args.C,
        "features": source, "dim": int(xs.shape[-1]), "device": jax.devices()[0].device_kind,
        "cpu_count": os.cpu_count(), "sklearn_loop_s": t_sk, "jax_first_call_s": t_jax_first,
        "jax_s": t_jax, "speedup_incl_compile": t_sk / t_jax_first, "speedup": t_sk / t_jax,
        "acc_jax": acc_jax, "acc_sklearn": acc_sk, "prediction_agreement": agree,
        "ci_method": "95% CI = t(0.975, episodes-1)*std/sqrt(episodes)",
    }
    proto = f"{n_way}-way {args.shots}-shot, {e} episodes, {args.queries} queries/class, 95% CI = t(0.975, episodes-1)*std/sqrt(episodes)"
    print(f"logistic regression (C={args.C:g}) on {source}; {proto}")
    print(f"  scikit-learn loop (lbfgs)     {t_sk:8.2f} s   acc {acc_sk[0]:.2f} +- {acc_sk[1]:.2f} %")
    print(f"  JAX batched, first call       {t_jax_first:8.2f} s   (includes compilation)")
    print(f"  JAX batched, compiled         {t_jax:8.2f} s   acc {acc_jax[0]:.2f} +- {acc_jax[1]:.2f} %")
    print(f"  speed-up {t_sk / t_jax:.1f}x compiled, {t_sk / t_jax_first:.1f}x including compilation; "
          f"same prediction on {100 * agree:.2f}% of queries; "
          f"accuracy gap {abs(acc_jax[0] - acc_sk[0]):.3f} points  [{out['device']}, {os.cpu_count()} cores]")
    if args.out:
        from ntk_bridge.io import write_json
        write_json(args.out, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
