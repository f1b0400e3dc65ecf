"""Episode evaluation: accuracy over ``E`` test episodes with a 95% confidence interval.

``mean +- t(0.975, E-1) * std / sqrt(E)`` (``std`` over the per-episode accuracies, ddof 0). Frozen-feature
heads (logreg / proto / ridge) extract each needed image's features once (backbone in evaluation
mode: batch norm with running averages, no DropBlock) and solve all episodes batched; the
``own`` head calls the algorithm's ``predict_episodes`` on images, a chunk of episodes at a time.
Episodes are a pure function of ``seed``, so two evaluations with one seed see the same tasks.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ntk_bridge import stats

CI_METHOD = "95% CI = t(0.975, episodes-1)*std/sqrt(episodes)"


@dataclass(frozen=True)
class EvalResult:
    """Accuracy (in %) over ``episodes`` n-way ``shots``-shot episodes with ``query`` queries/class."""

    mean: float
    ci95: float
    episodes: int
    query: int
    shots: int
    n_way: int
    head: str
    split: str

    def describe(self) -> str:
        return (f"{self.mean:.2f} +- {self.ci95:.2f} % ({self.n_way}-way {self.shots}-shot, {self.split}, "
                f"{self.episodes} episodes, {self.query} queries/class, head {self.head}, {CI_METHOD})")

    def to_dict(self) -> dict:
        return {**asdict(self), "ci_method": CI_METHOD}


@functools.lru_cache(maxsize=None)
def _feature_fn():
    """One jitted ``(state, uint8 images, mean, std) -> features`` for the process (jax caches
    its compilations per shape, so repeated validations do not recompile)."""
    import jax

    from ntk_bridge.data.augment import normalize
    from ntk_bridge.train.algorithms import features
    return jax.jit(lambda s, x, mean, std: features(s, normalize(x, mean, std)))


@functools.lru_cache(maxsize=16)
def _predict_fn(algorithm, n_way: int):
    """The jitted own-head prediction of ``algorithm`` (kept per algorithm object)."""
    import jax
    return jax.jit(lambda s, sx, sy, qx: algorithm.predict_episodes(s, sx, sy, qx, n_way))


def extract_features(state, images: np.ndarray, mean, std, batch_size: int = 256) -> np.ndarray:
    """Features (N, D) float32 of uint8 images (N, H, W, C): normalise, frozen backbone."""
    import jax.numpy as jnp

    fn = _feature_fn()
    mean, std = jnp.asarray(mean, jnp.float32), jnp.asarray(std, jnp.float32)
    n = images.shape[0]
    out = []
    for start in range(0, n, batch_size):
        chunk = images[start:start + batch_size]
        pad = batch_size - chunk.shape[0] if n > batch_size else 0  # fixed shape: one compile
        if pad:
            chunk = np.concatenate([chunk, np.zeros((pad,) + chunk.shape[1:], chunk.dtype)])
        f = np.asarray(fn(state, jnp.asarray(chunk), mean, std))
        out.append(f[:f.shape[0] - pad] if pad else f)
    return np.concatenate(out).astype(np.float32)


def evaluate(state, split, mean, std, *, n_way: int, shots: int, query: int, episodes: int,
             seed: Any, head: str = "logreg", normalize_features: bool = True, logreg_c: float = 3.0,
             logreg_iters: int = 15, ridge_lambda: float = 1.0, algorithm=None,
             chunk: int = 500) -> tuple[EvalResult, np.ndarray]:
    """Evaluate ``state`` on ``episodes`` episodes of ``split`` (a FewShotSplit).

    Returns the result and the per-episode accuracies (E,) in [0, 1]. ``head="own"`` needs
    ``algorithm`` (its ``predict_episodes``); the others use frozen features.
    """
    import jax.numpy as jnp

    from ntk_bridge.data.sampler import sample_episodes
    from ntk_bridge.errors import BridgeError
    from ntk_bridge.train.heads import head_logits, l2_normalize

    eps = sample_episodes(split.labels, n_way, shots, query, episodes, seed,
                          class_names=split.class_names)
    accs = np.empty(episodes, np.float64)
    if head == "own":
        if algorithm is None:
            raise BridgeError("test head 'own' needs the algorithm; pass it or pick logreg/proto/ridge")

        from ntk_bridge.data.augment import normalize
        step = max(1, min(chunk // 10, 50))
        def norm_episodes(x):  # uint8 (E, S, H, W, C) -> normalised float32, same shape
            return normalize(jnp.asarray(x.reshape((-1,) + x.shape[2:])), mean, std).reshape(x.shape)

        predict = _predict_fn(algorithm, n_way)
        for start in range(0, episodes, step):
            sl = slice(start, min(start + step, episodes))
            sx = norm_episodes(split.images[eps.support_idx[sl]])
            qx = norm_episodes(split.images[eps.query_idx[sl]])
            logits = predict(state, sx, jnp.asarray(eps.support_labels[sl]), qx)
            accs[sl] = np.asarray((logits.argmax(-1) == jnp.asarray(eps.query_labels[sl])).mean(-1))
    else:
        needed = np.unique(np.concatenate([eps.support_idx.ravel(), eps.query_idx.ravel()]))
        feats = extract_features(state, split.images[needed], mean, std)
        where = np.searchsorted(needed, np.arange(split.labels.size))  # image id -> row of feats
        for start in range(0, episodes, chunk):
            sl = slice(start, min(start + chunk, episodes))
            fs = jnp.asarray(feats[where[eps.support_idx[sl]]])
            fq = jnp.asarray(feats[where[eps.query_idx[sl]]])
            if normalize_features:
                fs, fq = l2_normalize(fs), l2_normalize(fq)
            logits = head_logits(head, fs, jnp.asarray(eps.support_labels[sl]), fq, n_way,
                                 logreg_c=logreg_c, logreg_iters=logreg_iters, ridge_lambda=ridge_lambda)
            accs[sl] = np.asarray((logits.argmax(-1) == jnp.asarray(eps.query_labels[sl])).mean(-1))
    if not np.all(np.isfinite(accs)):
        raise BridgeError("evaluation produced non-finite accuracies; the features contain NaN "
                          "(the checkpoint is broken): retrain or evaluate an earlier checkpoint")
    m, ci = stats.mean_ci(100.0 * np.asarray(accs, dtype=np.float64), ddof=0)   # per-episode %, std ddof 0
    head_name = f"logreg(C={logreg_c:g})" if head == "logreg" else head
    return EvalResult(m, ci, episodes, query, shots, n_way, head_name, split.name), accs
