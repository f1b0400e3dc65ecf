"""Benchmark: batched JAX logistic regression against the fair scikit-learn loop, in one run.

Both sides fit scikit-learn's objective ``C * sum_i CE(W x_i + b, y_i) + 0.5 ||W||^2``
(multinomial, intercept not penalised; C = 3, the MTL paper's test-time head) on each episode's
L2-normalised support features and predict its queries, and both stop on the same measure: the
largest entry of the gradient of scikit-learn's scaled objective ``mean CE + ||W||^2 / (2 C S)``
at most ``--tol`` (what L-BFGS's ``gtol = tol`` bounds; ntk_bridge's Newton head checks it after
every step). Rows:

- ``sklearn-full``: ``LogisticRegression(C, tol, max_iter=1000)`` (L-BFGS) per episode on the
  D-dimensional features, BLAS held to one thread (threadpoolctl);
- ``sklearn-span``: the same on the episode's coordinates in the span of its support (m = S
  dimensions from an SVD, timed with the loop): the same problem dimension as ntk_bridge, whose
  minimiser gives the same predictions (the optimal W lies in that span);
- ``ntk_bridge``: ``ntk_bridge.train.heads.logreg_fit``, all episodes at once (vmapped Newton
  steps with a convergence check in the span coordinates), XLA held to one thread
  (``--jax-threads all`` lifts that).

Each method runs ``repeats`` times in A-B-A order (reversed on every other repeat); ntk_bridge's
first call, which compiles, is reported separately. Printed: median [min, max] wall seconds, the
CPU/wall ratio, the ratio of each peer to ntk_bridge (compiled; and in brackets against
ntk_bridge's first call, compilation included: the cost of a one-off evaluation),
accuracies (mean +- 95% CI = 1.96 std / sqrt(episodes)), the share of queries where the
predictions agree, the gradient measure at exit and the iterations. Load averages at the start,
per size and at the end.

    python experiments/bench_logreg.py [--episodes 200,1000,2000] [--shots 1,5] [--tol 1e-4]
        [--out experiments/results/bench/bench_logreg.txt]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from bench_common import Report, finish, int_tuple, load, out_path  # noqa: E402  (experiments/ is on sys.path)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ntk_bridge.errors import BridgeError, require  # noqa: E402


@dataclass(frozen=True)
class BenchConfig:
    """Sizes and the shared objective: ``C``, stopping tolerance ``tol``; synthetic features of
    dimension ``dim`` (or a trained run's, ``run_dir``)."""

    episodes: tuple[int, ...] = (200, 1000, 2000)
    shots: tuple[int, ...] = (1, 5)
    way: int = 5
    queries: int = 15
    dim: int = 640
    C: float = 3.0
    tol: float = 1e-4
    seed: int = 0
    jax_threads: str = "1"
    run_dir: str | None = None

    def __post_init__(self):
        require(len(self.episodes) > 0 and min(self.episodes) >= 1, "--episodes: give counts >= 1")
        require(len(self.shots) > 0 and min(self.shots) >= 1, "--shots: give counts >= 1")
        require(self.way >= 2 and self.queries >= 1 and self.dim >= 1, "--way >= 2, --queries >= 1, --dim >= 1")
        require(self.C > 0 and self.tol > 0, "--C and --tol must be > 0")
        require(self.jax_threads in ("1", "all"), "--jax-threads is 1 or all")

    def repeats(self, episodes: int) -> int:
        """Timed repeats per method: 5 up to 200 episodes, else 3."""
        return 5 if episodes <= 200 else 3


# ----------------------------------------------------------------------------- data

def synthetic_episodes(episodes, n_way, shots, query, dim, seed):
    """Trained-backbone-like features (non-negative, a class signal of varying strength per
    episode): support (E, n_way*shots, dim), labels, queries (E, n_way*query, dim), labels."""
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


def normalized(x: np.ndarray) -> np.ndarray:
    """Rows divided by their Euclidean norm (float32, as the trainer's evaluation)."""
    return (x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)).astype(np.float32)


# ----------------------------------------------------------------------------- methods

