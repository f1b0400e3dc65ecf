"""Few-shot regression tasks: the task container and seeded synthetic task families.

docs/theory.md section 1: task i has query (X_i, Y_i) and support (X'_i, Y'_i); inputs lie on the
sphere of radius sqrt(d). A :class:`TaskSet` holds training and test tasks and lays all their
points out in one array, so that one kernel matrix over every point serves every predictor.

Families (both share structure across tasks, so training tasks can help a test task):

- ``teacher``: a random teacher network with a shared body ``phi_T`` (one ReLU layer of width
  ``teacher_width``) and task heads ``w_i = w_0 + spread * xi_i`` drawn around a common head:
  ``y = w_i . phi_T(x) / sqrt(teacher_width) + noise``. The mean task ``w_0 . phi_T`` is what
  any learner can carry over from the training tasks.
- ``subspace``: tasks share a low-dimensional subspace ``P`` (``rank`` orthonormal directions):
  ``y = c_i . tanh(P x) / sqrt(rank) + noise`` with ``c_i = c_0 + spread * xi_i``.
- ``quadratic``: tasks share a low-rank NONLINEAR feature with no linear part: the degree-2
  Hermite features of the same kind of projection, ``y = c_i . He2(P x) / sqrt(rank) + noise``
  with ``He2(z) = (z^2 - 1) / sqrt(2)`` (unit variance for ``z ~ N(0, 1)``), ``c_i`` as above.

For ``subspace`` and ``quadratic`` the ground-truth representation is known: ``meta["subspace"]``
holds ``P`` (rank, d), orthonormal rows, so a learned representation can be scored against it
(:func:`ntk_bridge.studies.feature_map.alignment`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ntk_bridge.engine.spec import to_sphere
from ntk_bridge.errors import require

FAMILIES = ("teacher", "subspace", "quadratic")
SUBSPACE_FAMILIES = ("subspace", "quadratic")     # the families with a known shared subspace P


@dataclass(frozen=True)
class Task:
    """One task. Shapes: x_query (n_q, d), y_query (n_q, c), x_support (n_s, d), y_support (n_s, c)."""

    x_query: np.ndarray
    y_query: np.ndarray
    x_support: np.ndarray
    y_support: np.ndarray

    def __post_init__(self):
        arrays = {}
        for name in ("x_query", "y_query", "x_support", "y_support"):
            a = np.asarray(getattr(self, name), dtype=np.float64)
            if name.startswith("y") and a.ndim == 1:
                a = a[:, None]
            require(a.ndim == 2, f"Task.{name} must be 2-D (n, d) or (n, c); got shape {a.shape}")
            require(bool(np.all(np.isfinite(a))), f"Task.{name} contains NaN or inf")
            arrays[name] = a
            object.__setattr__(self, name, a)
        xq, yq, xs, ys = (arrays[k] for k in ("x_query", "y_query", "x_support", "y_support"))
        require(xq.shape[0] == yq.shape[0],
                f"Task query has {xq.shape[0]} inputs but {yq.shape[0]} labels")
        require(xs.shape[0] == ys.shape[0],
                f"Task support has {xs.shape[0]} inputs but {ys.shape[0]} labels")
        require(xq.shape[1] == xs.shape[1],
                f"Task query inputs have d={xq.shape[1]} but support inputs d={xs.shape[1]}")
        require(yq.shape[1] == ys.shape[1],
                f"Task query labels have {yq.shape[1]} outputs but support labels {ys.shape[1]}")
        require(xq.shape[0] >= 1 and xs.shape[0] >= 1, "a task needs at least one query and one support point")

    @property
    def n_query(self) -> int:
        return self.x_query.shape[0]

    @property
    def n_support(self) -> int:
        return self.x_support.shape[0]


@dataclass(frozen=True)
class TaskSet:
    """Training and test tasks and the layout of all their points in one array.

    ``points`` (n_total, d) stacks, per task, its query rows then its support rows: training
    tasks first, then test tasks. ``train_q[i]``, ``train_s[i]``, ``test_q[j]``, ``test_s[j]`` are
    the row indices of each block. All training tasks share (n_q, n_s); so do all test tasks.
    """

    train: tuple[Task, ...]
    test: tuple[Task, ...]
    meta: dict = field(default_factory=dict, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "train", tuple(self.train))
        object.__setattr__(self, "test", tuple(self.test))
        require(len(self.train) >= 1, "a TaskSet needs at least one training task")
        require(len(self.test) >= 1, "a TaskSet needs at least one test task")
        for group, tasks in (("training", self.train), ("test", self.test)):
            shapes = {(t.n_query, t.n_support) for t in tasks}
            require(len(shapes) == 1, f"all {group} tasks must have the same (n_query, n_support); got {sorted(shapes)}")
        dims = {t.x_query.shape[1] for t in self.train + self.test}
        outs = {t.y_query.shape[1] for t in self.train + self.test}
        require(len(dims) == 1, f"all tasks must have the same input dimension; got {sorted(dims)}")
        require(len(outs) == 1, f"all tasks must have the same number of outputs; got {sorted(outs)}")

    # ---- layout
    def _rows(self, test: bool) -> tuple[np.ndarray, np.ndarray]:
        """(q, s): row indices (N, n_q) and (N, n_s) of one group's query and support blocks. Every
        task of a group has the same (n_q, n_s), so task i's block starts at offset + i (n_q + n_s)."""
        group = self.test if test else self.train
        nq, ns = group[0].n_query, group[0].n_support
        offset = len(self.train) * (self.train[0].n_query + self.train[0].n_support) if test else 0
        start = offset + np.arange(len(group))[:, None] * (nq + ns)
        return start + np.arange(nq), start + nq + np.arange(ns)

    @property
    def points(self) -> np.ndarray:
        return np.concatenate([np.concatenate([t.x_query, t.x_support]) for t in self.train + self.test])

    @property
    def train_q(self) -> np.ndarray:
        """(N, n_q) row indices of the training queries."""
        return self._rows(test=False)[0]

    @property
    def train_s(self) -> np.ndarray:
        return self._rows(test=False)[1]

    @property
    def test_q(self) -> np.ndarray:
        return self._rows(test=True)[0]

    @property
    def test_s(self) -> np.ndarray:
        return self._rows(test=True)[1]

    @property
    def train_z(self) -> np.ndarray:
        """(N, n_q + n_s) row indices of each training task's merged data Z_i = [X_i; X'_i]."""
        return np.concatenate([self.train_q, self.train_s], axis=1)

    # ---- labels
    def train_y_query(self) -> np.ndarray:
        return np.stack([t.y_query for t in self.train])          # (N, n_q, c)

    def train_y_support(self) -> np.ndarray:
        return np.stack([t.y_support for t in self.train])        # (N, n_s, c)

    def test_y_query(self) -> np.ndarray:
        return np.stack([t.y_query for t in self.test])           # (N_test, n_q, c)

    def test_y_support(self) -> np.ndarray:
        return np.stack([t.y_support for t in self.test])         # (N_test, n_s, c)


