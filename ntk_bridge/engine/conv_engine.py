"""The CNN-GAP kernel engine: ``[Conv 3x3 SAME + ReLU] * L + GlobalAvgPool + Dense``, infinite channels.

NTK parameterisation, no biases, single-channel (H, W) inputs; the numbers of neural-tangents'
``stax.serial(*[Conv(C, (3, 3), padding='SAME', W_std=W), Relu()] * L, GlobalAvgPool(),
Dense(1, W_std=W_r))`` kernel_fn (Theta = 'ntk', K = 'nngp'), computed without it.

Recursion for one pair of images (x, y), positions i, j in the H*W grid, c = W^2 / 9:

    S(A)[i, j]  = sum_{d in {-1,0,1}^2} A[i + d, j + d]          (zero outside: SAME padding; the same
                                                                  shift on both indices, separable)
    layer 0:      Kr_0 = x y^T,  Tr_0 = 0                        (input covariance, mean over 1 channel)
    layer l:      K_l = c S(Kr_{l-1}),  T_l = c S(Tr_{l-1} + Kr_{l-1})
                  rho = K_l / sqrt(q_l(x)_i q_l(y)_j),  theta = acos(rho)                 (fast_math.arccos)
                  Kr_l = (sqrt(q_l(x)_i q_l(y)_j) sqrt((1 - rho)(1 + rho)) + (pi - theta) K_l) / (2 pi)
                  Tr_l = T_l (pi - theta) / (2 pi)
    readout:      K^(l) = W_r^2 mean_{i,j} Kr_l,   Theta^(l) = W_r^2 mean_{i,j} (Kr_l + Tr_l)

The per-image variances q_l(x)_i = K_l(x, x)[i, i] follow from the diagonal alone (S maps the diagonal
to itself and ReLU halves it): q_1 = c box3x3(x^2), q_{l+1} = c box3x3(q_l / 2); they are computed once
per image (:func:`variances`), not per pair. For the pair (x, x) of a set with itself rho is set to
exactly 1 on the diagonal i = j (rounding would otherwise give acos(1 - 1e-16) ~ 1e-8).

Every depth 1..L comes out of one pass (a ``lax.scan`` over layers, the readout after each layer);
the state of a pair is the two (H W) x (H W) arrays K and T, nothing else. One jitted step maps a
chunk of P pairs (P = ``chunk``) through all layers; pairs are streamed in chunks so memory is bounded
at any N; for a set against itself only the pairs a <= b are computed and mirrored. A chunk is split
over all local devices along the pair axis (``jax.sharding``, :func:`pair_sharding`): the same code on
one CPU, 4 virtual CPU devices or a GPU. Under ``jax.distributed`` the chunks are dealt round-robin
to the processes (hosts) and the partial kernels summed across them (:func:`gap_kernels`).

Cost model (per pair, per layer; n = H W positions, b = 8 bytes in float64, 4 in float32):
  work    2 stencils (each two separable passes of 3 shifted adds, materialised: K and T) and the ReLU
          map, whose two outputs (Kr and Kr + Tr) are two fused passes over n^2 entries, each with its
          own arc-cosine and square roots (~40 flops; :func:`relu_map` says why), so time per pair =
          L n^2 / R with R the engine's rate in entry-layers per second. Measured R on the project's
          2-core CPU machine (experiments/results/bench/bench_conv_kernels.txt, depth 8, default chunk,
          machine otherwise idle, per WALL second, both cores):
              float64: 2.1-2.4e8 at 7x7, 2.3-2.5e8 at 14x14, 2.1-2.3e8 at 28x28 (4-5 ns per entry-layer)
              float32: 4.5-5.6e8 at 7x7, 5.0-5.3e8 at 14x14, 4.7e8 at 28x28 (1.8-2.2 ns)
          i.e. a 28x28 pair through 8 layers takes 22-29 ms in float64 and ~11 ms in float32
          (chunk_sweep.txt). Entries per wall second, all depths 1..8, two different sets: float64
          ~1.1e4 at 7x7, ~740 at 14x14, ~46 at 28x28 (a set with itself: ~1.6-2.3x that, n(n+1)/2 pairs
          for n^2 entries). The same machine's single elementwise pass over a chunk's state costs
          0.11-0.48 ns per entry (y = a x + b) and 0.29-0.64 ns (the fast arc-cosine alone): the engine
          reaches 5-25 % of the axpy rate and 10-19 % of the arc-cosine rate per entry-layer; the rest
          goes to the stencil passes (shifted copies with zero fill, as XLA's CPU backend emits them)
          and to evaluating the ReLU map twice (once per output, which is still faster than one shared
          evaluation: :func:`relu_map`).
  memory  one step of P pairs holds ~7-9 arrays of P n^2 b (XLA's buffer plan of the compiled step,
          memory_analysis, in chunk_sweep.txt: 10 MiB at 7x7 (P = 64), 8.6 MiB at 14x14 (P = 4),
          31.5 MiB at 28x28 (P = 1) in float64). The default chunk (:func:`default_chunk`) keeps that
          in a CPU's last-level cache, which is worth 1.0-2.2x per pair against a step 2-8x larger; on
          a GPU it allows up to 2^26 entries per state array (28x28: P = 64, ~2.2 GB per step in float64).
          Memory does not grow with N (pairs are streamed) or with L (one scan step at a time).
  dtype   float32 halves memory and is ~2-2.5x faster on these CPUs; its relative error against
          float64 over depths 1..8 is ~2e-7 (measured in the bench and tested < 1e-5).
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from ntk_bridge.engine.fast_math import arccos

DTYPES = ("float64", "float32")


def _box3(a: np.ndarray) -> np.ndarray:
    """3x3 box sum with zero padding over the last two axes of a numpy array (..., H, W)."""
    p = np.pad(a, [(0, 0)] * (a.ndim - 2) + [(1, 1), (1, 1)])
    h, w = a.shape[-2:]
    return sum(p[..., dh:dh + h, dw:dw + w] for dh in range(3) for dw in range(3))


def variances(images: np.ndarray, n_layers: int, W_std: float) -> np.ndarray:
    """q_l(x)_i = K_l(x, x)[i, i] for l = 1..n_layers: images (n, H, W) -> (n, n_layers, H, W), float64.

    q_1 = c box(x^2), q_{l+1} = c box(q_l / 2), c = W_std^2 / 9 (module docstring)."""
    c = W_std ** 2 / 9.0
    q = c * _box3(np.asarray(images, np.float64) ** 2)
    out = [q]
    for _ in range(n_layers - 1):
        q = c * _box3(0.5 * q)
        out.append(q)
    return np.stack(out, axis=1)


def _shift_sum(a, axes: tuple[int, int]):
    """sum_{d in -1,0,1} a[.., i + d, .., j + d, ..] over the two axes ``axes`` (zero outside)."""
    import jax.numpy as jnp

    ax1, ax2 = axes
    n1, n2 = a.shape[ax1], a.shape[ax2]
    pad = [(0, 0)] * a.ndim
    pad[ax1], pad[ax2] = (1, 1), (1, 1)
    p = jnp.pad(a, pad)

    def window(d):
        idx = [slice(None)] * a.ndim
        idx[ax1], idx[ax2] = slice(d, d + n1), slice(d, d + n2)
        return p[tuple(idx)]

    return window(0) + window(1) + window(2)


def stencil(a):
    """S(a) over a pair state (H, W, H, W, P) (pairs last: every shift moves contiguous P-vectors):
    the 3x3 shifts applied to both positions, as two separable passes, each materialised."""
    import jax

    return _shift_sum(jax.lax.optimization_barrier(_shift_sum(a, (0, 2))), (1, 3))


def _relu_terms(k, ra, rb, sa, sb, diag):
    """(pm, g) of a pre-activation K (H, W, H, W, P): pm = (pi - theta) / (2 pi) and
    g = sqrt(q(x)_i q(y)_j) sin(theta) / (2 pi), theta = acos(rho), rho = K / sqrt(q(x)_i q(y)_j) clipped
    to [-1, 1] and exactly 1 where ``diag``."""
    import jax.numpy as jnp

    rho = jnp.clip(k * ra[:, :, None, None] * rb[None, None], -1.0, 1.0)
    rho = jnp.where(diag, 1.0, rho)
    pm = (math.pi - arccos(rho)) * (0.5 / math.pi)
    g = sa[:, :, None, None] * sb[None, None] * jnp.sqrt((1.0 - rho) * (1.0 + rho)) * (0.5 / math.pi)
    return pm, g


def relu_map(k, t, ra, rb, sa, sb, diag):
    """One ReLU layer on a chunk: pre-activation (K, T) (H, W, H, W, P) -> (Kr, Kr + Tr) of the layer,
    Kr = g + pm K and Kr + Tr = g + pm (K + T) (:func:`_relu_terms`).

    ra, rb (H, W, P): 1 / sqrt(q) of the two images; sa, sb: sqrt(q); diag (H, W, H, W, P) bool: the
    entries i = j of pairs (x, x), where rho is exactly 1.

    The two outputs are two separate expressions, each evaluating the arc-cosine itself: XLA's CPU
    fusion shares no expensive subexpression between two outputs (it materialises the shared square
    roots and recomputes the rest in each consumer), so the second output reads (K, T) through an
    optimisation barrier, which keeps common-subexpression elimination from merging the two back into
    one shared graph. The whole engine is 1.2x (7x7), 2.4x (14x14) and 2.2x (28x28) faster per pair this
    way than with the two outputs written as one shared expression, float64 at the default chunk
    (experiments/results/bench/chunk_sweep.txt, "ReLU map written as")."""
    import jax

    pm, g = _relu_terms(k, ra, rb, sa, sb, diag)
    kr = g + pm * k
    k2, t2 = jax.lax.optimization_barrier((k, t))
    pm2, g2 = _relu_terms(k2, ra, rb, sa, sb, diag)
    return kr, g2 + pm2 * (k2 + t2)


def pair_pass(a, b, ra, rb, sa, sb, same, c: float):
    """All layers for a chunk of pairs: a, b (H, W, P) images; ra, rb, sa, sb (L, H, W, P); same (P,).

    Returns (kgap, ugap), each (L, P): mean over positions of Kr_l and of Kr_l + Tr_l after every layer l."""
    import jax
    import jax.numpy as jnp

    H, W, P = a.shape
    diag = jnp.eye(H * W, dtype=bool).reshape(H, W, H, W, 1) & same
    kr0 = a[:, :, None, None] * b[None, None]

    def layer(carry, per_layer):
        kr, u = carry                                   # u = Tr + Kr of the previous layer
        k, t = jax.lax.optimization_barrier((c * stencil(kr), c * stencil(u)))
        kr, u = jax.lax.optimization_barrier(relu_map(k, t, *per_layer, diag))
        return (kr, u), (jnp.mean(kr, axis=(0, 1, 2, 3)), jnp.mean(u, axis=(0, 1, 2, 3)))

    _, (kgap, ugap) = jax.lax.scan(layer, (kr0, kr0), (ra, rb, sa, sb))
    return kgap, ugap


def pair_sharding():
    """(mesh, sharding of the pair axis at position ``axis``) over all local devices (1-D mesh 'pairs')."""
    import jax
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    mesh = Mesh(np.array(jax.local_devices()), ("pairs",))

    def along(axis: int, ndim: int):
        spec = [None] * ndim
        spec[axis] = "pairs"
        return NamedSharding(mesh, PartitionSpec(*spec))

    return mesh, along


@lru_cache(maxsize=None)
def compiled_pass(W_std: float, dtype: str, n_devices: int):
    """The jitted :func:`pair_pass` with the pair axis sharded over ``n_devices`` local devices."""
    import jax

    _, along = pair_sharding()
    c = W_std ** 2 / 9.0
    img, per_layer, flag, out = along(2, 3), along(3, 4), along(0, 1), along(1, 2)
    return jax.jit(lambda a, b, ra, rb, sa, sb, same: pair_pass(a, b, ra, rb, sa, sb, same, c),
                   in_shardings=(img, img, per_layer, per_layer, per_layer, per_layer, flag),
                   out_shardings=(out, out))


#: Pairs per engine step on a CPU device, when none is given: the largest power of two whose state array
#: (P pairs x (H W)^2 entries) holds at most this many bytes, at least one pair. Chosen from the sweep on the
#: project's 2-core machine (32 MB last-level cache; experiments/results/bench/chunk_sweep.txt): a step's
#: ~7-9 arrays must stay in that cache (float64: 28x28 23 ms per pair at P = 1, 44-46 ms at P = 2-8;
#: 14x14 1.2 ms at P = 4, 2.0-2.7 ms at P = 16-32), and a small P costs host overhead per step (7x7).
CPU_STATE_BYTES = 2 ** 21
#: The same for a GPU: a state array of up to 2^26 entries (<= 512 MB in float64, <= ~4 GB per step), enough
#: pairs to fill the device (not measured here: no GPU was lent; give ``chunk`` to override).
GPU_STATE_ENTRIES = 2 ** 26


def default_chunk(n_positions: int, dtype: str, platform: str, n_devices: int = 1) -> int:
    """Pairs per engine step for images of ``n_positions`` = H W pixels: per device, the largest power of two
    P with P n_positions^2 x bytes <= CPU_STATE_BYTES (cpu) or P n_positions^2 <= GPU_STATE_ENTRIES (other
    platforms), at least 1; times ``n_devices`` (the step is split over them)."""
    entries = n_positions ** 2
    per_device = (GPU_STATE_ENTRIES if platform != "cpu"
                  else CPU_STATE_BYTES // np.dtype(dtype).itemsize) // entries
    return (1 << max(0, int(per_device).bit_length() - 1)) * n_devices


def pair_indices(n1: int, n2: int | None) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols) of the pairs to compute: all n1 x n2, or a <= b of a set with itself (n2 None)."""
    if n2 is None:
        return np.triu_indices(n1)
    rows, cols = np.meshgrid(np.arange(n1), np.arange(n2), indexing="ij")
    return rows.reshape(-1), cols.reshape(-1)


