"""Convolutional NTK / NNGP kernels for every depth in one pass, in tiles, cached on disk.

Network (neural-tangents ``stax``, infinite channels): ``[Conv(3x3, SAME, W_std) + Relu] * L``,
then ``GlobalAvgPool`` and ``Dense(1, W_std=readout_W_std)``; Theta = 'ntk', K = 'nngp' of the same
network (docs/theory.md 2). The layer recursion is run once up to the largest depth and the readout is
applied after each requested depth, so depths 1..8 cost one depth-8 pass rather than 36 layers.

Cost: neural-tangents keeps the full (n1, n2, H, W, H, W) spatial covariance, so one kernel entry
costs O((H W)^2 L) and a tile of t x t points needs t^2 (H W)^2 x 8 bytes per stored layer
(t = 32 at 7x7: 20 MB; at 14x14: 315 MB). On the 2 shared CPU cores of this project that is a
few thousand entries per second at 7x7 and a few hundred at 14x14 for one depth: use small images
and few episodes. Everything is float64 (computed inside ``nt_backend.float64()``).

Cache: each evaluation ``kernel(x1, x2)`` is stored as one ``.npz`` under ``cache_dir``, named by
the SHA-256 of (x1 bytes and shape, x2 bytes and shape or "same", the network spec), so a rerun
with the same images and spec reads it back bit for bit and any change of either recomputes.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from ntk_bridge.errors import require
from ntk_bridge.kernels import Kernels
from ntk_bridge.nt_backend import in_float64

CACHE_VERSION = 1


@dataclass(frozen=True)
class ConvSpec:
    """The conv network and its evaluation: ``image_size`` x ``image_size`` x 1 inputs, ``depths``,
    weight std of the convolutions and of the readout, and the tile (points per side of a block)."""

    image_size: int = 7
    depths: tuple[int, ...] = (1, 2, 4, 8)
    W_std: float = math.sqrt(2.0)
    readout_W_std: float = 1.0
    tile: int = 32

    def __post_init__(self):
        for name in ("image_size", "tile"):
            v = getattr(self, name)
            require(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1,
                    f"conv {name} must be an integer >= 1 (got {v!r})")
        require(len(self.depths) >= 1 and all(isinstance(d, (int, np.integer)) and d >= 1 for d in self.depths),
                f"conv depths must be integers >= 1 (got {list(self.depths)})")
        require(np.isfinite(self.W_std) and self.W_std > 0 and np.isfinite(self.readout_W_std)
                and self.readout_W_std > 0, "conv W_std and readout_W_std must be finite and > 0")

    def network(self) -> dict:
        """What the kernel values depend on (the tile does not change them): hashed by the cache."""
        return {"net": "[Conv3x3 SAME + Relu]*L + GlobalAvgPool + Dense", "image_size": int(self.image_size),
                "depths": sorted(int(d) for d in set(self.depths)), "W_std": float(self.W_std),
                "readout_W_std": float(self.readout_W_std), "version": CACHE_VERSION}

    def as_dict(self) -> dict:
        return asdict(self)


def all_depths_fn(spec: ConvSpec):
    """A jit-compiled ``f(a, b) -> (theta, k)``, each (n_depths, n1, n2), for image batches a (n1, H, W, 1),
    b (n2, H, W, 1): one pass of the layer recursion, the readout after each depth in spec.depths."""
    import jax
    import jax.numpy as jnp

    from ntk_bridge.nt_backend import stax as _stax

    stax = _stax()
    conv_relu = [stax.Conv(1, (3, 3), padding="SAME", W_std=spec.W_std), stax.Relu()]
    _, _, first = stax.serial(*conv_relu)
    _, _, layer = stax.serial(*conv_relu)
    _, _, readout = stax.serial(stax.GlobalAvgPool(), stax.Dense(1, W_std=spec.readout_W_std))
    depths = sorted(set(int(d) for d in spec.depths))

    def f(a, b):
        kern = first(a, b)
        thetas, ks = [], []
        for d in range(1, depths[-1] + 1):
            if d > 1:
                kern = layer(kern)
            if d in depths:
                out = readout(kern)
                thetas.append(out.ntk)
                ks.append(out.nngp)
        return jnp.stack(thetas), jnp.stack(ks)

    return jax.jit(f)


@in_float64
def reference_kernel(spec: ConvSpec, depth: int, x1: np.ndarray, x2: np.ndarray | None):
    """(Theta, K) of one unbatched neural-tangents call of the depth-``depth`` network (for tests)."""
    from ntk_bridge.nt_backend import stax as _stax

    stax = _stax()
    layers = []
    for _ in range(depth):
        layers += [stax.Conv(1, (3, 3), padding="SAME", W_std=spec.W_std), stax.Relu()]
    _, _, kfn = stax.serial(*layers, stax.GlobalAvgPool(), stax.Dense(1, W_std=spec.readout_W_std))
    s = spec.image_size
    a = np.asarray(x1, np.float64).reshape(-1, s, s, 1)
    b = None if x2 is None else np.asarray(x2, np.float64).reshape(-1, s, s, 1)
    t, k = kfn(a, b, ("ntk", "nngp"))
    return np.asarray(t), np.asarray(k)


def _pad(a: np.ndarray, n: int) -> np.ndarray:
    return a if len(a) == n else np.concatenate([a, np.repeat(a[:1], n - len(a), axis=0)])


@in_float64
def tiled_kernels(spec: ConvSpec, fn, x1: np.ndarray, x2: np.ndarray | None) -> dict:
    """{depth: Kernels (n1, n2)} of flattened images x1 (n1, s*s) and x2 (n2, s*s) (None: x1 with itself),
    evaluated in ``spec.tile`` x ``spec.tile`` blocks (the last padded to the full tile so that ``fn``
    compiles once); with x2 None only the upper blocks are computed and mirrored."""
    s, tile = spec.image_size, spec.tile
    same = x2 is None
    img1 = np.asarray(x1, np.float64).reshape(-1, s, s, 1)
    img2 = img1 if same else np.asarray(x2, np.float64).reshape(-1, s, s, 1)
    n1, n2 = len(img1), len(img2)
    depths = sorted(set(int(d) for d in spec.depths))
    theta, k = np.empty((len(depths), n1, n2)), np.empty((len(depths), n1, n2))
    for i in range(0, n1, tile):
        a = _pad(img1[i:i + tile], tile)
        for j in range(i if same else 0, n2, tile):
            t_ij, k_ij = (np.asarray(v) for v in fn(a, _pad(img2[j:j + tile], tile)))
            r, c = min(tile, n1 - i), min(tile, n2 - j)
            theta[:, i:i + r, j:j + c], k[:, i:i + r, j:j + c] = t_ij[:, :r, :c], k_ij[:, :r, :c]
            if same and j != i:
                theta[:, j:j + c, i:i + r] = np.swapaxes(theta[:, i:i + r, j:j + c], 1, 2)
                k[:, j:j + c, i:i + r] = np.swapaxes(k[:, i:i + r, j:j + c], 1, 2)
    if same:
        theta, k = 0.5 * (theta + np.swapaxes(theta, 1, 2)), 0.5 * (k + np.swapaxes(k, 1, 2))
    return {d: Kernels(theta=theta[i], k=k[i]) for i, d in enumerate(depths)}


def content_key(spec: ConvSpec, x1: np.ndarray, x2: np.ndarray | None) -> str:
    """SHA-256 hex of (x1, x2 or "same", the network spec): the cache file name."""
    h = hashlib.sha256()
    h.update(json.dumps(spec.network(), sort_keys=True).encode())
    for x in (x1, x2):
        if x is None:
            h.update(b"same")
            continue
        a = np.ascontiguousarray(x, np.float64)
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()


@dataclass
class KernelStats:
    """Counters of a :class:`ConvKernel`: entries computed (per depth), seconds spent computing, cache hits."""

    computed_entries: int = 0
    seconds: float = 0.0
    hits: int = 0
    misses: int = 0

    def entries_per_s(self) -> float:
        return self.computed_entries / self.seconds if self.seconds > 0 else float("nan")


@dataclass
class ConvKernel:
    """A kernel evaluation ``(x1, x2 or None) -> {depth: Kernels}`` for :mod:`ntk_bridge.kernel_fewshot`,
    tiled, with an optional on-disk cache (``cache_dir`` None: no cache)."""

    spec: ConvSpec
    cache_dir: Path | None = None
    stats: KernelStats = field(default_factory=KernelStats)
    _fn: object = None

    def __call__(self, x1: np.ndarray, x2: np.ndarray | None = None) -> dict:
        depths = sorted(set(int(d) for d in self.spec.depths))
        path = None
        if self.cache_dir is not None:
            path = Path(self.cache_dir) / f"{content_key(self.spec, x1, x2)}.npz"
            if path.is_file():
                with np.load(path) as z:
                    self.stats.hits += 1
                    return {d: Kernels(theta=z["theta"][i], k=z["k"][i]) for i, d in enumerate(depths)}
        if self._fn is None:
            self._fn = all_depths_fn(self.spec)
        start = time.time()
        out = tiled_kernels(self.spec, self._fn, x1, x2)
        self.stats.seconds += time.time() - start
        self.stats.misses += 1
        n1 = len(x1)
        self.stats.computed_entries += n1 * (n1 + 1) // 2 if x2 is None else n1 * len(x2)
        if path is not None:
            from ntk_bridge.io import atomic_write

            theta = np.stack([out[d].theta for d in depths])
            k = np.stack([out[d].k for d in depths])
            atomic_write(path, lambda fh: np.savez(fh, theta=theta, k=k), mode="wb")
        return out


def conv_kernel(depths: Sequence[int], image_size: int, tile: int, cache_dir: str | Path | None = None,
                W_std: float = math.sqrt(2.0)) -> ConvKernel:
    """A :class:`ConvKernel` for ``depths`` on ``image_size`` images in ``tile``-point blocks."""
    spec = ConvSpec(image_size=image_size, depths=tuple(sorted(set(int(d) for d in depths))), W_std=W_std, tile=tile)
    return ConvKernel(spec, None if cache_dir is None else Path(cache_dir))