@dataclass(frozen=True)
class FamilyConfig:
    """Sizes and shape of a synthetic task family."""

    family: str = "teacher"
    d: int = 16
    n_train_tasks: int = 10
    n_test_tasks: int = 10
    n_query: int = 5
    n_support: int = 5
    spread: float = 0.5
    noise: float = 0.0
    teacher_width: int = 64
    rank: int = 3

    def __post_init__(self):
        require(self.family in FAMILIES, f"unknown task family {self.family!r}; choose one of {', '.join(FAMILIES)}")
        for name in ("d", "n_train_tasks", "n_test_tasks", "n_query", "n_support", "teacher_width", "rank"):
            v = getattr(self, name)
            require(isinstance(v, (int, np.integer)) and v >= 1, f"{name} must be an integer >= 1 (got {v!r})")
        require(self.spread >= 0 and self.noise >= 0, "spread and noise must be >= 0")
        require(self.family not in SUBSPACE_FAMILIES or self.rank <= self.d,
                f"the {self.family} family's rank ({self.rank}) cannot exceed the input dimension d ({self.d})")

    def describe(self) -> str:
        """One line for figure titles and printouts: family, d, task counts, n_q, n_s."""
        return (f"{self.family} tasks (d={self.d}, {self.n_train_tasks} train / {self.n_test_tasks} test tasks, "
                f"n_q={self.n_query}, n_s={self.n_support})")


def _sphere(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    return to_sphere(rng.standard_normal((n, d)))


def make_tasks(config: FamilyConfig, seed: int) -> TaskSet:
    """Draw a :class:`TaskSet` of ``config.family`` from ``np.random.default_rng(seed)``."""
    rng = np.random.default_rng(seed)
    d = config.d
    proj = None
    if config.family == "teacher":
        m = config.teacher_width
        w_body = rng.standard_normal((d, m))
        w0 = rng.standard_normal(m)

        def features(x):
            return math.sqrt(2.0) * np.maximum(x @ w_body / math.sqrt(d), 0.0)

        def head():
            return (w0 + config.spread * rng.standard_normal(m)) / math.sqrt(m)
    else:
        q, _ = np.linalg.qr(rng.standard_normal((d, config.rank)))
        proj = q.T * math.sqrt(1.0)                  # (rank, d) orthonormal rows; p . x ~ N(0, 1)
        c0 = rng.standard_normal(config.rank)

        def features(x):
            z = x @ proj.T
            return np.tanh(z) if config.family == "subspace" else (z ** 2 - 1.0) / math.sqrt(2.0)

        def head():
            return (c0 + config.spread * rng.standard_normal(config.rank)) / math.sqrt(config.rank)

    def task() -> Task:
        w = head()
        xq, xs = _sphere(rng, config.n_query, d), _sphere(rng, config.n_support, d)

        def label(x):
            return (features(x) @ w + config.noise * rng.standard_normal(len(x)))[:, None]

        return Task(xq, label(xq), xs, label(xs))

    train = tuple(task() for _ in range(config.n_train_tasks))
    test = tuple(task() for _ in range(config.n_test_tasks))
    meta = {"family": config.family, "seed": int(seed)}
    if proj is not None:
        meta["subspace"] = proj
    return TaskSet(train, test, meta=meta)


def stack_tasks(tasks: Sequence[Task]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Arrays (T, n_q, d), (T, n_q, c), (T, n_s, d), (T, n_s, c) of equally sized tasks."""
    return (np.stack([t.x_query for t in tasks]), np.stack([t.y_query for t in tasks]),
            np.stack([t.x_support for t in tasks]), np.stack([t.y_support for t in tasks]))
