"""Convolutional NTK / NNGP kernels for every depth in one pass, streamed in chunks, cached on disk.

Network (infinite channels, NTK parameterisation): ``[Conv(3x3, SAME, W_std) + Relu] * L``, then
``GlobalAvgPool`` and ``Dense(1, W_std=readout_W_std)``; Theta = 'ntk', K = 'nngp' of the same network
(docs/theory.md 2), the numbers of neural-tangents' ``stax`` kernel_fn (tests/engine/test_conv_engine.py
checks them to 1e-10 relative) computed by the project's own engine, :mod:`ntk_bridge.engine.conv_engine`
(no neural-tangents import): one pass of the layer recursion up to the largest depth gives every
requested depth; pairs of images are streamed ``tile`` at a time (a set against itself: only pairs
a <= b) over all local devices; float64 by default, ``dtype="float32"`` on request.

Cost: O(L (H W)^2) per pair and ``tile`` x (H W)^2 x 8 bytes x ~7-9 of memory per chunk (the default tile
keeps a state array within 2 MiB on a CPU: 64 pairs at 7x7, 4 at 14x14, 1 at 28x28 in float64); the
measured rates are in the engine's docstring, experiments/results/bench/bench_conv_kernels.txt and
chunk_sweep.txt there.

Cache: each evaluation ``kernel(x1, x2)`` is stored as one ``.npz`` under ``cache_dir``, named by
the SHA-256 of (x1 bytes and shape, x2 bytes and shape or "same", the network spec: image size,
depths, W_std, readout_W_std, and the dtype when it is not float64), so a rerun with the same images
and spec reads it back bit for bit and any change of either recomputes. The chunk size does not
change the values and is not hashed.
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

from ntk_bridge.engine.conv_engine import DTYPES, gap_kernels, readout
from ntk_bridge.engine.precision import in_float64
from ntk_bridge.engine.spec import Kernels
from ntk_bridge.errors import require

CACHE_VERSION = 1


@dataclass(frozen=True)
class ConvSpec:
    """The conv network and its evaluation: ``image_size`` x ``image_size`` x 1 inputs, ``depths``,
    weight std of the convolutions and of the readout, the pairs per engine step (``tile``; None: the
    engine's cache-sized default, :func:`ntk_bridge.engine.conv_engine.default_chunk`) and the working dtype
    (float64, or float32: about 2-2.5x faster, relative error vs float64 stated in the bench)."""

    image_size: int = 7
    depths: tuple[int, ...] = (1, 2, 4, 8)
    W_std: float = math.sqrt(2.0)
    readout_W_std: float = 1.0
    tile: int | None = None
    dtype: str = "float64"

    def __post_init__(self):
        def positive_int(v) -> bool:
            return isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1

        require(positive_int(self.image_size), f"conv image_size must be an integer >= 1 (got {self.image_size!r})")
        require(self.tile is None or positive_int(self.tile),
                f"conv tile must be an integer >= 1 (got {self.tile!r}) or None (auto)")
        require(len(self.depths) >= 1 and all(isinstance(d, (int, np.integer)) and d >= 1 for d in self.depths),
                f"conv depths must be integers >= 1 (got {list(self.depths)})")
        require(np.isfinite(self.W_std) and self.W_std > 0 and np.isfinite(self.readout_W_std)
                and self.readout_W_std > 0, "conv W_std and readout_W_std must be finite and > 0")
        require(self.dtype in DTYPES, f"conv dtype must be one of {', '.join(DTYPES)} (got {self.dtype!r})")

    def network(self) -> dict:
        """What the kernel values depend on (the tile does not change them): hashed by the cache."""
        net = {"net": "[Conv3x3 SAME + Relu]*L + GlobalAvgPool + Dense", "image_size": int(self.image_size),
               "depths": sorted(int(d) for d in set(self.depths)), "W_std": float(self.W_std),
               "readout_W_std": float(self.readout_W_std), "version": CACHE_VERSION}
        if self.dtype != "float64":
            net["dtype"] = self.dtype
        return net

    def as_dict(self) -> dict:
        return asdict(self)


@in_float64
def engine_kernels(spec: ConvSpec, x1: np.ndarray, x2: np.ndarray | None, progress=None) -> dict:
    """{depth: Kernels (n1, n2)} of flattened images x1 (n1, s*s) and x2 (n2, s*s) (None: x1 with itself),
    from one pass of :func:`ntk_bridge.engine.conv_engine.gap_kernels` (``spec.tile`` pairs per step, None: auto)."""
    s = spec.image_size
    depths = sorted(set(int(d) for d in spec.depths))
    a = np.asarray(x1, np.float64)
    require(a.ndim == 2 and a.shape[1] == s * s, f"conv inputs must be flattened {s}x{s} images, (n, {s * s}); "
                                                  f"got shape {a.shape}")
    b = None if x2 is None else np.asarray(x2, np.float64)
    require(b is None or b.shape[1:] == a.shape[1:], f"x2 must have shape (n2, {s * s}); got {None if b is None else b.shape}")
    kgap, ugap = gap_kernels(a.reshape(-1, s, s), None if b is None else b.reshape(-1, s, s), depths[-1],
                             spec.W_std, spec.dtype, chunk=spec.tile, progress=progress)
    out = readout(kgap, ugap, depths, spec.readout_W_std)
    return {d: Kernels(theta=out[d][0], k=out[d][1]) for d in depths}


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
    """A kernel evaluation ``(x1, x2 or None) -> {depth: Kernels}`` for :mod:`ntk_bridge.studies.kernel_fewshot`,
    tiled, with an optional on-disk cache (``cache_dir`` None: no cache)."""

    spec: ConvSpec
    cache_dir: Path | None = None
    stats: KernelStats = field(default_factory=KernelStats)

    def __call__(self, x1: np.ndarray, x2: np.ndarray | None = None) -> dict:
        depths = sorted(set(int(d) for d in self.spec.depths))
        path = None
        if self.cache_dir is not None:
            path = Path(self.cache_dir) / f"{content_key(self.spec, x1, x2)}.npz"
            if path.is_file():
                with np.load(path) as z:
                    self.stats.hits += 1
                    return {d: Kernels(theta=z["theta"][i], k=z["k"][i]) for i, d in enumerate(depths)}
        start = time.time()
        out = engine_kernels(self.spec, x1, x2)
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


def conv_kernel(depths: Sequence[int], image_size: int, tile: int | None = None, cache_dir: str | Path | None = None,
                W_std: float = math.sqrt(2.0), dtype: str = "float64") -> ConvKernel:
    """A :class:`ConvKernel` for ``depths`` on ``image_size`` images, ``tile`` pairs per engine step (None: auto)."""
    spec = ConvSpec(image_size=image_size, depths=tuple(sorted(set(int(d) for d in depths))), W_std=W_std, tile=tile,
                    dtype=dtype)
    return ConvKernel(spec, None if cache_dir is None else Path(cache_dir))
