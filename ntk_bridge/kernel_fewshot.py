"""Closed-form kernel predictors on real few-shot classification tasks (issue 7, part 1).

Episodes (n-way k-shot, q queries per class) are drawn from a real data set: training tasks
from the training split (training alphabets for Omniglot), test tasks from the test split
(held-out alphabets). Images are downsampled by block averaging, centred by the training
split's per-pixel mean and put on the sphere of radius sqrt(d) (theory.md 1). Labels become
one-hot regression targets ``1 - 1/C`` on the true class and ``-1/C`` elsewhere; a prediction
is the argmax over the C outputs; accuracy is measured per test episode.

Kernels: the fully connected ReLU NTK / head kernel for every depth from one pass of
:func:`ntk_bridge.kernels.depth_sweep`, or a convolutional kernel
(neural-tangents ``[Conv 3x3 + Relu] * depth + GlobalAvgPool + Dense``; Theta = 'ntk',
K = 'nngp' of the same network, theory.md 2).

Tiling. Every predictor of :mod:`ntk_bridge.predictors` reads only three kinds of kernel
blocks: training x training, test task x training, and each test task with itself. So the
kernel over all points is never formed. The training block is computed once (on distinct
images). Test tasks are taken in prediction groups of at most ``group_rows`` points; a group's
kernel against the training points is evaluated ``tile_rows`` test rows at a time (all depths
from one recursion pass per tile), each test task's own block separately, and then, one depth at
a time, the Gram of (training + group) points is assembled and every predictor runs once on it,
so the training-side solves are done once per group and depth. Entries between two different
test tasks are NaN; they are never read, and every prediction is checked to be finite.
Convolutional kernels are evaluated in square sub-tiles of ``conv_tile`` points so that the
(n1, n2, H, W, H, W) spatial covariance of neural-tangents stays small.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from ntk_bridge.errors import BridgeError, require
from ntk_bridge.inner_loop import InnerLoop
from ntk_bridge.kernels import Kernels, NetSpec, depth_sweep, to_sphere
from ntk_bridge.metrics import d_rel, d_tr, mean_ci
from ntk_bridge.predictors import METHODS, PredictorConfig, adaptation_only, predict
from ntk_bridge.tasks import Task, TaskSet

DEFAULT_DEPTHS = (1, 2, 4, 8, 16, 32, 64)
DEFAULT_PAIRS = (("mtl-b", "anil"), ("mtl-b", "maml"), ("mtl-a", "anil"))
CENTRES = ("pixel", "image", "none")

# (x1 (n1, d), x2 (n2, d) or None for x1 with itself) -> {depth: Kernels (n1, n2)}
KernelEval = Callable[[np.ndarray, "np.ndarray | None"], dict]


@dataclass(frozen=True)
class FewShotConfig:
    """Everything one kernel few-shot run depends on (saved next to its results)."""

    dataset: str = "omniglot"
    root: str | None = None
    train_split: str = "train"
    test_split: str = "test"
    n_way: int = 5
    shots: tuple[int, ...] = (1, 5)
    n_query: int = 5
    train_episodes: int = 20
    test_episodes: int = 100
    image_size: int = 14
    centre: str = "pixel"
    depths: tuple[int, ...] = DEFAULT_DEPTHS
    net: NetSpec = field(default_factory=NetSpec)
    predictor: PredictorConfig = field(default_factory=lambda: PredictorConfig(outer_ridge=1e-6))
    pairs: tuple[tuple[str, str], ...] = DEFAULT_PAIRS
    tile_rows: int = 1000
    group_rows: int = 6000
    conv_depths: tuple[int, ...] = ()
    conv_image_size: int = 7
    conv_train_episodes: int = 5
    conv_test_episodes: int = 20
    conv_tile: int = 32
    seed: int = 0

    def __post_init__(self):
        for name in ("n_way", "n_query", "train_episodes", "test_episodes", "image_size", "tile_rows", "group_rows",
                     "conv_image_size", "conv_train_episodes", "conv_test_episodes", "conv_tile"):
            v = getattr(self, name)
            require(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1,
                    f"{name} must be an integer >= 1 (got {v!r})")
        require(self.n_way >= 2, f"n_way must be >= 2 for classification (got {self.n_way})")
        require(len(self.shots) >= 1 and min(self.shots) >= 1, f"shots must be integers >= 1 (got {list(self.shots)})")
        require(len(self.depths) >= 1 and min(self.depths) >= 1, f"depths must be integers >= 1 (got {list(self.depths)})")
        require(not self.conv_depths or min(self.conv_depths) >= 1,
                f"conv depths must be integers >= 1 (got {list(self.conv_depths)})")
        require(self.centre in CENTRES, f"unknown centring {self.centre!r}; choose one of {', '.join(CENTRES)}")
        for a, b in self.pairs:
            require(a in METHODS and b in ("anil", "maml"),
                    f"a pair is (method, anil|maml) with method in {', '.join(METHODS)}; got ({a!r}, {b!r})")

    def as_dict(self) -> dict:
        d = asdict(self)
        d["predictor"] = self.predictor.as_dict()
        return d

    def methods(self) -> list[str]:
        return list(METHODS)


# ----------------------------------------------------------------------------- images and tasks

def downsample(images: np.ndarray, size: int) -> np.ndarray:
    """Block-average uint8 images (N, H, W, C) to (N, size, size, C) floats in [0, 1].

    ``size`` must divide H and W (28 -> 14, 7, 4, 2 for Omniglot).
    """
    require(images.ndim == 4, f"images must be (N, H, W, C); got shape {images.shape}")
    n, h, w, c = images.shape
    require(h % size == 0 and w % size == 0,
            f"image size {size} must divide the stored size {h}x{w}; choose one of "
            f"{', '.join(str(s) for s in range(1, h + 1) if h % s == 0 and w % s == 0)}")
    x = images.astype(np.float64) / 255.0
    return x.reshape(n, size, h // size, size, w // size, c).mean(axis=(2, 4))


def normalise(x: np.ndarray, centre: str, pixel_mean: np.ndarray | None) -> np.ndarray:
    """Flatten (N, ...) images to (N, d), centre them and project onto the sphere of radius sqrt(d).

    ``pixel``: subtract ``pixel_mean`` (the training split's per-pixel mean, shape x.shape[1:]);
    ``image``: subtract each image's own mean; ``none``: no centring.
    """
    flat = x.reshape(len(x), -1)
    if centre == "pixel":
        require(pixel_mean is not None, "pixel centring needs the training split's per-pixel mean")
        flat = flat - np.asarray(pixel_mean).reshape(1, -1)
    elif centre == "image":
        flat = flat - flat.mean(axis=1, keepdims=True)
    return to_sphere(flat)


def one_hot_targets(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """(..., n) int labels -> (..., n, C) targets 1 - 1/C on the true class, -1/C elsewhere (theory.md 1)."""
    labels = np.asarray(labels)
    require(labels.size == 0 or (labels.min() >= 0 and labels.max() < n_classes),
            f"labels must lie in 0..{n_classes - 1}")
    return np.eye(n_classes)[labels] - 1.0 / n_classes


@dataclass(frozen=True)
class EpisodeTasks:
    """A :class:`TaskSet` of classification episodes with the test queries' integer labels (n_test, n_q)."""

    tasks: TaskSet
    test_labels: np.ndarray


def episodes_to_tasks(x_train: np.ndarray, train_eps, x_test: np.ndarray, test_eps, n_way: int) -> EpisodeTasks:
    """Tasks from sampled episodes (:class:`ntk_bridge.data.sampler.Episodes`) over inputs (N, d).

    Each episode's class order is the sampler's random order, so class slot c of one task and of
    another task are unrelated classes (the usual few-shot protocol).
    """
    def build(x, eps):
        return tuple(Task(x[eps.query_idx[e]], one_hot_targets(eps.query_labels[e], n_way),
                          x[eps.support_idx[e]], one_hot_targets(eps.support_labels[e], n_way))
                     for e in range(len(eps.query_idx)))

    return EpisodeTasks(TaskSet(build(x_train, train_eps), build(x_test, test_eps)),
                        np.asarray(test_eps.query_labels))


def subset(et: EpisodeTasks, n_train: int, n_test: int) -> EpisodeTasks:
    """The first ``n_train`` training and ``n_test`` test tasks."""
    t = et.tasks
    return EpisodeTasks(TaskSet(t.train[:n_train], t.test[:n_test], meta=t.meta), et.test_labels[:n_test])


# ----------------------------------------------------------------------------- kernels

def fc_kernel_eval(net: NetSpec, depths: Sequence[int]) -> KernelEval:
    """Fully connected kernels for every depth in ``depths`` from one recursion pass."""
    def run(x1, x2=None):
        return depth_sweep(net, x1, x2, depths=depths)
    return run


def conv_kernel_eval(depths: Sequence[int], image_size: int, tile: int, W_std: float = math.sqrt(2.0)) -> KernelEval:
    """Convolutional kernels ``[Conv(3x3, SAME) + Relu] * depth + GlobalAvgPool + Dense``.

    Rows of x are flattened (image_size, image_size, 1) images. Evaluated in tiles of
    ``tile`` x ``tile`` points with one jit-compiled neural-tangents ``kernel_fn`` per depth
    (the last tile is padded so that every call has the same shape). Theta = 'ntk', K = 'nngp'.
    """
    import jax

    from ntk_bridge.nt_backend import stax as _stax

    stax = _stax()
    fns = {}
    for depth in sorted(set(int(d) for d in depths)):
        layers = []
        for _ in range(depth):
            layers += [stax.Conv(1, (3, 3), padding="SAME", W_std=W_std), stax.Relu()]
        _, _, kfn = stax.serial(*layers, stax.GlobalAvgPool(), stax.Dense(1, W_std=1.0))
        fns[depth] = jax.jit(kfn, static_argnames="get")

    def pad(a, n):
        return a if len(a) == n else np.concatenate([a, np.repeat(a[:1], n - len(a), axis=0)])

    def run(x1, x2=None):
        same = x2 is None
        x2 = x1 if same else x2
        img1 = np.asarray(x1, np.float64).reshape(-1, image_size, image_size, 1)
        img2 = np.asarray(x2, np.float64).reshape(-1, image_size, image_size, 1)
        n1, n2 = len(img1), len(img2)
        out = {}
        for depth, kfn in fns.items():
            theta, k = np.empty((n1, n2)), np.empty((n1, n2))
            for i in range(0, n1, tile):
                a = pad(img1[i:i + tile], tile)
                for j in range(i if same else 0, n2, tile):
                    b = pad(img2[j:j + tile], tile)
                    t_ij, k_ij = kfn(a, b, ("ntk", "nngp"))
                    r, c = min(tile, n1 - i), min(tile, n2 - j)
                    theta[i:i + r, j:j + c] = np.asarray(t_ij)[:r, :c]
                    k[i:i + r, j:j + c] = np.asarray(k_ij)[:r, :c]
                    if same and j != i:
                        theta[j:j + c, i:i + r] = theta[i:i + r, j:j + c].T
                        k[j:j + c, i:i + r] = k[i:i + r, j:j + c].T
            if same:
                theta, k = 0.5 * (theta + theta.T), 0.5 * (k + k.T)
            out[depth] = Kernels(theta=theta, k=k)
        return out

    return run


def group_plan(tasks: TaskSet, group_rows: int) -> list[list[int]]:
    """Test-task indices per prediction group: consecutive tasks with at most ``group_rows`` points (>= 1 task)."""
    per = tasks.test[0].n_query + tasks.test[0].n_support
    k = max(1, group_rows // per)
    return [list(range(i, min(i + k, len(tasks.test)))) for i in range(0, len(tasks.test), k)]


def _stack_rows(kernel: KernelEval, x: np.ndarray, y: np.ndarray, tile_rows: int) -> dict:
    """{depth: Kernels (len(x), len(y))} of ``kernel(x, y)`` evaluated ``tile_rows`` rows at a time."""
    out: dict = {}
    for r0 in range(0, len(x), tile_rows):
        part = kernel(x[r0:r0 + tile_rows], y)
        for depth, kk in part.items():
            if depth not in out:
                out[depth] = Kernels(theta=np.empty((len(x), len(y))), k=np.empty((len(x), len(y))))
            out[depth].theta[r0:r0 + len(kk.theta)] = kk.theta
            out[depth].k[r0:r0 + len(kk.k)] = kk.k
    return out


def tile_grams(tasks: TaskSet, kernel: KernelEval, group_rows: int, tile_rows: int):
    """Yield (test task indices, sub-TaskSet, depth, Kernels over the sub-TaskSet's points).

    Test tasks are taken in groups of at most ``group_rows`` points (:func:`group_plan`). For a
    group, the kernel against the training points is evaluated ``tile_rows`` rows at a time for
    every depth, and each test task's own block once; then, one depth at a time, the kernel over
    the sub-TaskSet (every training task + the group's test tasks) is assembled: training block,
    group-vs-training block and each test task's own block; entries between two different test
    tasks are NaN (never read by the predictors).
    """
    x_train = np.concatenate([np.concatenate([t.x_query, t.x_support]) for t in tasks.train])
    n_tr = len(x_train)
    # The same image can recur in several training episodes. Kernels are computed once per distinct
    # image and expanded: fewer entries, and a repeated image gets the exact self-similarity
    # (rho = 1 is set only on a diagonal; off the diagonal arccos(1 - 1e-16) would put ~1e-8 into Theta).
    uniq, inv = np.unique(x_train, axis=0, return_inverse=True)
    inv = np.asarray(inv).reshape(-1)
    train_block = kernel(uniq, None)
    for idx in group_plan(tasks, group_rows):
        test = [tasks.test[i] for i in idx]
        sub = TaskSet(tasks.train, tuple(test), meta=tasks.meta)
        x_group = np.concatenate([np.concatenate([t.x_query, t.x_support]) for t in test])
        cross = _stack_rows(kernel, x_group, uniq, tile_rows)
        per = test[0].n_query + test[0].n_support
        own = [kernel(x_group[i * per:(i + 1) * per], None) for i in range(len(test))]
        n = n_tr + len(x_group)
        for depth in sorted(train_block):
            mats = {}
            for name in ("theta", "k"):
                m = np.full((n, n), np.nan)
                m[:n_tr, :n_tr] = getattr(train_block[depth], name)[np.ix_(inv, inv)]
                c = getattr(cross[depth], name)[:, inv]
                m[n_tr:, :n_tr] = c
                m[:n_tr, n_tr:] = c.T
                for i, o in enumerate(own):
                    lo = n_tr + i * per
                    m[lo:lo + per, lo:lo + per] = getattr(o[depth], name)
                mats[name] = m
            yield idx, sub, depth, Kernels(theta=mats["theta"], k=mats["k"])


# ----------------------------------------------------------------------------- predictions

def predict_all(et: EpisodeTasks, kernel: KernelEval, config: FewShotConfig, methods: Sequence[str],
                progress: Callable[[int], None] | None = None) -> tuple[dict, dict]:
    """Predictions of every method and the GBML adaptation-only parts, per depth.

    Returns (preds, base): preds[depth][method] and base[depth][gbml] are (n_test, n_q, C) arrays
    (base = K_in(X, X') T' Y', the t = 0 predictor used by d_tr). The training-side solves
    (Theta_MTL, the Meta-NTK Phi, Theta on the training queries) are done once per group and depth.
    """
    tasks = et.tasks
    n_test = len(tasks.test)
    preds: dict = {}
    base: dict = {}
    gbml = sorted({b for _, b in config.pairs})
    for idx, sub, depth, gram in tile_grams(tasks, kernel, config.group_rows, config.tile_rows):
        for m in methods:
            p = predict(m, sub, gram, config.predictor)
            preds.setdefault(depth, {}).setdefault(m, [None] * n_test)
            for j, i in enumerate(idx):
                preds[depth][m][i] = p[j]
        for b in gbml:
            p = adaptation_only(b, sub, gram, config.predictor)
            base.setdefault(depth, {}).setdefault(b, [None] * n_test)
            for j, i in enumerate(idx):
                base[depth][b][i] = p[j]
        if progress is not None:
            progress(depth, idx)
    for store in (preds, base):
        for depth in store:
            for m in store[depth]:
                store[depth][m] = np.stack(store[depth][m])
                if not np.all(np.isfinite(store[depth][m])):
                    raise BridgeError(f"{m} predictions at depth {depth} are not finite; raise --outer-ridge "
                                      "or lower the maximum depth")
    return preds, base


def episode_accuracy(pred: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Accuracy of argmax predictions per episode: pred (E, n_q, C), labels (E, n_q) -> (E,)."""
    require(pred.shape[:-1] == labels.shape, f"predictions {pred.shape} do not match labels {labels.shape}")
    return np.mean(np.argmax(pred, axis=-1) == labels, axis=1)


def score(preds: dict, base: dict, labels: np.ndarray, pairs, meta: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per-episode accuracies, distances) for every depth; ``meta`` columns are added to every row.

    Distances per pair (a, b): over all test queries at once (d_rel, d_tr as in theory.md 6) and
    per episode (mean +- 95% CI over episodes); ``agree``: fraction of queries with the same argmax;
    root-mean-square outputs of F_a, F_b, F_b's adaptation-only part F_b(t=0) and transfer part F_b - F_b(t=0).
    """
    acc_rows, dist_rows = [], []
    for depth in sorted(preds):
        for m, p in preds[depth].items():
            for e, a in enumerate(episode_accuracy(p, labels)):
                acc_rows.append({**meta, "depth": depth, "method": m, "episode": e, "accuracy": float(a)})
        for a, b in pairs:
            fa, fb, f0 = preds[depth][a], preds[depth][b], base[depth][b]
            per_rel = [d_rel(fa[e], fb[e]) for e in range(len(fa))]
            per_tr = [d_tr(fa[e], fb[e], f0[e]) for e in range(len(fa))]
            rel_m, rel_h = mean_ci(per_rel)
            tr_m, tr_h = mean_ci(per_tr)
            dist_rows.append({**meta, "depth": depth, "pair": f"{a} vs {b}", "d_rel": d_rel(fa, fb),
                              "d_tr": d_tr(fa, fb, f0), "d_rel_ep_mean": rel_m, "d_rel_ep_ci95": rel_h,
                              "d_tr_ep_mean": tr_m, "d_tr_ep_ci95": tr_h,
                              "agree": float(np.mean(np.argmax(fa, -1) == np.argmax(fb, -1))),
                              "rms_a": float(np.sqrt(np.mean(fa ** 2))), "rms_b": float(np.sqrt(np.mean(fb ** 2))),
                              "rms_b_adapt": float(np.sqrt(np.mean(f0 ** 2))),
                              "rms_b_transfer": float(np.sqrt(np.mean((fb - f0) ** 2)))})
    return pd.DataFrame(acc_rows), pd.DataFrame(dist_rows)


def accuracy_table(acc: pd.DataFrame) -> pd.DataFrame:
    """Mean accuracy (%) +- 95% CI over episodes per (kernel, shots, depth, method)."""
    rows = []
    keys = ["kernel", "shots", "depth", "method"]
    for key, g in acc.groupby(keys, sort=True):
        m, h = mean_ci(100.0 * g["accuracy"].to_numpy())
        rows.append({**dict(zip(keys, key)), "acc_mean": m, "acc_ci95": h, "episodes": len(g),
                     "n_query": int(g["n_query"].iloc[0]), "n_way": int(g["n_way"].iloc[0]),
                     "train_episodes": int(g["train_episodes"].iloc[0])})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- the run

def load_episodes(config: FewShotConfig, shots: int, size: int) -> EpisodeTasks:
    """Episodes of ``shots`` shots on images downsampled to ``size`` (seeded by config.seed and shots)."""
    from ntk_bridge.data import default_omniglot_root, load_split
    from ntk_bridge.data.sampler import sample_episodes

    root = config.root
    if root is None:
        require(config.dataset == "omniglot", f"give --root for {config.dataset} (no default data folder)")
        root = default_omniglot_root()
    tr = load_split(config.dataset, root, config.train_split)
    te = load_split(config.dataset, root, config.test_split)
    x_tr, x_te = downsample(tr.images, size), downsample(te.images, size)
    pixel_mean = x_tr.mean(axis=0)
    z_tr = normalise(x_tr, config.centre, pixel_mean)
    z_te = normalise(x_te, config.centre, pixel_mean)
    rng = np.random.default_rng([config.seed, shots])
    eps_tr = sample_episodes(tr.labels, config.n_way, shots, config.n_query, config.train_episodes, rng,
                             class_names=tr.class_names)
    eps_te = sample_episodes(te.labels, config.n_way, shots, config.n_query, config.test_episodes, rng,
                             class_names=te.class_names)
    return episodes_to_tasks(z_tr, eps_tr, z_te, eps_te, config.n_way)


def run(config: FewShotConfig, progress: bool = True, log=print) -> dict:
    """Run every shot setting with the FC kernel (and the conv kernel if ``conv_depths``).

    Returns {"accuracy": per-episode rows, "distances": rows, "timing": rows}.
    """
    from tqdm import tqdm

    acc_frames, dist_frames, timing = [], [], []
    fc = fc_kernel_eval(config.net, config.depths)
    conv = conv_kernel_eval(config.conv_depths, config.conv_image_size, config.conv_tile) if config.conv_depths else None
    for shots in config.shots:
        jobs = [("fc", fc, config.image_size, None)]
        if conv is not None:
            jobs.append(("conv", conv, config.conv_image_size, (config.conv_train_episodes, config.conv_test_episodes)))
        for kernel_name, kernel, size, sizes in jobs:
            et = load_episodes(config, shots, size)
            if sizes is not None:
                et = subset(et, min(sizes[0], config.train_episodes), min(sizes[1], config.test_episodes))
            tasks = et.tasks
            plan = group_plan(tasks, config.group_rows)
            n_tr = sum(t.n_query + t.n_support for t in tasks.train)
            per = tasks.test[0].n_query + tasks.test[0].n_support
            rows_group = len(plan[0]) * per
            depths = config.depths if kernel_name == "fc" else config.conv_depths
            tile = min(config.tile_rows, rows_group)
            tile_mb = 2 * len(depths) * tile * n_tr * 8 / 2 ** 20
            cross_mb = 2 * len(depths) * rows_group * n_tr * 8 / 2 ** 20
            gram_mb = 2 * (n_tr + rows_group) ** 2 * 8 / 2 ** 20
            log(f"{kernel_name} kernel, {shots}-shot: {len(tasks.train)} training / {len(tasks.test)} test episodes, "
                f"d={tasks.points.shape[1]}, {len(depths)} depths; kernel tile = {tile} test rows x <= {n_tr} training "
                f"columns (~{tile_mb:.0f} MB per tile)"
                + (f" in {config.conv_tile}x{config.conv_tile}-point conv sub-tiles" if kernel_name == "conv" else "")
                + f"; {len(plan)} prediction group(s) of {len(plan[0])} test tasks = {rows_group} rows "
                f"(~{cross_mb:.0f} MB of group-vs-training kernels, ~{gram_mb:.0f} MB assembled Gram per depth)")
            bar = tqdm(total=len(plan) * len(depths), desc=f"{kernel_name} {shots}-shot (group, depth)",
                       disable=not progress, unit="step", leave=False)
            start = time.time()
            preds, base = predict_all(et, kernel, config, config.methods(), progress=lambda d, i: bar.update(1))
            bar.close()
            seconds = time.time() - start
            meta = {"kernel": kernel_name, "shots": shots, "n_way": config.n_way, "n_query": config.n_query,
                    "train_episodes": len(tasks.train), "test_episodes": len(tasks.test),
                    "image_size": size}
            acc, dist = score(preds, base, et.test_labels, config.pairs, meta)
            acc_frames.append(acc)
            dist_frames.append(dist)
            timing.append({"kernel": kernel_name, "shots": shots, "seconds": seconds, "points": len(tasks.points),
                           "tile_rows": tile, "group_rows": rows_group, "groups": len(plan),
                           "depths": len(depths)})
    return {"accuracy": pd.concat(acc_frames, ignore_index=True),
            "distances": pd.concat(dist_frames, ignore_index=True),
            "timing": pd.DataFrame(timing)}


def synthetic_distances(path) -> pd.DataFrame | None:
    """Per depth and pair: mean d_rel and d_tr of the synthetic depth sweep (its depth_sweep.csv), or None."""
    from pathlib import Path

    path = Path(path)
    if not path.exists():
        return None
    frame = pd.read_csv(path)
    need = {"depth", "pair", "d_rel", "d_tr"}
    require(need <= set(frame.columns), f"{path} is not a depth-sweep CSV (needs columns {', '.join(sorted(need))})")
    return frame.groupby(["pair", "depth"], sort=True)[["d_rel", "d_tr"]].mean().reset_index()


def plot(table: pd.DataFrame, dist: pd.DataFrame, synthetic: pd.DataFrame | None, title: str):
    """Figure: accuracy vs depth per shot setting (FC, mean +- 95% CI; conv as separate markers), and
    d_rel vs depth on the real tasks next to the synthetic depth sweep."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shots_list = sorted(table["shots"].unique())
    fig, axes = plt.subplots(1, len(shots_list) + 1, figsize=(5.2 * (len(shots_list) + 1), 4.3))
    colors = {m: f"C{i}" for i, m in enumerate(METHODS)}
    for ax, shots in zip(axes, shots_list):
        g = table[(table["shots"] == shots) & (table["kernel"] == "fc")]
        for i, (m, gm) in enumerate(g.groupby("method", sort=False)):
            jitter = 1.0 + 0.03 * (i - 2.5)
            ax.errorbar(gm["depth"] * jitter, gm["acc_mean"], yerr=gm["acc_ci95"], marker="o", ms=3, capsize=2,
                        label=f"{m} (FC)", color=colors.get(m))
        gc = table[(table["shots"] == shots) & (table["kernel"] == "conv")]
        for m, gm in gc.groupby("method", sort=False):
            ax.errorbar(gm["depth"], gm["acc_mean"], yerr=gm["acc_ci95"], marker="s", ms=6, mfc="none",
                        linestyle=":", capsize=2, color=colors.get(m), label=f"{m} (conv)")
        n_way = int(g["n_way"].iloc[0]) if len(g) else 5
        ax.axhline(100.0 / n_way, color="grey", lw=0.8, linestyle=":")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("depth L (hidden layers)")
        eps = int(g["episodes"].iloc[0]) if len(g) else 0
        q = int(g["n_query"].iloc[0]) if len(g) else 0
        ax.set_ylabel(f"{n_way}-way accuracy % (mean +- 95% CI)")
        ax.set_title(f"{shots}-shot: {eps} test episodes x {q} queries/class", fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=6, ncol=2)
    ax = axes[-1]
    for i, (key, g) in enumerate(dist[dist["kernel"] == "fc"].groupby(["pair", "shots"], sort=True)):
        ax.plot(g["depth"], g["d_rel"], marker="o", label=f"Omniglot {key[1]}-shot: {key[0]}")
    if synthetic is not None:
        for pair, g in synthetic.groupby("pair", sort=True):
            ax.plot(g["depth"], g["d_rel"], linestyle="--", marker="x", label=f"synthetic: {pair}")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("depth L (hidden layers)")
    ax.set_ylabel(r"$d_{rel}=\|F_a-F_b\|/\|F_b\|$")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=6)
    import textwrap

    fig.suptitle("\n".join(textwrap.wrap(title, 150)), fontsize=9)
    fig.tight_layout()
    return fig
