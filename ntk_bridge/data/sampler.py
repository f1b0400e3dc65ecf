"""Vectorised, seeded episode samplers over a split's label vector.

``sample_episodes`` draws E few-shot episodes at once: for each episode ``n_way`` distinct
classes, then ``k_shot + q_query`` distinct images of each class, the first ``k_shot`` (in a
uniformly random order) being the support set and the rest the queries, so support and query
never share an image. ``sample_task_batch`` draws MTL tasks: ``n_way`` distinct classes and
``n_per_class`` images each, keeping the classes' global ids so a head bank can be indexed.

Sampling k distinct items out of n gives a uniformly random ordered k-subset in one of two
ways: random keys (u ~ U(0,1) for every candidate, keep the k smallest: ``argpartition`` then a
sort of those k keys), or, when k (k - 1) <= n, uniform draws with whole rows redrawn while they hold
a repeat (rejection). Work is done in chunks of episodes so memory stays under
about 32 MB whatever E is.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np

from ntk_bridge.errors import BridgeError

__all__ = ["Episodes", "TaskBatch", "sample_episodes", "sample_task_batch", "as_rng"]

_CHUNK_ELEMENTS = 1 << 22  # random keys per chunk (4M float64 = 32 MB)


class Episodes(NamedTuple):
    """E episodes of an n-way k-shot task with q queries per class (all int64 arrays).

    classes: (E, n_way) split-level class ids; support_idx / query_idx index split.images in
    class-major order (the k (or q) images of classes[:, 0] first); labels are 0..n_way-1.
    """

    classes: np.ndarray
    support_idx: np.ndarray
    support_labels: np.ndarray
    query_idx: np.ndarray
    query_labels: np.ndarray


class TaskBatch(NamedTuple):
    """T MTL tasks: classes (T, n_way) global class ids; idx, labels (T, n_way * n_per_class)."""

    classes: np.ndarray
    idx: np.ndarray
    labels: np.ndarray


def as_rng(seed_or_rng) -> np.random.Generator:
    """A numpy Generator from an int seed, a SeedSequence or an existing Generator."""
    if isinstance(seed_or_rng, np.random.Generator):
        return seed_or_rng
    if seed_or_rng is None:
        raise BridgeError("sampling needs an explicit seed (int) or numpy Generator; got None")
    return np.random.default_rng(seed_or_rng)


def _check_int(name: str, value, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise BridgeError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


def _class_table(labels, n_way: int, per_class: int, what: str,
                 class_names: Sequence[str] | None):
    """Classes, padded index table (C, max_count) and counts; one-line errors on bad input."""
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise BridgeError(f"labels must be a 1-d integer array, got {labels.dtype} "
                          f"shape {labels.shape}")
    classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    if classes.size < n_way:
        raise BridgeError(f"the split has {classes.size} classes but n_way={n_way} needs at "
                          f"least {n_way}; lower n_way or use a split with more classes")
    short = np.flatnonzero(counts < per_class)
    if short.size:
        c = int(classes[short[0]])
        name = f" ({class_names[c]})" if class_names is not None and 0 <= c < len(class_names) else ""
        raise BridgeError(f"class {c}{name} has {int(counts[short[0]])} images but {what} = "
                          f"{per_class} are needed ({short.size} classes are short); lower the "
                          "shots/queries")
    order = np.argsort(inverse, kind="stable")  # image indices grouped by class, ascending
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    width = int(counts.max())
    col = np.arange(width)
    table = np.where(col[None, :] < counts[:, None],
                     order[np.minimum(starts[:, None] + col[None, :], labels.size - 1)], -1)
    return classes, table.astype(np.int64), counts.astype(np.int64)


def _draw(table, counts, n_classes: int, n_way: int, per_class: int, n: int,
          rng: np.random.Generator):
    """(n, n_way) class positions and (n, n_way, per_class) image indices, all distinct."""
    width = table.shape[1]
    chunk = max(1, _CHUNK_ELEMENTS // max(n_classes, n_way * width))
    cls_out = np.empty((n, n_way), np.int64)
    img_out = np.empty((n, n_way, per_class), np.int64)
    col = np.arange(width)
    for lo in range(0, n, chunk):
        hi = min(n, lo + chunk)
        m = hi - lo
        keys = rng.random((m, n_classes))
        if n_way < n_classes:
            part = np.argpartition(keys, n_way - 1, axis=1)[:, :n_way]
        else:
            part = np.broadcast_to(np.arange(n_classes), (m, n_classes))
        order = np.argsort(np.take_along_axis(keys, part, axis=1), axis=1)
        cls = np.take_along_axis(part, order, axis=1)  # uniformly random ordered n_way-subset
        cls_out[lo:hi] = cls
        pos = _distinct_positions(rng, counts[cls], per_class, col)
        img_out[lo:hi] = table[cls[:, :, None], pos]
    return cls_out, img_out


def _distinct_positions(rng: np.random.Generator, cnt: np.ndarray, per_class: int,
                        col: np.ndarray) -> np.ndarray:
    """(m, n_way, per_class) distinct positions in 0..cnt-1 per row, a uniform ordered subset.

    Few draws from big classes (k (k - 1) <= cnt everywhere, k = per_class): draw uniformly and
    redraw every row holding a repeat (rejection; a repeat-free row is uniform over ordered
    subsets; P(repeat) <= 1 - exp(-k (k-1) / (2 cnt)) ~ 0.39, so few rounds). Otherwise random keys: u ~ U(0,1) for every
    position, keep the per_class smallest in key order.
    """
    m, n_way = cnt.shape
    if per_class * (per_class - 1) <= int(cnt.min()):
        pos = rng.integers(0, cnt[:, :, None], (m, n_way, per_class))
        while per_class > 1:
            srt = np.sort(pos, axis=2)
            bad = np.any(srt[:, :, 1:] == srt[:, :, :-1], axis=2)
            n_bad = int(bad.sum())
            if n_bad == 0:
                break
            pos[bad] = rng.integers(0, cnt[bad][:, None], (n_bad, per_class))
        return pos
    width = col.size
    keys = rng.random((m, n_way, width))
    keys[col[None, None, :] >= cnt[:, :, None]] = 2.0  # padding is never chosen
    if per_class < width:
        part = np.argpartition(keys, per_class - 1, axis=2)[:, :, :per_class]
    else:
        part = np.broadcast_to(col, (m, n_way, width))
    order = np.argsort(np.take_along_axis(keys, part, axis=2), axis=2)
    return np.take_along_axis(part, order, axis=2)


def sample_episodes(labels: np.ndarray, n_way: int, k_shot: int, q_query: int,
                    n_episodes: int, seed_or_rng, *,
                    class_names: Sequence[str] | None = None) -> Episodes:
    """Draw ``n_episodes`` n-way k-shot episodes with ``q_query`` queries per class.

    labels: int (N,) class id of every image of the split. Returns :class:`Episodes` whose
    indices point into the split. ``class_names`` (optional) only improves error messages.
    """
    n_way = _check_int("n_way", n_way, 1)
    k_shot = _check_int("k_shot", k_shot, 1)
    q_query = _check_int("q_query", q_query, 0)
    n_episodes = _check_int("n_episodes", n_episodes, 1)
    rng = as_rng(seed_or_rng)
    per = k_shot + q_query
    classes, table, counts = _class_table(labels, n_way, per, f"k_shot + q_query = {k_shot} + "
                                          f"{q_query}", class_names)
    cls, img = _draw(table, counts, classes.size, n_way, per, n_episodes, rng)
    e = n_episodes
    return Episodes(
        classes=classes[cls].astype(np.int64),
        support_idx=img[:, :, :k_shot].reshape(e, n_way * k_shot),
        support_labels=np.broadcast_to(np.repeat(np.arange(n_way), k_shot),
                                       (e, n_way * k_shot)).copy(),
        query_idx=img[:, :, k_shot:].reshape(e, n_way * q_query),
        query_labels=np.broadcast_to(np.repeat(np.arange(n_way), q_query),
                                     (e, n_way * q_query)).copy(),
    )


def sample_task_batch(labels: np.ndarray, n_way: int, n_per_class: int, n_tasks: int,
                      seed_or_rng, *, class_names: Sequence[str] | None = None) -> TaskBatch:
    """Draw ``n_tasks`` MTL tasks of ``n_way`` classes with ``n_per_class`` images each.

    classes: (T, n_way) global class ids (label values), so ``head_bank[classes]`` picks each
    task's head rows; idx: (T, n_way * n_per_class) image indices, class-major; labels: the
    position 0..n_way-1 of each image's class within its task.
    """
    n_way = _check_int("n_way", n_way, 1)
    n_per_class = _check_int("n_per_class", n_per_class, 1)
    n_tasks = _check_int("n_tasks", n_tasks, 1)
    rng = as_rng(seed_or_rng)
    classes, table, counts = _class_table(labels, n_way, n_per_class, "n_per_class", class_names)
    cls, img = _draw(table, counts, classes.size, n_way, n_per_class, n_tasks, rng)
    return TaskBatch(
        classes=classes[cls].astype(np.int64),
        idx=img.reshape(n_tasks, n_way * n_per_class),
        labels=np.broadcast_to(np.repeat(np.arange(n_way), n_per_class),
                               (n_tasks, n_way * n_per_class)).copy(),
    )
