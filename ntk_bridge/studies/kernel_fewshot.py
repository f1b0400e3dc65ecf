"""Closed-form kernel predictors on real few-shot classification tasks.

Episodes (n-way k-shot, q queries per class) are drawn from a real data set: training tasks
from the training split (training alphabets for Omniglot), test tasks from the test split
(held-out alphabets). Images are downsampled by block averaging, centred by the training
split's per-pixel mean and put on the sphere of radius sqrt(d) (docs/theory.md 1). Labels become
one-hot regression targets ``1 - 1/C`` on the true class and ``-1/C`` elsewhere; a prediction
is the argmax over the C outputs; accuracy is measured per test episode. Other label spaces
(global base-class targets, learned class encodings, :mod:`ntk_bridge.studies.label_spaces`) relabel the
same points (:func:`relabel`); one kernel evaluation serves every label space
(:func:`predict_labelled`), and a prediction is then the nearest code among the episode's classes.

Kernels: the fully connected ReLU NTK / head kernel for every depth from one pass of
:func:`ntk_bridge.engine.fc.depth_sweep`, or a convolutional kernel
(``[Conv 3x3 + Relu] * depth + GlobalAvgPool + Dense``, infinite channels; Theta = 'ntk',
K = 'nngp' of the same network, docs/theory.md 2; the project's engine, :mod:`ntk_bridge.engine.conv_engine`).

Tiling. Every predictor of :mod:`ntk_bridge.closed_form.predictors` reads only three kinds of kernel
blocks: training x training, test task x training, and each test task with itself. So the
kernel over all points is never formed. The training block is computed once (on distinct
images). Test tasks are taken in prediction groups of at most ``group_rows`` points; a group's
kernel against the training points is evaluated ``tile_rows`` test rows at a time (all depths
from one recursion pass per tile), each test task's own block separately, and then, one depth at
a time, the Gram of (training + group) points is assembled and every predictor runs once on it,
so the training-side solves are done once per group and depth. Entries between two different
test tasks are set to 0: no prediction depends on them (the predictors multiply them only by zero
weights; the tiled-vs-full test checks that the predictions equal those on the full kernel), and every
prediction is checked to be finite.
Convolutional kernels (:mod:`ntk_bridge.engine.conv_kernels`) are evaluated for all depths in one pass,
``conv_tile`` image pairs per engine step (None: the engine's cache-sized default; each pair's state is
two (H W) x (H W) arrays), a set against
itself as its upper triangle, and cached on disk by content hash.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Callable, Mapping, Sequence

import numpy as np

from ntk_bridge.closed_form.distances import d_rel, d_tr
from ntk_bridge.closed_form.predictors import METHODS, PAIRS, PredictorConfig, adaptation_only, predict
from ntk_bridge.closed_form.tasks import Task, TaskSet
from ntk_bridge.engine.fc import depth_sweep
from ntk_bridge.engine.spec import Kernels, NetSpec, to_sphere
from ntk_bridge.errors import BridgeError, require
from ntk_bridge.stats import mean_ci
from ntk_bridge.studies.label_spaces import ENCODINGS, LABEL_SPACES, LabelCodes

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

DEFAULT_DEPTHS = (1, 4, 16, 64)
DEFAULT_PAIRS = PAIRS
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
    test_episodes: int = 200
    image_size: int = 14
    centre: str = "pixel"
    depths: tuple[int, ...] = DEFAULT_DEPTHS
    net: NetSpec = field(default_factory=NetSpec)
    predictor: PredictorConfig = field(default_factory=lambda: PredictorConfig(outer_ridge=1e-6))
    pairs: tuple[tuple[str, str], ...] = DEFAULT_PAIRS
    tile_rows: int = 1000
    group_rows: int = 6000
    conv_depths: tuple[int, ...] = ()
    conv_image_size: int = 4
    conv_train_episodes: int = 5
    conv_test_episodes: int = 20
    conv_tile: int | None = None
    conv_cache: str | None = None
    labels: tuple[str, ...] = ("random-slots", "global")
    encoder: str | None = None
    encoding: str = "mean-feature"
    trained: tuple[str, ...] = ()
    seed: int = 0

    def __post_init__(self):
        for name in ("n_way", "n_query", "train_episodes", "test_episodes", "image_size", "tile_rows", "group_rows",
                     "conv_image_size", "conv_train_episodes", "conv_test_episodes", "conv_tile"):
            v = getattr(self, name)
            if name == "conv_tile" and v is None:            # auto: the engine's default chunk
                continue
            require(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1,
                    f"{name} must be an integer >= 1 (got {v!r})")
        require(self.n_way >= 2, f"n_way must be >= 2 for classification (got {self.n_way})")
        require(len(self.shots) >= 1 and min(self.shots) >= 1, f"shots must be integers >= 1 (got {list(self.shots)})")
        require(len(self.depths) >= 1 and min(self.depths) >= 1, f"depths must be integers >= 1 (got {list(self.depths)})")
        require(not self.conv_depths or min(self.conv_depths) >= 1,
                f"conv depths must be integers >= 1 (got {list(self.conv_depths)})")
        require(self.centre in CENTRES, f"unknown centring {self.centre!r}; choose one of {', '.join(CENTRES)}")
        require(len(self.labels) >= 1 and len(set(self.labels)) == len(self.labels)
                and set(self.labels) <= set(LABEL_SPACES),
                f"labels must be distinct names among {', '.join(LABEL_SPACES)} (got {list(self.labels)})")
        require(("encoding" in self.labels) == (self.encoder is not None),
                "the encoding label space needs `encoder` (the run folder of a Conv-4 trained on the "
                "training classes), and `encoder` is used only with the encoding label space in `labels`")
        require(self.encoding in ENCODINGS, f"unknown encoding {self.encoding!r}; choose one of {', '.join(ENCODINGS)}")
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


def normalize_images(x: np.ndarray, centre: str, pixel_mean: np.ndarray | None) -> np.ndarray:
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
    """(..., n) int labels -> (..., n, C) targets 1 - 1/C on the true class, -1/C elsewhere (docs/theory.md 1)."""
    labels = np.asarray(labels)
    require(labels.size == 0 or (labels.min() >= 0 and labels.max() < n_classes),
            f"labels must lie in 0..{n_classes - 1}")
    return np.eye(n_classes)[labels] - 1.0 / n_classes


@dataclass(frozen=True)
class EpisodeTasks:
    """A :class:`TaskSet` of classification episodes (random-slot targets) with the test queries' integer
    labels (n_test, n_q); optionally the sampled episodes (:class:`ntk_bridge.data.sampler.Episodes`) and
    each slot's class name, train_names (E_tr, n_way) and test_names (E_te, n_way), for other label spaces."""

    tasks: TaskSet
    test_labels: np.ndarray
    train_eps: object = None
    test_eps: object = None
    train_names: np.ndarray | None = None
    test_names: np.ndarray | None = None


