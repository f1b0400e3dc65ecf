"""The checks every public entry point shares: numeric arrays, finiteness, and memory before allocation.

:mod:`ntk_bridge.api` (the ``nb.*`` front door), the engine's kernels and
:func:`ntk_bridge.reference.stax.kernels_from_kernel_fn` call these, so every refusal is the same
one :class:`~ntk_bridge.errors.BridgeError` line whichever door the input came through.

Memory: :func:`available_memory` is the smallest of the kernel's own estimate of memory available
without swapping (``MemAvailable`` in /proc/meminfo) and the headroom under a cgroup limit (v2
``memory.max - memory.current``, v1 ``limit_in_bytes - usage_in_bytes``), the ones that exist; with
none of them, the free physical pages. It is a conservative bound: page cache that could be
reclaimed beyond MemAvailable is not counted. :func:`require_memory` refuses a request whose
estimate (a lower bound of what the computation allocates at once) exceeds it.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ntk_bridge.errors import BridgeError, require

REAL_KINDS = "iuf"          # signed / unsigned integers and floats: bool, complex, strings, objects refused


def real_array(value, name: str, fix: str = "remove or replace them before calling") -> np.ndarray:
    """``value`` as a float64 array; one line if it is not a real-valued numeric array or not finite.

    ``name`` is the argument as the user passed it (e.g. ``x1``, ``train x_query``)."""
    if value is None:
        raise BridgeError(f"{name} is None; pass a numpy array of floats")
    try:
        raw = np.asarray(value)
    except (TypeError, ValueError) as err:     # ragged nested lists
        raise BridgeError(f"{name} is not a numeric array ({first_line(err)}); pass a numpy array of floats") from None
    if raw.dtype.kind == "O":
        try:
            raw = raw.astype(np.float64)
        except (TypeError, ValueError):
            raise BridgeError(f"{name} is not a numeric array (it holds {type(raw.flat[0]).__name__ if raw.size else 'objects'}"
                              " values); pass a numpy array of floats") from None
    require(raw.dtype.kind not in "USV", f"{name} is not a numeric array (it holds text or bytes, dtype "
                                        f"{raw.dtype}); pass a numpy array of floats")
    require(raw.dtype.kind in REAL_KINDS,
            f"{name} must be a real-valued numeric array, got dtype {raw.dtype}; convert it with "
            f"np.asarray({name.split()[-1]}, dtype=float)" + (" (complex values are not supported)"
                                                               if raw.dtype.kind == "c" else ""))
    out = np.asarray(raw, dtype=np.float64)
    require_finite(out, name, fix)
    return out


def require_finite(a: np.ndarray, name: str, fix: str = "remove or replace them before calling") -> None:
    """One line naming how many entries of ``a`` are NaN or infinite and where the first is."""
    bad = ~np.isfinite(a)
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        where = f"index {first[0] if len(first) == 1 else first}"
        raise BridgeError(f"{name} has {int(bad.sum())} NaN or infinite entr{'y' if bad.sum() == 1 else 'ies'} "
                          f"(first at {where}); {fix}")


def first_line(err: BaseException, limit: int = 160) -> str:
    """The first line of an exception's message, at most ``limit`` characters, with its type."""
    text = (str(err).strip().splitlines() or [""])[0]
    text = text if len(text) <= limit else text[: limit - 3] + "..."
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def _read_int(path: str) -> int | None:
    try:
        text = Path(path).read_text().split()[0]
    except (OSError, IndexError):
        return None
    return int(text) if text.isdigit() else None


def _meminfo_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _cgroup_headroom() -> int | None:
    for limit, usage in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                         ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        cap, used = _read_int(limit), _read_int(usage)
        if cap is not None and used is not None and cap < 1 << 60:     # "max" / a huge v1 number: no limit
            return max(cap - used, 0)
    return None


def available_memory() -> int | None:
    """Bytes this process can still allocate without swapping (conservative; None if unknown)."""
    known = [b for b in (_meminfo_available(), _cgroup_headroom()) if b is not None]
    if not known:
        try:
            known = [os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")]
        except (ValueError, OSError, AttributeError):
            return None
    return min(known)


def gib(nbytes: float) -> str:
    return f"{nbytes / 2 ** 30:.3g} GiB"


def require_memory(nbytes: int, what: str, fix: str) -> None:
    """Refuse, before allocating, a request of about ``nbytes`` that cannot fit in available memory."""
    free = available_memory()
    if free is not None and nbytes > free:
        raise BridgeError(f"{what} need about {gib(nbytes)} of memory but about {gib(free)} is available "
                          f"(MemAvailable / the cgroup limit); {fix}")
