"""Output paths checked before any work: a folder that cannot be made or written, or a
figure format matplotlib cannot write, is one line up front instead of a traceback at the end."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ntk_bridge.errors import BridgeError

FIGURE_FORMATS = ("png", "pdf", "svg", "jpg", "jpeg", "eps", "ps", "tif", "tiff", "webp")


def check_output_dir(path: str | os.PathLike, flag: str) -> Path:
    """Check that the folder ``path`` exists as a writable folder or can be created; writes
    nothing (a probe folder is made in the nearest existing ancestor and removed at once)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise BridgeError(f"{flag} {path} is a file, not a folder; give a folder path")
    probe_in = path
    while not probe_in.exists():
        if probe_in.parent == probe_in:
            break
        probe_in = probe_in.parent
    if probe_in.exists() and not probe_in.is_dir():
        raise BridgeError(f"{flag} {path}: {probe_in} is a file, so no folder can be made under it; "
                          f"give another path")
    try:
        os.rmdir(tempfile.mkdtemp(dir=probe_in, prefix=".ntk_bridge_probe_"))
    except OSError as err:
        raise BridgeError(f"{flag} {path} cannot be written ({err.strerror} in {probe_in}); "
                          f"give a writable folder") from None
    return path


def check_figure_path(path: str | os.PathLike, flag: str = "--figure") -> Path:
    """A figure path with a format matplotlib writes, in a folder that can be written."""
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower()
    if fmt not in FIGURE_FORMATS:
        raise BridgeError(f"{flag} {path}: unsupported figure format {path.suffix or '(none)'!r}; "
                          f"use one of {', '.join('.' + f for f in FIGURE_FORMATS)}")
    if path.is_dir():
        raise BridgeError(f"{flag} {path} is a folder; give a file name such as {path / 'figure.png'}")
    check_output_dir(path.parent, flag)
    return path