def episodes_to_tasks(x_train: np.ndarray, train_eps, x_test: np.ndarray, test_eps, n_way: int,
                      train_class_names=None, test_class_names=None) -> EpisodeTasks:
    """Tasks from sampled episodes (:class:`ntk_bridge.data.sampler.Episodes`) over inputs (N, d).

    Each episode's class order is the sampler's random order, so class slot c of one task and of
    another task are unrelated classes (the usual few-shot protocol). ``*_class_names`` (the splits'
    class names) give each slot's class name, which the global and encoding label spaces need.
    """
    def build(x, eps):
        return tuple(Task(x[eps.query_idx[e]], one_hot_targets(eps.query_labels[e], n_way),
                          x[eps.support_idx[e]], one_hot_targets(eps.support_labels[e], n_way))
                     for e in range(len(eps.query_idx)))

    def names(eps, class_names):
        return None if class_names is None else np.asarray(class_names, dtype=object)[np.asarray(eps.classes)]

    return EpisodeTasks(TaskSet(build(x_train, train_eps), build(x_test, test_eps)),
                        np.asarray(test_eps.query_labels), train_eps, test_eps,
                        names(train_eps, train_class_names), names(test_eps, test_class_names))


def _head(eps, n: int):
    return None if eps is None else type(eps)(*(np.asarray(a)[:n] for a in eps))