def _per_layer(q: np.ndarray, idx: np.ndarray, dtype) -> tuple[np.ndarray, np.ndarray]:
    """(1 / sqrt(q), sqrt(q)) of images ``idx``: q (n, L, H, W) -> two (L, H, W, P) arrays of ``dtype``."""
    qi = np.moveaxis(q[idx], 0, -1)
    return (1.0 / np.sqrt(qi)).astype(dtype), np.sqrt(qi).astype(dtype)


def gap_kernels(x1: np.ndarray, x2: np.ndarray | None, n_layers: int, W_std: float, dtype: str = "float64",
                chunk: int | None = None, progress=None) -> tuple[np.ndarray, np.ndarray]:
    """(kgap, ugap), each (n_layers, n1, n2) float64: mean over positions of Kr_l and of Kr_l + Tr_l, every layer.

    x1 (n1, H, W), x2 (n2, H, W) or None (x1 with itself: pairs a <= b computed, mirrored). Pairs are
    streamed ``chunk`` at a time (None: :func:`default_chunk`; rounded up to a multiple of the local device
    count), at most two chunks
    in flight; ``progress(done_pairs)`` is called after each chunk. Must run inside ``nt_backend.float64()``
    (float64 arrays), also for dtype float32 (the float32 kernel is returned in float64).

    Under ``jax.distributed`` (several processes, e.g. one per host) process p computes chunks
    p, p + P, p + 2P, ... on its own local devices, and the processes then sum their partial
    matrices (each pair is computed by exactly one process; :func:`_combine_processes`), so every
    process returns the whole kernel."""
    import jax

    same = x2 is None
    a_img = np.asarray(x1, np.float64)
    b_img = a_img if same else np.asarray(x2, np.float64)
    qa = variances(a_img, n_layers, W_std)
    qb = qa if same else variances(b_img, n_layers, W_std)
    rows, cols = pair_indices(len(a_img), None if same else len(b_img))
    devices = jax.local_devices()
    n_dev = len(devices)
    if chunk is None:
        chunk = default_chunk(a_img.shape[1] * a_img.shape[2], dtype, devices[0].platform, n_dev)
    chunk = int(math.ceil(max(1, min(chunk, len(rows))) / n_dev) * n_dev)
    fn = compiled_pass(float(W_std), dtype, n_dev)
    kgap = np.zeros((n_layers, len(a_img), len(b_img)))
    ugap = np.zeros_like(kgap)
    n_proc, me = jax.process_count(), jax.process_index()

    def launch(lo):
        i, j = rows[lo:lo + chunk], cols[lo:lo + chunk]
        pad = chunk - len(i)
        i, j = np.concatenate([i, np.repeat(i[:1], pad)]), np.concatenate([j, np.repeat(j[:1], pad)])
        ra, sa = _per_layer(qa, i, dtype)
        rb, sb = _per_layer(qb, j, dtype)
        flags = (i == j) if same else np.zeros(len(i), bool)
        return lo, fn(np.moveaxis(a_img[i], 0, -1).astype(dtype), np.moveaxis(b_img[j], 0, -1).astype(dtype),
                      ra, rb, sa, sb, flags)

    def collect(job):
        lo, (kg, ug) = job
        i, j = rows[lo:lo + chunk], cols[lo:lo + chunk]
        kg, ug = np.asarray(kg, np.float64)[:, :len(i)], np.asarray(ug, np.float64)[:, :len(i)]
        kgap[:, i, j], ugap[:, i, j] = kg, ug
        if same:
            kgap[:, j, i], ugap[:, j, i] = kg, ug
        if progress is not None:
            progress(lo + len(i))

    pending = None
    for lo in range(0, len(rows), chunk):
        if (lo // chunk) % n_proc != me:               # another process's chunk
            continue
        job = launch(lo)
        if pending is not None:
            collect(pending)
        pending = job
    if pending is not None:
        collect(pending)
    return _combine_processes(kgap), _combine_processes(ugap)


def _combine_processes(part: np.ndarray) -> np.ndarray:
    """The sum over processes of each one's partial matrix (zeros where another computed): the whole
    matrix on every process. One process: ``part`` itself."""
    import jax

    if jax.process_count() == 1:
        return part
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(part), np.float64).sum(axis=0)


def readout(kgap: np.ndarray, ugap: np.ndarray, depths, readout_W_std: float) -> dict:
    """{depth: (Theta, K)} from the per-layer GAP means: K = W_r^2 kgap, Theta = W_r^2 ugap (= W_r^2 (kgap + tgap))."""
    w2 = readout_W_std ** 2
    return {int(d): (w2 * ugap[d - 1], w2 * kgap[d - 1]) for d in depths}