def span_coordinates(x: np.ndarray, xq: np.ndarray, rel_tol: float = 1e-6) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates of support x (S, D) and queries xq (Q, D) in an orthonormal basis of span(x)
    (right singular vectors with singular value > sqrt(rel_tol) * the largest)."""
    _, s, vt = np.linalg.svd(x, full_matrices=False)
    basis = vt[s ** 2 > rel_tol * s[0] ** 2]
    return x @ basis.T, xq @ basis.T


def sklearn_loop(xs, ys, xq, c: float, tol: float, span: bool):
    """Per-episode ``LogisticRegression(C=c, tol=tol, max_iter=1000)`` with one BLAS thread:
    (predictions (E, Q), L-BFGS iterations (E,))."""
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    pred = np.empty(xq.shape[:2], dtype=np.int64)
    iters = np.empty(len(xs), dtype=np.int64)
    with threadpool_limits(limits=1):
        for i in range(len(xs)):
            s, q = span_coordinates(xs[i], xq[i]) if span else (xs[i], xq[i])
            clf = LogisticRegression(C=c, tol=tol, max_iter=1000).fit(s, ys[i])
            pred[i], iters[i] = clf.predict(q), int(np.max(clf.n_iter_))
    return pred, iters


def jax_head(xs, ys, xq, n_way: int, c: float, tol: float):
    """``logreg_fit`` on all episodes: (predictions (E, Q), gradient measure (E,), steps (E,))."""
    import jax.numpy as jnp

    from ntk_bridge.train.heads import logreg_fit
    logits, gmax, steps = logreg_fit(jnp.asarray(xs), jnp.asarray(ys), jnp.asarray(xq), n_way, c, tol=tol)
    return np.asarray(logits.argmax(-1)), np.asarray(gmax), np.asarray(steps)


# ----------------------------------------------------------------------------- timing

@dataclass(frozen=True)
class Row:
    """One method at one (shots, episodes): wall seconds (median, min, max over ``repeats``),
    median CPU seconds, first call (compilation for ntk_bridge), accuracy and its 95% CI (%),
    agreement with ntk_bridge's predictions, iterations (median, max), and for ntk_bridge the
    largest gradient measure at exit."""

    shots: int
    episodes: int
    method: str
    repeats: int
    median_s: float
    min_s: float
    max_s: float
    cpu_median_s: float
    first_call_s: float
    acc: float
    acc_ci: float
    agree_with_ntk_bridge: float
    iters_median: float
    iters_max: int
    grad_measure_max: float


def timed(fn):
    c0, t0 = time.process_time(), time.perf_counter()
    res = fn()
    return time.perf_counter() - t0, time.process_time() - c0, res


def bench_size(xs, ys, xq, yq, config: BenchConfig) -> list[Row]:
    """All methods at one size, A-B-A order; returns one Row per method."""
    from ntk_bridge.train.evaluation import mean_ci

    n_way = int(ys.max()) + 1
    runs = {"sklearn-full": lambda: sklearn_loop(xs, ys, xq, config.C, config.tol, span=False),
            "sklearn-span": lambda: sklearn_loop(xs, ys, xq, config.C, config.tol, span=True),
            "ntk_bridge": lambda: jax_head(xs, ys, xq, n_way, config.C, config.tol)}
    first = {m: float("nan") for m in runs}
    first["ntk_bridge"] = timed(runs["ntk_bridge"])[0]
    walls, cpus, results = {m: [] for m in runs}, {m: [] for m in runs}, {}
    names = list(runs)
    for r in range(config.repeats(len(xs))):
        for m in (names if r % 2 == 0 else names[::-1]):
            wall, cpu, res = timed(runs[m])
            walls[m].append(wall)
            cpus[m].append(cpu)
            results[m] = res
    ours = results["ntk_bridge"][0]
    rows = []
    for m in names:
        pred, iters = results[m][0], results[m][-1]
        acc, ci = mean_ci((pred == yq).mean(-1))
        gmax = float(np.max(results[m][1])) if m == "ntk_bridge" else float("nan")
        rows.append(Row(xs.shape[1] // n_way, len(xs), m, len(walls[m]),
                        float(np.median(walls[m])), float(np.min(walls[m])), float(np.max(walls[m])),
                        float(np.median(cpus[m])), first[m], acc, ci, float((pred == ours).mean()),
                        float(np.median(iters)), int(np.max(iters)), gmax))
    return rows


# ----------------------------------------------------------------------------- report

HEADER = ("  method        median s [    min,     max] cpu/w  first  rep  peer/ours (+compile)"
          "  acc % +- 95% CI   agree   iters med/max  grad at exit")


def format_rows(rows: list[Row]) -> list[str]:
    ours = next(r for r in rows if r.method == "ntk_bridge")
    lines = []
    for r in rows:
        if r.method == "ntk_bridge":
            ratio, first = " " * 19, f"{r.first_call_s:6.2f}"
        else:
            ratio = f"{r.median_s / ours.median_s:7.2f}x ({r.median_s / ours.first_call_s:6.2f}x)"
            first = "     -"
        grad = f"{r.grad_measure_max:9.1e}" if r.method == "ntk_bridge" else ""
        lines.append(f"  {r.method:<13} {r.median_s:8.3f} [{r.min_s:7.3f}, {r.max_s:7.3f}] "
                     f"{r.cpu_median_s / r.median_s:5.2f} {first} {r.repeats:3d}  {ratio}"
                     f"  {r.acc:6.2f} +- {r.acc_ci:4.2f}   {100 * r.agree_with_ntk_bridge:6.2f}%"
                     f"  {r.iters_median:6.1f} / {r.iters_max:4d}  {grad}")
    return lines


def parse_args(argv) -> tuple[BenchConfig, Path | None]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--episodes", default="200,1000,2000")
    p.add_argument("--shots", default="1,5")
    p.add_argument("--queries", type=int, default=15)
    p.add_argument("--way", type=int, default=5)
    p.add_argument("--dim", type=int, default=640)
    p.add_argument("--C", type=float, default=3.0)
    p.add_argument("--tol", type=float, default=1e-4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--jax-threads", default="1", help="1 (default, as scikit-learn's BLAS) or all")
    p.add_argument("--run-dir", help="use the real features of this trained run's test split")
    p.add_argument("--out", help="also write the printed text here (.txt) and the rows next to it (.json)")
    a = p.parse_args(argv)
    episodes = int_tuple(a.episodes, "--episodes / --shots", "200,1000")
    shots = int_tuple(a.shots, "--episodes / --shots", "200,1000")
    out = out_path(a.out)
    if a.run_dir:
        require(Path(a.run_dir).is_dir(), f"--run-dir {a.run_dir} is not a folder")
    return BenchConfig(episodes, shots, a.way, a.queries, a.dim, a.C, a.tol, a.seed, a.jax_threads,
                       a.run_dir), out


def episodes_for(config: BenchConfig, episodes: int, shots: int):
    """(support, labels, queries, labels, description) with L2-normalised features."""
    if config.run_dir:
        xs, ys, xq, yq, source = run_episodes(config.run_dir, episodes, shots, config.queries, config.seed)
    else:
        xs, ys, xq, yq = synthetic_episodes(episodes, config.way, shots, config.queries, config.dim,
                                            config.seed + 1000 * shots + episodes)
        source = f"synthetic trained-backbone-like features, D={config.dim}"
    return normalized(np.asarray(xs)), np.asarray(ys), normalized(np.asarray(xq)), np.asarray(yq), source


def main(argv=None) -> int:
    try:
        config, out = parse_args(argv)
    except BridgeError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if config.jax_threads == "1":
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false").strip()
    import jax
    import sklearn

    say = Report(out)
    say(f"command: python experiments/bench_logreg.py {' '.join(sys.argv[1:])}")
    say(f"start {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}; {load()}; "
        f"{platform.processor() or platform.machine()}; jax {jax.__version__} ({jax.devices()[0].device_kind}, "
        f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}), scikit-learn {sklearn.__version__}")
    say(f"objective C * sum CE + 0.5 ||W||^2 (C = {config.C:g}, multinomial, intercept unpenalised); "
        f"stop: max |grad of mean CE + ||W||^2/(2 C S)| <= tol = {config.tol:g}; {config.way}-way, "
        f"{config.queries} queries/class; accuracy 95% CI = 1.96 std / sqrt(episodes)")
    rows: list[Row] = []
    for shots in config.shots:
        for episodes in config.episodes:
            xs, ys, xq, yq, source = episodes_for(config, episodes, shots)
            say(f"\n{shots}-shot, {episodes} episodes, {source}, dim {xs.shape[-1]} "
                f"(span m = {min(xs.shape[1], xs.shape[-1])}); {load()}")
            say(HEADER)
            size_rows = bench_size(xs, ys, xq, yq, config)
            for line in format_rows(size_rows):
                say(line)
            rows += size_rows
    finish(say, out, config, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