def subset(et: EpisodeTasks, n_train: int, n_test: int) -> EpisodeTasks:
    """The first ``n_train`` training and ``n_test`` test tasks."""
    t = et.tasks
    cut = (lambda a, n: None if a is None else a[:n])
    return EpisodeTasks(TaskSet(t.train[:n_train], t.test[:n_test], meta=t.meta), et.test_labels[:n_test],
                        _head(et.train_eps, n_train), _head(et.test_eps, n_test),
                        cut(et.train_names, n_train), cut(et.test_names, n_test))


def relabel(et: EpisodeTasks, codes: LabelCodes) -> TaskSet:
    """The same points with targets from a label space: a point of slot j of episode e regresses onto
    codes.train[e, j] (training) or codes.test[e, j] (test); shapes (n, D)."""
    require(et.train_eps is not None, "relabelling needs the sampled episodes (episodes_to_tasks)")
    require(len(codes.train) == len(et.tasks.train) and len(codes.test) == len(et.tasks.test),
            f"{codes.name} codes are for {len(codes.train)}/{len(codes.test)} episodes, the tasks have "
            f"{len(et.tasks.train)}/{len(et.tasks.test)}")

    def build(tasks, eps, code):
        return tuple(Task(t.x_query, code[e][np.asarray(eps.query_labels[e])], t.x_support,
                          code[e][np.asarray(eps.support_labels[e])]) for e, t in enumerate(tasks))

    return TaskSet(build(et.tasks.train, et.train_eps, codes.train), build(et.tasks.test, et.test_eps, codes.test),
                   meta=et.tasks.meta)


# ----------------------------------------------------------------------------- kernels

def fc_kernel_eval(net: NetSpec, depths: Sequence[int]) -> KernelEval:
    """Fully connected kernels for every depth in ``depths`` from one recursion pass."""
    def run(x1, x2=None):
        return depth_sweep(net, x1, x2, depths=depths)
    return run


def conv_kernel_eval(depths: Sequence[int], image_size: int, tile: int | None, W_std: float = math.sqrt(2.0),
                     cache_dir: str | None = None):
    """Convolutional kernels ``[Conv(3x3, SAME) + Relu] * depth + GlobalAvgPool + Dense`` for every depth
    in one pass of the layer recursion, ``tile`` image pairs per engine step (None: auto), cached under ``cache_dir``
    (:mod:`ntk_bridge.engine.conv_kernels`). Rows of x are flattened (image_size, image_size, 1) images."""
    from ntk_bridge.engine.conv_kernels import conv_kernel

    return conv_kernel(depths, image_size, tile, cache_dir=cache_dir, W_std=W_std)


@dataclass
class CountingKernel:
    """A :data:`KernelEval` that counts the entries it computes and the seconds it spends."""

    kernel: KernelEval
    entries: int = 0
    seconds: float = 0.0

    def __call__(self, x1, x2=None):
        start = time.time()
        out = self.kernel(x1, x2)
        self.seconds += time.time() - start
        self.entries += len(x1) * (len(x1) + 1) // 2 if x2 is None else len(x1) * len(x2)
        return out


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
    tasks are 0 (no prediction depends on them).
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
                m = np.zeros((n, n))
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

