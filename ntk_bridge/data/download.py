"""Downloads with size / checksum verification, resume and an atomic final rename.

``download(url, dest)`` streams into ``dest.part``; an interrupted transfer is resumed with an
HTTP ``Range`` request (up to ``retries`` times, and again on the next call); an HTML answer
(``Content-Type: text/html`` or a body that starts like a web page -- the classic failed
Google Drive / Dropbox link) is rejected; size and md5 / sha256 are checked before the
``.part`` file is renamed onto ``dest``. Without a network, the error says which file to put
in which folder. :func:`fetch_dataset` knows the public sources of each data set.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import socket
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ntk_bridge.data.formats import _looks_html
from ntk_bridge.errors import BridgeError

__all__ = ["Source", "SOURCES", "download", "file_digest", "fetch_dataset", "missing_sources"]


@dataclass(frozen=True)
class Source:
    """A public file: name in the data folder, URL, optional md5 / size, format check."""

    name: str
    url: str | None
    md5: str | None = None
    size: int | None = None
    kind: str = "binary"  # "zip", "gzip" or "binary": checked on the finished file


SOURCES: dict[str, tuple[Source, ...]] = {
    "omniglot": tuple(Source(z, f"https://raw.githubusercontent.com/brendenlake/omniglot/master/"
                                f"python/{z}", kind="zip")
                      for z in ("images_background.zip", "images_evaluation.zip")),
    "cifarfs": (Source("cifar-100-python.tar.gz",
                       "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
                       md5="eb9058c3a382ffc7106e4002c42a8d85", kind="gzip"),),
    "fc100": (Source("cifar-100-python.tar.gz",
                     "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
                     md5="eb9058c3a382ffc7106e4002c42a8d85", kind="gzip"),),
    # No stable public URL (Google Drive links that break): users place the files themselves.
    "miniimagenet": (Source("mini-imagenet-cache-{train,val,test}.pkl", None),),
    "tieredimagenet": (Source("{train,val,test}_images_png.pkl + {train,val,test}_labels.pkl",
                              None),),
}


def file_digest(path: Path, algo: str = "md5", chunk: int = 1 << 20) -> str:
    """Hex digest of a file, read in chunks."""
    h = hashlib.new(algo)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def _check_kind(path: Path, kind: str) -> str | None:
    head = path.open("rb").read(512)
    if _looks_html(head):
        return "an HTML page"
    if kind == "zip" and not zipfile.is_zipfile(path):
        return "not a zip archive"
    if kind == "gzip" and not head.startswith(b"\x1f\x8b"):
        return "not a gzip archive"
    return None


def _verify(path: Path, *, md5, sha256, size, kind) -> str | None:
    """None if ``path`` passes every given check, else what is wrong (for the error line)."""
    got_size = path.stat().st_size
    if size is not None and got_size != size:
        return f"size {got_size} bytes, expected {size}"
    bad = _check_kind(path, kind)
    if bad:
        return bad
    if md5 and (d := file_digest(path, "md5")) != md5.lower():
        return f"md5 {d}, expected {md5}"
    if sha256 and (d := file_digest(path, "sha256")) != sha256.lower():
        return f"sha256 {d}, expected {sha256}"
    return None


def download(url: str, dest, *, md5: str | None = None, sha256: str | None = None,
             size: int | None = None, kind: str = "binary", retries: int = 3,
             timeout: float = 30.0, chunk: int = 1 << 16, progress: bool = True,
             opener: Callable | None = None) -> Path:
    """Download ``url`` to ``dest`` (resumable, verified, atomic); return ``dest``.

    A ``dest`` that already passes the checks is kept without any network access.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.is_file() and _verify(dest, md5=md5, sha256=sha256, size=size, kind=kind) is None:
        return dest
    part = dest.with_name(dest.name + ".part")
    where = f"put {dest.name} in {str(dest.parent)!r} yourself (from {url})"
    open_url = opener or urllib.request.urlopen
    total = size
    for _ in range(retries + 1):
        offset = part.stat().st_size if part.is_file() else 0
        if total is not None and offset >= total:
            break
        headers = {"User-Agent": "ntk-bridge"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        try:
            resp = open_url(urllib.request.Request(url, headers=headers), timeout=timeout)
        except urllib.error.HTTPError as err:
            if err.code == 416 and offset:  # nothing left to send: the .part is complete
                break
            raise BridgeError(f"{url} answered HTTP {err.code} ({err.reason}); {where}") from None
        except (urllib.error.URLError, socket.timeout, ConnectionError, OSError) as err:
            reason = getattr(err, "reason", err)
            raise BridgeError(f"cannot reach {url} ({reason}; no network?); {where}") from None
        with resp:
            status = getattr(resp, "status", 200)
            if offset and status != 206:  # server ignored the Range header: start over
                offset = 0
            ctype = resp.headers.get("Content-Type", "") or ""
            if "text/html" in ctype.lower():
                raise BridgeError(f"{url} returned an HTML page instead of {dest.name} (a dead "
                                  f"or quota-limited link); {where}")
            length = resp.headers.get("Content-Length")
            if length is not None and length.isdigit():
                total = offset + int(length)
            bar = None
            if progress:
                from tqdm import tqdm
                bar = tqdm(total=total, initial=offset, unit="B", unit_scale=True,
                           desc=dest.name, leave=False)
            try:
                with open(part, "ab" if offset else "wb") as fh:
                    while True:
                        block = resp.read(chunk)
                        if not block:
                            break
                        fh.write(block)
                        if bar is not None:
                            bar.update(len(block))
            except (http.client.IncompleteRead, ConnectionError, socket.timeout, OSError):
                continue  # keep the .part; the next round resumes from its size
            finally:
                if bar is not None:
                    bar.close()
        if total is None or part.stat().st_size >= total:
            break
    got = part.stat().st_size if part.is_file() else 0
    if total is not None and got < total:
        raise BridgeError(f"the transfer of {dest.name} stopped at {got} of {total} bytes after "
                          f"{retries + 1} tries; run again to resume ({part.name} is kept), or "
                          f"{where}")
    problem = _verify(part, md5=md5, sha256=sha256, size=size, kind=kind)
    if problem:
        part.unlink()
        raise BridgeError(f"the download of {dest.name} from {url} is {problem}; the file was "
                          f"deleted: try again later or {where}")
    os.replace(part, dest)
    return dest


def missing_sources(dataset: str, root) -> list[Source]:
    """The sources of ``dataset`` whose file is not yet in ``root``."""
    from ntk_bridge.data.base import check_dataset
    root = Path(root)
    return [s for s in SOURCES.get(check_dataset(dataset), ()) if not (root / s.name).is_file()]


def fetch_dataset(dataset: str, root, *, progress: bool = True) -> list[Path]:
    """Download the public files of ``dataset`` into ``root`` (those not there yet)."""
    from ntk_bridge.data.base import check_dataset
    name = check_dataset(dataset)
    root = Path(root)
    out = []
    for src in missing_sources(name, root):
        if src.url is None:
            raise BridgeError(f"{name} has no stable public download; obtain {src.name} (see "
                              f"docs/benchmarks.md for the formats) and put it in "
                              f"{str(root)!r}")
        out.append(download(src.url, root / src.name, md5=src.md5, size=src.size,
                            kind=src.kind, progress=progress))
    return out
