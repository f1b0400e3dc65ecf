"""Result files and result sets written so that a crash never leaves them half-written.

Single files
    ``atomic_write(path, write)``, ``write_json``, ``write_text``, ``write_csv``, ``save_figure``:
    each writes a temp file next to ``path``, fsyncs it and renames it onto ``path``.

Result sets (several files that belong to one run) -- the design, for every command
    A result folder is written whole into a *staging* folder, a hidden sibling named
    ``.<name>.incomplete-<pid>-<random>``, and moved into place only when the command succeeds.
    So the folder at ``path`` is always a finished run: either the previous one, untouched, or
    the new one, complete. A kill, Ctrl-C or error at any moment before the commit leaves the
    previous folder (or no folder) at ``path``; the staging folder is removed on an exception,
    and a staging folder left by a killed process (its pid is gone on this machine) is removed by
    the next run into the same place. :func:`is_staging` recognises such folders; ``ntk-bridge report``
    refuses them and never reads them as runs.

    API::

        from ntk_bridge.io import check_figure_path, result_folder, staged_files

        check_figure_path(args.figure, "--figure")           # format check, before any work
        with staged_files([args.figure], "--figure") as (fig_tmp,), \\
                result_folder(args.out, "--out", replaces=MY_FILES) as tmp:
            ...                                                # long work
            write_csv(tmp / "summary.csv", frame)              # everything into tmp
            save_figure(fig_tmp, fig)
        # leaving the block without an exception commits: first the folder, then the files

    ``result_folder(path, option, replaces=())`` yields the staging folder (a ``Path``). Entering
    validates the destination and creates the staging folder, so an unusable path (a file where a
    folder is needed, an unwritable place such as /proc) is a one-line :class:`BridgeError`
    before any work. Committing replaces the folder at ``path`` atomically (Linux
    ``renameat2(RENAME_EXCHANGE)``; elsewhere two renames, and a folder left between them is
    put back by the next run). Entries of the previous folder that the new run did not write
    (sub-folders holding other runs, notes) are carried over as hard links, except the names in
    ``replaces`` (every file the command may write, so that no stale result of an earlier run of
    the same command survives beside the new ones). Since the whole folder is replaced, a result
    path that is the working folder (or holds it) or a git checkout is refused.

    ``staged_files(finals, option)`` does the same for single files that live elsewhere (a
    figure under figures/, a report): it yields one temp path per final path, in the final's
    folder; at the commit each temp path that was written is renamed onto its final path, and the
    ones never written leave their final path alone.

    Parent folders created for a result set that is then abandoned are removed again (when
    empty), so a failed start leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import re
import secrets
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

from ntk_bridge.errors import BridgeError, require

STAGING_RE = re.compile(r"^\.(?P<name>.+)\.(?P<kind>incomplete|replaced)-(?P<pid>\d+)-[0-9a-f]+(\.[^.]*)?$")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, write: Callable[[Any], None], mode: str = "w") -> Path:
    """Call ``write(fh)`` on a temp file next to ``path``, fsync it, then rename onto ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.chmod(tmp, 0o666 & ~_umask())          # mkstemp makes 0600; results are for everyone to read
    try:
        with os.fdopen(fd, mode) as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Atomically write ``obj`` as indented JSON."""
    return atomic_write(path, lambda fh: json.dump(obj, fh, indent=2, sort_keys=True, default=str))


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Atomically write a text file."""
    return atomic_write(path, lambda fh: fh.write(text))


def write_csv(path: str | os.PathLike, frame) -> Path:
    """Atomically write a pandas DataFrame as CSV (no index)."""
    return atomic_write(path, lambda fh: frame.to_csv(fh, index=False))


def save_figure(path: str | os.PathLike, fig, dpi: int = 130) -> Path:
    """Atomically save a matplotlib figure (format from the suffix)."""
    path = Path(path)
    return atomic_write(path, lambda fh: fig.savefig(fh, dpi=dpi, bbox_inches="tight",
                                                     format=path.suffix.lstrip(".")), mode="wb")


# ----------------------------------------------------------------------------- validation

def figure_formats() -> list[str]:
    """File formats matplotlib can save (the suffixes ``save_figure`` accepts)."""
    from matplotlib.backend_bases import FigureCanvasBase

    return sorted(FigureCanvasBase.get_supported_filetypes())


