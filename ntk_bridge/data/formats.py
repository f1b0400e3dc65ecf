"""Reading users' data files safely: restricted unpickling, HTML sniffing, memory-mapped caches.

* :func:`read_pickle` loads Python-2 and Python-3 pickles (``encoding='latin1'``, so Py2 ``str``
  holding raw bytes, e.g. numpy buffers, decodes) with an allow-list of globals: numpy arrays
  and dtypes, and plain containers. A pickle naming anything else is refused (a data file has
  no reason to run code). A file that is an HTML page (a failed Google Drive / Dropbox
  download), empty or truncated gets a one-line error naming the file and the fix.
* :func:`cached_array` decodes a big array once into ``<cache>/<name>.npy`` with
  ``np.lib.format.open_memmap`` (written under a temp name, then renamed), keyed by the source
  files' sizes and mtimes, and returns a read-only memory map afterwards.
"""

from __future__ import annotations

import io
import json
import os
import pickle
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from ntk_bridge.errors import BridgeError

__all__ = ["open_image", "decode_image", "read_pickle", "loads_data_pickle", "sniff", "check_not_html", "get_key", "missing_file_error",
           "cache_folder", "cached_array", "npz_member_array"]

def open_image(source, what: str, mode: str | None = None):
    """A decoded PIL image of ``source`` (a path or bytes), converted to ``mode`` when given.

    A file that is not an image, is truncated, fails a PNG checksum, or declares more pixels than
    PIL's decompression-bomb limit (``Image.MAX_IMAGE_PIXELS`` x 2) is one BridgeError line naming
    ``what`` (the file or zip member) and the fix; whatever PIL raises on hostile bytes (OSError,
    SyntaxError for a broken PNG, struct / zlib errors, its DecompressionBombError, ...) is caught
    here, so no reader passes a traceback through."""
    import warnings

    from PIL import Image

    data = io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)    # > MAX_IMAGE_PIXELS: refuse
            with Image.open(data) as im:
                im.load()
                return im.convert(mode) if mode else im.copy()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise BridgeError(f"image {what} is too large to decode ({str(err).split('.')[0]}); "
                          "replace it with a smaller image or remove it") from None
    except Exception as err:  # noqa: BLE001 - hostile bytes: whatever the decoder raises is a damaged file
        kind = type(err).__name__
        raise BridgeError(f"image {what} cannot be read ({kind}: {' '.join(str(err).split())[:120]}); "
                          "replace or remove it") from None


_ALLOWED = {
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("_codecs", "encode"), ("codecs", "encode"),
    ("collections", "OrderedDict"), ("collections", "defaultdict"),
    ("copy_reg", "_reconstructor"), ("copyreg", "_reconstructor"),
}
_ALLOWED_BUILTINS = {"set", "frozenset", "list", "dict", "tuple", "bytearray", "slice", "range",
                     "int", "float", "complex", "str", "bytes", "object", "bool"}