def predict_labelled(et: EpisodeTasks, kernel: KernelEval, config: "FewShotConfig", methods: Sequence[str],
                     spaces: Mapping[str, tuple[TaskSet, "np.ndarray | None"]],
                     progress: Callable[[int, list], None] | None = None) -> dict:
    """Predictions of every method and the GBML adaptation-only parts, per label space and depth.

    ``spaces[name] = (tasks, test_codes)``: the episodes' points with that space's targets
    (:func:`relabel`) and the test codes (E_te, n_way, D), or None to keep the raw outputs.
    Returns {name: (preds, base)}: preds[depth][method], base[depth][gbml] (n_test, n_q, K) with
    K = n_way projections f . c_j when codes are given, else the D raw outputs (base = K_in(X, X') T' Y',
    the t = 0 predictor used by d_tr). One kernel evaluation serves every space; the training-side
    solves are done once per group, depth and space.
    """
    n_test = len(et.tasks.test)
    gbml = sorted({b for _, b in config.pairs})
    out = {name: ({}, {}) for name in spaces}

    def put(store, depth, m, idx, p, codes):
        if codes is not None:
            p = np.einsum("eqd,ejd->eqj", p, codes[idx])
        store.setdefault(depth, {}).setdefault(m, [None] * n_test)
        for j, i in enumerate(idx):
            store[depth][m][i] = p[j]

    for idx, _, depth, gram in tile_grams(et.tasks, kernel, config.group_rows, config.tile_rows):
        for name, (tasks, codes) in spaces.items():
            sub = TaskSet(tasks.train, tuple(tasks.test[i] for i in idx), meta=tasks.meta)
            preds, base = out[name]
            for m in methods:
                put(preds, depth, m, idx, predict(m, sub, gram, config.predictor), codes)
            for b in gbml:
                put(base, depth, b, idx, adaptation_only(b, sub, gram, config.predictor), codes)
        if progress is not None:
            progress(depth, idx)
    for name, (preds, base) in out.items():
        for store in (preds, base):
            for depth in store:
                for m in store[depth]:
                    store[depth][m] = np.stack(store[depth][m])
                    if not np.all(np.isfinite(store[depth][m])):
                        raise BridgeError(f"{m} predictions ({name or 'random-slots'} labels) at depth {depth} are "
                                          "not finite; raise `outer_ridge` or lower the maximum depth")
    return out


def predict_all(et: EpisodeTasks, kernel: KernelEval, config: "FewShotConfig", methods: Sequence[str],
                progress: Callable[[int, list], None] | None = None) -> tuple[dict, dict]:
    """(preds, base) of :func:`predict_labelled` for ``et.tasks`` as they are, raw outputs (n_test, n_q, C)."""
    return predict_labelled(et, kernel, config, methods, {"": (et.tasks, None)}, progress)[""]


def episode_accuracy(pred: np.ndarray, labels: np.ndarray, offsets: np.ndarray | None = None) -> np.ndarray:
    """Accuracy of argmax predictions per episode: pred (E, n_q, C), labels (E, n_q) -> (E,).

    ``offsets`` (E, C), optional, are added to every query's scores before the argmax (the
    -|c_j|^2 / 2 of a nearest-code decision, :mod:`ntk_bridge.studies.label_spaces`)."""
    require(pred.shape[:-1] == labels.shape, f"predictions {pred.shape} do not match labels {labels.shape}")
    scores = pred if offsets is None else pred + np.asarray(offsets)[:, None, :]
    return np.mean(np.argmax(scores, axis=-1) == labels, axis=1)


def _decide(pred: np.ndarray, offsets: np.ndarray | None) -> np.ndarray:
    """argmax of (E, n_q, C) scores after adding offsets (E, C) -> (E, n_q)."""
    return np.argmax(pred if offsets is None else pred + np.asarray(offsets)[:, None, :], axis=-1)