def check_figure_path(path: str | os.PathLike, option: str = "figure") -> Path:
    """Refuse a figure path whose suffix matplotlib cannot write, before anything is computed."""
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower()
    formats = figure_formats()
    require(fmt in formats, f"{option} {path}: " + (f"unsupported figure format {fmt!r}" if fmt else "no file suffix")
            + f"; give a file name ending in one of {', '.join('.' + f for f in formats)}")
    return path


def _blocking_file(path: Path) -> Path | None:
    """The nearest ancestor of ``path`` (or ``path``'s parent chain) that exists but is not a folder."""
    for anc in reversed(path.parents):
        if anc.exists() and not anc.is_dir():
            return anc
    return None


def _make_parents(folder: Path, option: str, path: Path) -> list[Path]:
    """``mkdir -p folder``; returns the folders it created (outermost first). OSError -> BridgeError."""
    blocker = _blocking_file(folder / "x")
    require(blocker is None, f"{option} {path}: {blocker} is a file, not a folder; choose another location")
    missing = [p for p in reversed([folder, *folder.parents]) if not p.exists()]
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        _remove_empty(missing)
        raise BridgeError(f"{option} {path}: cannot create folder {folder} ({err.strerror}); "
                          "choose a writable location") from None
    return missing


def _remove_empty(created: Sequence[Path]) -> None:
    """Remove the folders in ``created`` (outermost first) that are empty, innermost first."""
    for p in reversed(list(created)):
        with contextlib.suppress(OSError):
            p.rmdir()


# ----------------------------------------------------------------------------- staging names

def _token() -> str:
    return f"{os.getpid()}-{secrets.token_hex(4)}"


def is_staging(path: str | os.PathLike) -> bool:
    """True for a staging folder or file of :func:`result_folder` / :func:`staged_files` (unfinished)."""
    return STAGING_RE.match(Path(path).name) is not None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale(target: Path) -> None:
    """Remove staging leftovers of ``target`` from killed processes (pid gone).

    An ``incomplete`` leftover is an unfinished new run: deleted. A ``replaced`` leftover is the
    previous run, moved aside during a two-rename commit: put back if ``target`` is missing,
    otherwise deleted (the commit had finished).
    """
    parent = target.parent
    if not parent.is_dir():
        return
    for entry in parent.iterdir():
        m = STAGING_RE.match(entry.name)
        if not m or m["name"] != target.name or _pid_alive(int(m["pid"])):
            continue
        if m["kind"] == "replaced" and not os.path.lexists(target):
            os.rename(entry, target)
        elif entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                entry.unlink()


# ----------------------------------------------------------------------------- commit

def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two existing paths (Linux renameat2 RENAME_EXCHANGE); False if unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    rc = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange)
    if rc == 0:
        return True
    errno = ctypes.get_errno()
    if errno in (22, 38, 95):              # EINVAL, ENOSYS, EOPNOTSUPP: fall back to two renames
        return False
    raise OSError(errno, os.strerror(errno), str(a))


def _link_tree(src: Path, dst: Path) -> None:
    """Recreate ``src`` at ``dst`` with hard links to its files (copies where links fail)."""
    if src.is_symlink():
        os.symlink(os.readlink(src), dst)
    elif src.is_dir():
        dst.mkdir()
        for child in src.iterdir():
            _link_tree(child, dst / child.name)
    else:
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)


def _carry_over(old: Path, new: Path, replaces: Iterable[str]) -> None:
    """Link into ``new`` every entry of ``old`` that ``new`` lacks, except ``replaces`` and staging leftovers."""
    skip = set(replaces)
    for entry in old.iterdir():
        if entry.name in skip or is_staging(entry) or os.path.lexists(new / entry.name):
            continue
        _link_tree(entry, new / entry.name)


def _commit_folder(staging: Path, target: Path, replaces: Iterable[str]) -> None:
    """Put ``staging`` at ``target``: a plain rename if ``target`` is absent, else an atomic swap."""
    if not os.path.lexists(target):
        os.rename(staging, target)
        return
    _carry_over(target, staging, replaces)
    if _exchange(staging, target):
        old = staging                                      # the swap put the previous run here
    else:
        old = target.parent / f".{target.name}.replaced-{_token()}"
        os.rename(target, old)
        try:
            os.rename(staging, target)
        except BaseException:
            os.rename(old, target)                         # put the previous run back
            raise
    shutil.rmtree(old, ignore_errors=True)