class _DataUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the globals a numpy/container data file needs."""

    def find_class(self, module, name):
        if module in ("builtins", "__builtin__") and name in _ALLOWED_BUILTINS:
            return super().find_class(module, name)
        if (module, name) in _ALLOWED or module.startswith("numpy.dtypes"):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing global {module}.{name}")


def loads_data_pickle(data: bytes):
    """Unpickle bytes with ``encoding='latin1'`` and the data allow-list (raises on others)."""
    return _DataUnpickler(io.BytesIO(data), encoding="latin1").load()


def sniff(path: Path, n: int = 512) -> bytes:
    """First ``n`` bytes of ``path``."""
    with open(path, "rb") as fh:
        return fh.read(n)


def _looks_html(head: bytes) -> bool:
    h = head.lstrip()[:256].lower()
    return h.startswith((b"<!doctype html", b"<html", b"<head", b"<?xml", b"<body")) or (
        h.startswith(b"<") and b"<html" in head.lower())


def check_not_html(path: Path, expected: str) -> None:
    """One-line error if ``path`` is empty or an HTML page rather than ``expected`` data."""
    head = sniff(path)
    if not head:
        raise BridgeError(f"{path.name} in {str(path.parent)!r} is empty; download {expected} "
                          "again and put it there")
    if _looks_html(head):
        raise BridgeError(f"{path.name} in {str(path.parent)!r} is an HTML page, not "
                          f"{expected} (a failed download, e.g. a Google Drive quota or "
                          "confirmation page); download the real file again and replace it")


def read_pickle(path: Path, expected: str = "a pickle"):
    """Load a (Python 2 or 3) pickle with ``encoding='latin1'`` and the allow-list above."""
    path = Path(path)
    check_not_html(path, expected)
    try:
        with open(path, "rb") as fh:
            return _DataUnpickler(fh, encoding="latin1").load()
    except pickle.UnpicklingError as err:
        if str(err).startswith("refusing global"):
            raise BridgeError(f"{path.name} in {str(path.parent)!r} is not {expected}: it "
                              f"pickles code ({str(err)[len('refusing global '):]}); refusing "
                              "to load it, replace it with the original file") from None
        raise BridgeError(f"{path.name} in {str(path.parent)!r} is truncated or not a pickle "
                          f"({err}); download {expected} again") from None
    except (EOFError, ValueError, IndexError, TypeError, MemoryError, AttributeError) as err:
        raise BridgeError(f"{path.name} in {str(path.parent)!r} is truncated or not a valid "
                          f"pickle ({type(err).__name__}: {err}); download {expected} again"
                          ) from None


def get_key(obj, key: str, path: Path):
    """``obj[key]`` accepting str or bytes keys (Py3 ``encoding='bytes'`` style) or an error."""
    if isinstance(obj, dict):
        for k in (key, key.encode()):
            if k in obj:
                return obj[k]
        keys = ", ".join(sorted(k.decode() if isinstance(k, bytes) else str(k) for k in obj))
        raise BridgeError(f"{path.name} has no key {key!r} (keys: {keys}); it is not the "
                          "expected file format")
    raise BridgeError(f"{path.name} holds a {type(obj).__name__}, expected a dict with key "
                      f"{key!r}; it is not the expected file format")


def missing_file_error(dataset: str, folder: Path, formats: Iterable[str]) -> BridgeError:
    """One line: which files would do, and which folder to put them in."""
    return BridgeError(f"no {dataset} files found in {str(folder)!r}: put there "
                       + "; or ".join(formats))


def as_uint8_images(arr, path: Path, size: int | None = None) -> np.ndarray:
    """Check an (N, H, W, 3) uint8 array (one line naming file, shape and dtype if not)."""
    arr = np.asarray(arr) if not isinstance(arr, np.ndarray) else arr
    if arr.ndim != 4 or arr.shape[-1] != 3 or (size and arr.shape[1:3] != (size, size)):
        want = f"(N, {size}, {size}, 3)" if size else "(N, H, W, 3)"
        raise BridgeError(f"{path.name}: images have shape {arr.shape}, expected {want}")
    if arr.dtype != np.uint8:
        raise BridgeError(f"{path.name}: images have dtype {arr.dtype}, expected uint8")
    return arr


# ---------------------------------------------------------------- memory-mapped cache

def cache_folder(root: Path, dataset: str, cache_dir=None) -> Path:
    """``cache_dir/<dataset>`` or ``<root>/.ntk_bridge_cache``; created, or a one-line error."""
    folder = Path(cache_dir) / dataset if cache_dir is not None else Path(root) / ".ntk_bridge_cache"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".probe{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise BridgeError(f"cannot write the decoded-array cache in {str(folder)!r} "
                          f"({err.strerror}); pass cache_dir=DIR (--cache-dir) to a writable "
                          "folder") from None
    return folder


def _stamp(sources: Iterable[Path]) -> list:
    return [[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in sorted(sources)]


def cached_array(folder: Path, name: str, sources: Iterable[Path], shape: tuple,
                 fill: Callable[[np.ndarray], None], dtype=np.uint8) -> np.ndarray:
    """Read-only memmap of ``<folder>/<name>.npy``, built once by ``fill(out)``.

    ``fill`` writes every row of ``out`` (a writable memmap of ``shape``). The file is written
    under a temp name and renamed, with a sidecar ``<name>.json`` recording the sources' sizes
    and mtimes; a changed source rebuilds it.
    """
    sources = list(sources)
    target = folder / f"{name}.npy"
    meta_path = folder / f"{name}.json"
    meta = {"sources": _stamp(sources), "shape": list(shape), "dtype": np.dtype(dtype).str}
    if target.is_file() and meta_path.is_file():
        try:
            if json.loads(meta_path.read_text()) == meta:
                return np.load(target, mmap_mode="r")
        except (OSError, ValueError):
            pass
    tmp = folder / f".{name}.{os.getpid()}.tmp.npy"
    try:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=tuple(shape))
        fill(out)
        out.flush()
        del out
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()
    from ntk_bridge.io import write_json
    write_json(meta_path, meta)
    return np.load(target, mmap_mode="r")


def _npz_header(path: Path, member: str):
    """(ZipInfo, shape, dtype, header length) of ``member`` in the .npz at ``path``."""
    import zipfile
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError):
        check_not_html(path, "an .npz archive")
        raise BridgeError(f"{path.name} in {str(path.parent)!r} is not an .npz (zip) archive or "
                          "is truncated; download it again") from None
    with zf:
        if member not in zf.namelist():
            raise BridgeError(f"{path.name} has no array {member[:-4]!r} (arrays: "
                              f"{', '.join(n[:-4] for n in zf.namelist())}); wrong file format")
        info = zf.getinfo(member)
        with zf.open(member) as fh:
            version = np.lib.format.read_magic(fh)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
            else:
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
            header_len = fh.tell()
    if fortran:
        raise BridgeError(f"{path.name}:{member} is Fortran-ordered; save it C-ordered")
    return info, tuple(shape), np.dtype(dtype), header_len


def npz_member_array(path: Path, key: str, cache: Path | None = None,
                     chunk_rows: int = 4096) -> np.ndarray:
    """Array ``key`` of an ``.npz`` without loading it all into memory.

    Stored (uncompressed, ``np.savez``) members are memory-mapped in place; compressed ones
    (``np.savez_compressed``) are streamed chunk by chunk into ``cached_array(cache, ...)``
    (or read into memory when ``cache`` is None).
    """
    import zipfile
    import zlib
    path = Path(path)
    member = f"{key}.npy"
    info, shape, dtype, header_len = _npz_header(path, member)
    if info.compress_type == zipfile.ZIP_STORED:
        with open(path, "rb") as raw:
            raw.seek(info.header_offset)
            local = raw.read(30)
        name_len = int.from_bytes(local[26:28], "little")
        extra_len = int.from_bytes(local[28:30], "little")
        offset = info.header_offset + 30 + name_len + extra_len + header_len
        if offset + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize > path.stat().st_size:
            raise BridgeError(f"{path.name} is truncated (array {key!r} runs past the end of "
                              "the file); download it again")
        return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape)
    row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize

    def fill(out):
        try:
            with zipfile.ZipFile(path) as zf, zf.open(member) as fh:
                fh.read(header_len)
                for lo in range(0, shape[0], chunk_rows):
                    hi = min(shape[0], lo + chunk_rows)
                    buf = fh.read((hi - lo) * row_bytes)
                    if len(buf) != (hi - lo) * row_bytes:
                        raise BridgeError(f"{path.name}:{key} is truncated at row {lo}; "
                                          "download it again")
                    out[lo:hi] = np.frombuffer(buf, dtype).reshape((hi - lo,) + shape[1:])
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as err:
            raise BridgeError(f"{path.name} is damaged ({err}); download it again") from None

    if cache is None:
        out = np.empty(shape, dtype)
        fill(out)
        return out
    return cached_array(cache, f"{path.stem}_{key}", [path], shape, fill, dtype)


def encode_bytes(obj) -> bytes:
    """Bytes of a PNG/JPEG payload stored as bytes, a latin1 str or a uint8 array."""
    if isinstance(obj, (bytes, bytearray)):
        return bytes(obj)
    if isinstance(obj, str):
        return obj.encode("latin1")
    if isinstance(obj, np.ndarray):
        return obj.tobytes()
    raise BridgeError(f"expected encoded image bytes, got {type(obj).__name__}")


def decode_image(data: bytes, size: int | None, mode: str = "RGB", what: str = "bytes") -> np.ndarray:
    """PNG/JPEG bytes -> uint8 (H, W, C); resized to size x size (LANCZOS) if it differs. Damaged
    bytes are one BridgeError line naming ``what`` (:func:`open_image`)."""
    from PIL import Image
    im = open_image(data, what, mode)
    if size and im.size != (size, size):
        im = im.resize((size, size), Image.Resampling.LANCZOS)
    arr = np.asarray(im, dtype=np.uint8)
    return arr if arr.ndim == 3 else arr[..., None]