def score(preds: dict, base: dict, labels: np.ndarray, pairs, meta: dict,
          offsets: np.ndarray | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per-episode accuracies, distances) for every depth; ``meta`` columns are added to every row.

    Distances per pair (a, b): over all test queries at once (d_rel, d_tr as in docs/theory.md 6) and
    per episode (mean +- 95% CI over episodes); ``agree``: fraction of queries with the same decision;
    root-mean-square outputs of F_a, F_b, F_b's adaptation-only part F_b(t=0) and transfer part F_b - F_b(t=0).
    """
    import pandas as pd
    acc_rows, dist_rows = [], []
    for depth in sorted(preds):
        for m, p in preds[depth].items():
            for e, a in enumerate(episode_accuracy(p, labels, offsets)):
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
                              "agree": float(np.mean(_decide(fa, offsets) == _decide(fb, offsets))),
                              "rms_a": float(np.sqrt(np.mean(fa ** 2))), "rms_b": float(np.sqrt(np.mean(fb ** 2))),
                              "rms_b_adapt": float(np.sqrt(np.mean(f0 ** 2))),
                              "rms_b_transfer": float(np.sqrt(np.mean((fb - f0) ** 2)))})
    return pd.DataFrame(acc_rows), pd.DataFrame(dist_rows)


def accuracy_table(acc: pd.DataFrame) -> pd.DataFrame:
    """Mean accuracy (%) +- 95% t-interval over episodes per (kernel, labels, shots, depth, method)."""
    import pandas as pd
    rows = []
    acc = acc if "labels" in acc else acc.assign(labels="random-slots")
    keys = ["kernel", "labels", "shots", "depth", "method"]
    for key, g in acc.groupby(keys, sort=True):
        m, h = mean_ci(100.0 * g["accuracy"].to_numpy())
        rows.append({**dict(zip(keys, key)), "acc_mean": m, "acc_ci95": h, "episodes": len(g),
                     "n_query": int(g["n_query"].iloc[0]), "n_way": int(g["n_way"].iloc[0]),
                     "train_episodes": int(g["train_episodes"].iloc[0])})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- the run

@dataclass(frozen=True)
class Splits:
    """The loaded training and test splits (:func:`ntk_bridge.data.load_split`) of a run."""

    train: object
    test: object


def load_splits(config: FewShotConfig) -> Splits:
    """The training and test splits of ``config`` (default Omniglot folder when root is None)."""
    from ntk_bridge.data import default_omniglot_root, load_split

    root = config.root
    if root is None:
        require(config.dataset == "omniglot", f"give `root` for {config.dataset} (no default data folder)")
        root = default_omniglot_root()
    return Splits(load_split(config.dataset, root, config.train_split),
                  load_split(config.dataset, root, config.test_split))


def sample(config: FewShotConfig, splits: Splits, shots: int):
    """(training, test) episodes of ``shots`` shots, seeded by (config.seed, shots): the same for every
    kernel, image size and label space."""
    from ntk_bridge.data.sampler import sample_episodes

    rng = np.random.default_rng([config.seed, shots])
    tr, te = splits.train, splits.test
    eps_tr = sample_episodes(tr.labels, config.n_way, shots, config.n_query, config.train_episodes, rng,
                             class_names=tr.class_names)
    eps_te = sample_episodes(te.labels, config.n_way, shots, config.n_query, config.test_episodes, rng,
                             class_names=te.class_names)
    return eps_tr, eps_te


def episode_tasks(config: FewShotConfig, splits: Splits, eps, size: int) -> EpisodeTasks:
    """Episodes ``eps`` on images block-averaged to ``size``, centred by the training split and on the sphere."""
    x_tr, x_te = downsample(splits.train.images, size), downsample(splits.test.images, size)
    pixel_mean = x_tr.mean(axis=0)
    z_tr = normalize_images(x_tr, config.centre, pixel_mean)
    z_te = normalize_images(x_te, config.centre, pixel_mean)
    return episodes_to_tasks(z_tr, eps[0], z_te, eps[1], config.n_way,
                             splits.train.class_names, splits.test.class_names)


def load_episodes(config: FewShotConfig, shots: int, size: int) -> EpisodeTasks:
    """Episodes of ``shots`` shots on images downsampled to ``size`` (seeded by config.seed and shots)."""
    splits = load_splits(config)
    return episode_tasks(config, splits, sample(config, splits, shots), size)


def label_codes(config: FewShotConfig, et: EpisodeTasks, splits: Splits, encoder=None) -> dict:
    """{label space: LabelCodes} for ``config.labels`` on the episodes of ``et``."""
    from ntk_bridge.studies import label_spaces as ls

    n_tr, n_te = len(et.tasks.train), len(et.tasks.test)
    out = {}
    for name in config.labels:
        if name == "random-slots":
            out[name] = ls.random_slots(n_tr, n_te, config.n_way)
        elif name == "global":
            out[name] = ls.global_targets(et.train_names, et.test_names, splits.train.class_names)
        else:
            table = ls.encoder_table(encoder, config.encoding, splits.train.labels, splits.train.num_classes)
            protos = ls.support_prototypes(encoder.test, et.test_eps.support_idx, et.test_eps.support_labels,
                                           config.n_way)
            out[name] = ls.encoding_codes(table, splits.train.class_names, et.train_names, et.test_names, protos)
    return out


def run_kernel(config: FewShotConfig, name: str, kernel, et: EpisodeTasks, codes: dict, meta: dict,
               progress: bool) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Every method under every label space on one kernel: (per-episode accuracies, distances, timing row)."""
    import pandas as pd
    from tqdm import tqdm

    tasks = et.tasks
    plan = group_plan(tasks, config.group_rows)
    n_tr = sum(t.n_query + t.n_support for t in tasks.train)
    rows_group = len(plan[0]) * (tasks.test[0].n_query + tasks.test[0].n_support)
    depths = config.depths if name == "fc" else config.conv_depths
    tile = min(config.tile_rows, rows_group)
    log.info(f"{name} kernel, {meta['shots']}-shot: {len(tasks.train)} training / {len(tasks.test)} test episodes, "
        f"d={tasks.points.shape[1]}, {len(depths)} depths, label spaces {', '.join(codes)}; kernel tile = {tile} "
        f"test rows x <= {n_tr} training columns (~{2 * len(depths) * tile * n_tr * 8 / 2 ** 20:.0f} MB per tile)"
        + (f" in conv engine steps of {config.conv_tile or 'auto (cache-sized)'} image pairs" if name == "conv" else "")
        + f"; {len(plan)} prediction group(s) of {len(plan[0])} test tasks = {rows_group} rows "
        f"(~{2 * len(depths) * rows_group * n_tr * 8 / 2 ** 20:.0f} MB of group-vs-training kernels, "
        f"~{2 * (n_tr + rows_group) ** 2 * 8 / 2 ** 20:.0f} MB assembled Gram per depth)")
    bar = tqdm(total=len(plan) * len(depths), desc=f"{name} {meta['shots']}-shot (group, depth)",
               disable=not progress, unit="step", leave=False)
    counter = CountingKernel(kernel)
    start = time.time()
    spaces = {ls: (relabel(et, c), c.test) for ls, c in codes.items()}
    res = predict_labelled(et, counter, config, config.methods(), spaces, progress=lambda d, i: bar.update(1))
    bar.close()
    seconds = time.time() - start
    accs, dists = [], []
    for ls, (preds, base) in res.items():
        acc, dist = score(preds, base, et.test_labels, config.pairs, {**meta, "labels": ls}, codes[ls].offsets())
        accs.append(acc)
        dists.append(dist)
    stats = getattr(kernel, "stats", None)
    computed = stats.computed_entries if stats is not None else counter.entries
    k_seconds = stats.seconds if stats is not None else counter.seconds
    timing = {"kernel": name, "shots": meta["shots"], "seconds": seconds, "kernel_seconds": k_seconds,
              "kernel_entries_computed": computed,
              "kernel_entries_per_s": computed / k_seconds if k_seconds > 0 else float("nan"),
              "cache_hits": stats.hits if stats is not None else 0, "points": len(tasks.points), "tile_rows": tile,
              "group_rows": rows_group, "groups": len(plan), "depths": len(depths), "label_spaces": len(codes)}
    return pd.concat(accs, ignore_index=True), pd.concat(dists, ignore_index=True), timing