def _resolve_target(path: str | os.PathLike) -> Path:
    """The real folder a result path names (a symlinked result folder stays a link to the new run)."""
    path = Path(path)
    return path.resolve() if path.is_symlink() else path.absolute()


@contextlib.contextmanager
def result_folder(path: str | os.PathLike, option: str = "output folder",
                  replaces: Iterable[str] = ()) -> Iterator[Path]:
    """Yield a staging folder for the result set of ``path``; on success move it into place.

    ``option`` names the path in error messages (e.g. ``"--out"``). See the module docstring.
    """
    shown, target = Path(path), _resolve_target(path)
    require(not target.exists() or target.is_dir(),
            f"{option} {shown} is a file, not a folder; give a folder path")
    require(not is_staging(target), f"{option} {shown} is a staging folder name; choose another name")
    cwd = Path.cwd().resolve()
    require(target.resolve() != cwd and target.resolve() not in cwd.parents and not (target / ".git").exists(),
            f"{option} {shown} is the working folder, holds it, or is a git checkout: the whole folder is "
            "replaced by the results, so give a folder of its own (e.g. experiments/results/NAME)")
    created = _make_parents(target.parent, option, shown)
    clean_stale(target)
    staging = target.parent / f".{target.name}.incomplete-{_token()}"
    try:
        staging.mkdir()
    except OSError as err:
        _remove_empty(created)
        raise BridgeError(f"{option} {shown}: cannot write in {target.parent} ({err.strerror}); "
                          "choose a writable location") from None
    try:
        yield staging
        _commit_folder(staging, target, replaces)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        _remove_empty(created)
        raise


@contextlib.contextmanager
def staged_files(finals: Sequence[str | os.PathLike], option: str = "output file") -> Iterator[list[Path]]:
    """Yield one temp path per final path (same folder, same suffix); on success rename each written one.

    A final path that is an existing folder, or lies under a file, or in an unwritable place is
    a :class:`BridgeError` on entering, before any work.
    """
    created: list[Path] = []
    temps: list[Path] = []
    try:
        for final in finals:
            shown, target = Path(final), _resolve_target(final)
            require(not target.is_dir(), f"{option} {shown} is a folder; give a file path")
            created += _make_parents(target.parent, option, shown)
            clean_stale(target)
            temp = target.parent / f".{target.name}.incomplete-{_token()}{target.suffix}"
            try:
                temp.touch(exist_ok=False)       # proves the folder is writable; removed below
                temp.unlink()
            except OSError as err:
                raise BridgeError(f"{option} {shown}: cannot write in {target.parent} ({err.strerror}); "
                                  "choose a writable location") from None
            temps.append(temp)
        yield list(temps)
        for temp, final in zip(temps, finals):
            if temp.exists():
                os.replace(temp, _resolve_target(final))
        _remove_empty(created)                       # folders made for files that were not written
    except BaseException:
        for temp in temps:
            with contextlib.suppress(OSError):
                temp.unlink()
        _remove_empty(created)
        raise


@contextlib.contextmanager
def result_set(out: str | os.PathLike, figure: str | os.PathLike, replaces: Iterable[str] = (),
               out_option: str = "--out", figure_option: str = "--figure") -> Iterator[tuple[Path, Path]]:
    """A result folder and its figure, committed together: yields (staging folder, figure temp path).

    Entering checks the figure format and both output paths, before any work.

    The figure may live elsewhere (then :func:`staged_files` puts it in place after the folder)
    or inside ``out`` (then it is written into the staging folder and moves with it; staging it
    next to its final path would put it in the folder that the commit swaps away).
    """
    check_figure_path(figure, figure_option)
    try:
        inside = Path(figure).resolve().relative_to(Path(out).resolve())
    except ValueError:
        inside = None
    with staged_files([] if inside is not None else [figure], figure_option) as temps, \
            result_folder(out, out_option, replaces=replaces) as tmp:
        fig = temps[0] if inside is None else tmp / inside
        fig.parent.mkdir(parents=True, exist_ok=True)
        yield tmp, fig