TRAINED_HEADS = ("proto", "logreg")


def trained_rows(encoder, et: EpisodeTasks, meta: dict) -> pd.DataFrame:
    """Per-episode accuracy of the trained Conv-4 itself (its frozen features with the proto and logreg
    heads) on the test episodes of ``et``: method ``conv4-<algorithm> <head>``, kernel "trained"."""
    import pandas as pd

    from ntk_bridge.studies.label_spaces import trained_head_accuracy

    rows = []
    for head in TRAINED_HEADS:
        for e, a in enumerate(trained_head_accuracy(encoder, et.test_eps, meta["n_way"], head)):
            rows.append({**meta, "kernel": "trained", "labels": "-", "depth": 0,
                         "method": f"conv4-{encoder.algorithm} {head}", "episode": e, "accuracy": float(a)})
    return pd.DataFrame(rows)


def run(config: FewShotConfig, progress: bool = True) -> dict:
    """Run every shot setting with the FC kernel (and the conv kernel if ``conv_depths``) under every label
    space of ``config.labels``, and score the trained networks (the encoder and ``config.trained``) on the
    same test episodes.

    Returns {"accuracy": per-episode rows, "distances": rows, "timing": rows}.
    """
    import pandas as pd

    from ntk_bridge.studies.label_spaces import load_encoder

    splits = load_splits(config)
    encoder = load_encoder(config.encoder, splits.train, splits.test) if config.encoder else None
    nets = ([encoder] if encoder is not None else []) + [load_encoder(r, splits.train, splits.test, "`trained`")
                                                         for r in config.trained if r != config.encoder]
    acc_frames, dist_frames, timing = [], [], []
    fc = fc_kernel_eval(config.net, config.depths)
    conv = (conv_kernel_eval(config.conv_depths, config.conv_image_size, config.conv_tile, cache_dir=config.conv_cache)
            if config.conv_depths else None)
    for shots in config.shots:
        eps = sample(config, splits, shots)
        jobs = [("fc", fc, config.image_size, None)]
        if conv is not None:
            jobs.append(("conv", conv, config.conv_image_size, (config.conv_train_episodes, config.conv_test_episodes)))
        for kernel_name, kernel, size, sizes in jobs:
            et = episode_tasks(config, splits, eps, size)
            if sizes is not None:
                et = subset(et, min(sizes[0], config.train_episodes), min(sizes[1], config.test_episodes))
            meta = {"kernel": kernel_name, "shots": shots, "n_way": config.n_way, "n_query": config.n_query,
                    "train_episodes": len(et.tasks.train), "test_episodes": len(et.tasks.test), "image_size": size}
            acc, dist, t = run_kernel(config, kernel_name, kernel, et, label_codes(config, et, splits, encoder),
                                      meta, progress)
            acc_frames.append(acc)
            dist_frames.append(dist)
            timing.append(t)
            if kernel_name == "fc":
                for net in nets:
                    acc_frames.append(trained_rows(net, et, {**meta, "image_size": int(splits.test.images.shape[1])}))
    return {"accuracy": pd.concat(acc_frames, ignore_index=True),
            "distances": pd.concat(dist_frames, ignore_index=True),
            "timing": pd.DataFrame(timing)}


def synthetic_distances(path) -> pd.DataFrame | None:
    """Per depth and pair: mean d_rel and d_tr of the synthetic depth sweep (its depth_sweep.csv), or None."""
    from pathlib import Path

    import pandas as pd

    path = Path(path)
    if not path.exists():
        return None
    frame = pd.read_csv(path)
    need = {"depth", "pair", "d_rel", "d_tr"}
    require(need <= set(frame.columns), f"{path} is not a depth-sweep CSV (needs columns {', '.join(sorted(need))})")
    return frame.groupby(["pair", "depth"], sort=True)[["d_rel", "d_tr"]].mean().reset_index()


ROUNDOFF_D_REL = 1e-9     # d_rel below this is float64 round-off of an exact 0 (e.g. MTL-B = ANIL = head-only, global labels)


def plot(table: pd.DataFrame, dist: pd.DataFrame, synthetic: pd.DataFrame | None, title: str):
    """Figure: one row per label space; accuracy vs depth per shot setting (FC, mean +- 95% t-interval;
    conv as open squares; the trained network as horizontal lines), and d_rel vs depth on the real
    tasks next to the synthetic depth sweep. One legend for the accuracy panels, under the figure;
    d_rel values at round-off level (exact zeros) are named in the panel, not drawn on the log axis."""
    import textwrap

    from matplotlib.figure import Figure

    table = table if "labels" in table else table.assign(labels="random-slots")
    dist = dist if "labels" in dist else dist.assign(labels="random-slots")
    shots_list = sorted(table["shots"].unique())
    spaces = [ls for ls in LABEL_SPACES if ls in set(table["labels"])]
    fig = Figure(figsize=(5.4 * (len(shots_list) + 1), 4.2 * len(spaces) + 1.4), layout='constrained')
    axes = fig.subplots(len(spaces), len(shots_list) + 1, squeeze=False)
    colors = {m: f"C{i}" for i, m in enumerate(METHODS)}
    for r, space in enumerate(spaces):
        for ax, shots in zip(axes[r], shots_list):
            _accuracy_panel(ax, table[table["shots"] == shots], space, shots, colors)
        _distance_panel(axes[r, -1], dist[dist["labels"] == space], synthetic if r == 0 else None, space)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=min(8, len(labels)), fontsize=7.5, frameon=False)
    fig.suptitle("\n".join(textwrap.wrap(title, 150)), fontsize=9)
    return fig


def _accuracy_panel(ax, table: pd.DataFrame, space: str, shots: int, colors: dict) -> None:
    """Accuracy vs depth of one label space and shot setting on ``ax`` (its legend is the figure's)."""
    g = table[(table["kernel"] == "fc") & (table["labels"] == space)]
    for i, (m, gm) in enumerate(g.groupby("method", sort=False)):
        ax.errorbar(gm["depth"] * (1.0 + 0.03 * (i - 2.5)), gm["acc_mean"], yerr=gm["acc_ci95"], marker="o", ms=3,
                    capsize=2, label=f"{m} (FC)", color=colors.get(m))
    gc = table[(table["kernel"] == "conv") & (table["labels"] == space)]
    for m, gm in gc.groupby("method", sort=False):
        ax.errorbar(gm["depth"], gm["acc_mean"], yerr=gm["acc_ci95"], marker="s", ms=6, mfc="none",
                    linestyle=":", capsize=2, color=colors.get(m), label=f"{m} (conv)")
    for i, row in enumerate(table[table["kernel"] == "trained"].itertuples()):
        ax.axhline(row.acc_mean, color=f"C{6 + i}", lw=1.0, linestyle="--", label=f"trained {row.method}")
    n_way = int(g["n_way"].iloc[0]) if len(g) else 5
    ax.axhline(100.0 / n_way, color="grey", lw=0.8, linestyle=":")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("depth L (hidden layers)")
    ax.set_ylabel(f"{n_way}-way test accuracy % (mean +- 95% t-CI)", fontsize=8)
    eps = int(g["episodes"].iloc[0]) if len(g) else 0
    q = int(g["n_query"].iloc[0]) if len(g) else 0
    ax.set_title(f"{space} labels, {shots}-shot: {eps} test episodes x {q} queries/class", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)


def _distance_panel(ax, dist: pd.DataFrame, synthetic: pd.DataFrame | None, space: str) -> None:
    """d_rel vs depth (FC) of one label space, with the synthetic sweep if given; curves at round-off
    level (every depth below :data:`ROUNDOFF_D_REL`: the two predictors are equal) are listed instead."""
    exact = []
    for key, g in dist[dist["kernel"] == "fc"].groupby(["pair", "shots"], sort=True):
        if (g["d_rel"] < ROUNDOFF_D_REL).all():
            exact.append(f"{key[1]}-shot {key[0]}")
            continue
        ax.plot(g["depth"], g["d_rel"].where(g["d_rel"] >= ROUNDOFF_D_REL), marker="o",
                label=f"Omniglot {key[1]}-shot: {key[0]}")
    if synthetic is not None:
        for pair, g in synthetic.groupby("pair", sort=True):
            ax.plot(g["depth"], g["d_rel"], linestyle="--", marker="x", label=f"synthetic: {pair}")
    if exact:
        ax.text(1.03, 0.0, f"not drawn: d_rel < {ROUNDOFF_D_REL:g}\n(equal up to round-off)\nat every depth:\n"
                + "\n".join(exact), transform=ax.transAxes, fontsize=7, va="bottom")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("depth L (hidden layers)")
    ax.set_ylabel(r"$d_{rel}=\|F_a-F_b\|/\|F_b\|$ (" + space + ")")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=6.5, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
