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

Who may write a result folder
    ``result_folder`` / ``result_set`` lock the output for the whole run (:func:`output_lock`, a
    hidden ``.<name>.lock`` beside it): a second run on the same output is refused in one line
    naming the first one's pid and the lock file. Given ``settings`` (the dict the command saves
    as config.json), they refuse to replace a finished result set whose config.json differs
    unless ``overwrite`` (the commands' ``--overwrite``); the same settings reproduce it.

Faults
    Every OSError met while writing (a full disk, an unwritable place) becomes one
    :class:`BridgeError` line naming the file as the user knows it (:func:`disk_error`: the free
    space there and what was needed when known); the staging copy is removed and the previous
    results stay. JSON is written only through :func:`json_text` (strict: NaN and infinities as null).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import math
import os
import re
import secrets
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

from ntk_bridge.errors import BridgeError, require

STAGING_RE = re.compile(r"^\.(?P<name>.+)\.(?P<kind>incomplete|replaced)-(?P<pid>\d+)-[0-9a-f]+(\.[^.]*)?$")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# ----------------------------------------------------------------------------- disk errors

DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def shown_path(path: str | os.PathLike) -> Path:
    """``path`` as the user knows it: a staging component (``.NAME.incomplete-PID-HEX``) shown as NAME."""
    parts = []
    for part in Path(path).parts:
        m = STAGING_RE.match(part)
        parts.append(m["name"] if m else part)
    return Path(*parts) if parts else Path(path)


def _free_bytes(path: Path) -> int | None:
    for anc in (path, *path.parents):
        if anc.exists():
            with contextlib.suppress(OSError):
                return shutil.disk_usage(anc).free
            return None
    return None


class WriteError(BridgeError):
    """A write that failed for a reason of the machine (full disk, permissions): see :func:`disk_error`."""


def disk_error(err: OSError, path: str | os.PathLike, needed: int | None = None,
               what: str = "") -> WriteError:
    """One line for an OSError met while writing ``path``: the device full (with the free space there
    and, when known, the bytes ``needed``), or the system's reason; earlier results are untouched
    because every writer here stages first."""
    shown = shown_path(path)
    what = f"{what} " if what else ""
    if err.errno in DISK_FULL:
        free = _free_bytes(Path(path))
        sizes = ", ".join(x for x in (f"{needed / 1e6:.3g} MB needed" if needed else "",
                                      f"{free / 1e6:.3g} MB free there" if free is not None else "") if x)
        return WriteError(f"no space left on the device while writing {what}{shown}"
                           + (f" ({sizes})" if sizes else "")
                           + "; nothing was replaced: free some space (or choose another output location) and rerun")
    return WriteError(f"cannot write {what}{shown} ({err.strerror or err}); nothing was replaced: "
                       "check the location and rerun")


def atomic_write(path: str | os.PathLike, write: Callable[[Any], None], mode: str = "w") -> Path:
    """Call ``write(fh)`` on a temp file next to ``path``, fsync it, then rename onto ``path``.

    An OSError on the way (a full disk, an unwritable folder) removes the temp file and becomes one
    :class:`BridgeError` line (:func:`disk_error`); ``path`` keeps its previous content.
    """
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.chmod(tmp, 0o666 & ~_umask())          # mkstemp makes 0600; results are for everyone to read
        with os.fdopen(fd, mode) as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(err, OSError):
            raise disk_error(err, path) from None
        raise
    return path


def _finite_json(obj: Any) -> Any:
    """``obj`` with every non-finite float (NaN, +-inf) as None and numpy scalars/arrays as Python
    values: JSON (RFC 8259) has no NaN or Infinity, so they are written as ``null``."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite_json(v) for v in obj]
    if type(obj).__module__ == "numpy":
        return _finite_json(obj.tolist()) if hasattr(obj, "tolist") else obj
    return obj


def json_text(obj: Any) -> str:
    """The project's one way to write JSON: indented, sorted keys, strictly valid (``allow_nan=False``;
    a non-finite number becomes ``null``, :func:`_finite_json`), other objects as their ``str``."""
    return json.dumps(_finite_json(obj), indent=2, sort_keys=True, default=str, allow_nan=False)


def read_json(path: str | os.PathLike, fix: str = "re-run the command that wrote it, or move it out of the way") -> Any:
    """The JSON document at ``path``; one BridgeError line naming it when it cannot be read, is not
    UTF-8 text, is not JSON, or nests too deeply for the parser (a hostile file)."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise BridgeError(f"{shown_path(path)} is missing; {fix}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise BridgeError(f"{shown_path(path)} cannot be read as text ({type(err).__name__}); {fix}") from None
    except json.JSONDecodeError as err:
        raise BridgeError(f"{shown_path(path)} is not valid JSON ({err.msg} at line {err.lineno}); {fix}") from None
    except RecursionError:
        raise BridgeError(f"{shown_path(path)} is not valid JSON (nested too deeply); {fix}") from None


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Atomically write ``obj`` as indented, valid JSON (:func:`json_text`)."""
    text = json_text(obj)
    return atomic_write(path, lambda fh: fh.write(text))


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Atomically write a text file."""
    return atomic_write(path, lambda fh: fh.write(text))


def write_csv(path: str | os.PathLike, frame, digits: int | None = None) -> Path:
    """Atomically write a pandas DataFrame as CSV (no index); floats with ``digits`` significant
    digits (``%.{digits}g``) when given, else in full (shortest round-trip repr)."""
    fmt = None if digits is None else f"%.{int(digits)}g"
    return atomic_write(path, lambda fh: frame.to_csv(fh, index=False, float_format=fmt))


def save_figure(path: str | os.PathLike, fig, dpi: int = 130) -> Path:
    """Atomically save a matplotlib figure (format from the suffix). A figure that pyplot manages
    is closed afterwards (pyplot keeps every open figure alive); the package's own figures are
    plain ``matplotlib.figure.Figure`` objects, built without pyplot, so no backend is touched."""
    path = Path(path)
    try:
        return atomic_write(path, lambda fh: fig.savefig(fh, dpi=dpi, bbox_inches="tight",
                                                         format=path.suffix.lstrip(".")), mode="wb")
    finally:
        if getattr(fig.canvas, "manager", None) is not None:   # made by pyplot: release it there
            import matplotlib.pyplot as plt
            plt.close(fig)


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


# ----------------------------------------------------------------------------- lock, settings

def lock_path(target: Path) -> Path:
    """The lock file of the result path ``target``: a hidden sibling ``.<name>.lock``."""
    return target.parent / f".{target.name}.lock"


def _lock_holder(lock: Path) -> str:
    with contextlib.suppress(OSError, ValueError):
        return str(int(lock.read_text().split()[0]))
    return "unknown"


def _lock_exclusive(fd: int) -> None:
    """An exclusive, non-blocking lock on the open file ``fd`` (OSError when another process holds
    it). POSIX ``flock``; on Windows ``msvcrt.locking`` on the first byte. Imported here, not at
    the module's top, so the package imports on every platform."""
    try:
        import fcntl
    except ImportError:                      # not POSIX
        import msvcrt

        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        return
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


def _try_lock(lock: Path, on_open_error) -> int | None:
    """Open (create) ``lock`` and take an exclusive ``flock`` on it: the open descriptor, or None
    while another process holds it. A file unlinked by the previous holder between our open and
    our lock is not the lock any more (its inode differs): then try again on the new file.
    ``on_open_error(err)`` turns a failed open into the caller's one-line error."""
    while True:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666 & ~_umask())
        except OSError as err:
            raise on_open_error(err) from None
        try:
            _lock_exclusive(fd)
        except OSError:
            os.close(fd)
            return None
        try:
            same = os.fstat(fd).st_ino == os.stat(lock).st_ino   # not a file unlinked by the previous holder
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)


@contextlib.contextmanager
def _holding(lock: Path, fd: int) -> Iterator[None]:
    """While held: the lock file records this process's pid; on leaving it is removed and closed."""
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        with contextlib.suppress(OSError):
            lock.unlink()
        os.close(fd)


@contextlib.contextmanager
def output_lock(target: Path, option: str, shown: Path) -> Iterator[Path]:
    """Hold an exclusive lock on the result path ``target`` for the whole run (``flock`` on
    :func:`lock_path`, which records the holder's pid); a second run on the same output is refused
    in one line. The kernel drops the lock when its process dies, so a lock file left by a killed
    run does not block the next one (it is taken over); the file is removed on leaving."""
    lock = lock_path(target)
    fd = _try_lock(lock, lambda err: BridgeError(f"{option} {shown}: cannot create the lock file {lock} "
                                                 f"({err.strerror}); choose a writable location"))
    if fd is None:
        pid = _lock_holder(lock)
        raise BridgeError(f"{option} {shown} is being written by another run (process {pid}, lock file {lock}); "
                          f"wait for it to finish or choose another {option}; if no process {pid} is running, "
                          f"the lock is stale: delete {lock}")
    with _holding(lock, fd):
        yield lock


def _short(value: Any, limit: int = 60) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= limit else text[:limit - 3] + "..."


ABSENT = object()


def first_difference(saved: Any, now: Any, path: str) -> tuple[str, Any, Any] | None:
    """(the path of the first differing leaf, its value there, its value now) or None when equal.

    Nested objects are entered key by key (sorted) and lists of one length item by item, so the
    path names the setting that differs (``predictor.inner.tau``, ``depths[3]``) and both values
    are that setting's, never two cut copies of a whole nested object."""
    if saved == now:
        return None
    if isinstance(saved, dict) and isinstance(now, dict):
        for key in sorted(set(saved) | set(now), key=str):
            found = first_difference(saved.get(key, ABSENT), now.get(key, ABSENT), f"{path}.{key}")
            if found:
                return found
        return None
    if isinstance(saved, list) and isinstance(now, list) and len(saved) == len(now):
        for i, (a, b) in enumerate(zip(saved, now)):
            found = first_difference(a, b, f"{path}[{i}]")
            if found:
                return found
        return None
    return path, saved, now


def _shown(value: Any) -> str:
    return "absent" if value is ABSENT else _short(value)


def settings_differences(saved: Any, settings: dict) -> list[str]:
    """``"path: saved there vs new now"`` for each top-level key whose value differs (JSON-normalised),
    naming the first differing nested setting (:func:`first_difference`). A top-level key the saved
    config lacks (a setting added after that run was made) is not compared."""
    now = json.loads(json_text(settings))
    if not isinstance(saved, dict):
        return [f"config.json: {_short(saved)} there"]
    out = []
    for key in sorted(saved):
        found = first_difference(saved.get(key), now.get(key, ABSENT), key)
        if found:
            path, a, b = found
            out.append(f"{path}: {_shown(a)} there vs {_shown(b)} now")
    return out


def check_settings(target: Path, shown: Path, option: str, settings: dict | None, overwrite: bool) -> None:
    """Refuse to replace a finished result set (``target/config.json``) made with other settings
    unless ``overwrite``; the same settings reproduce it (and may replace it)."""
    saved_path = target / "config.json"
    if settings is None or overwrite or not saved_path.is_file():
        return
    try:
        saved = json.loads(saved_path.read_text())
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        raise BridgeError(f"{option} {shown} holds results whose config.json cannot be read, so they may come from "
                          f"other settings; add --overwrite to replace them, or choose another {option}") from None
    diff = settings_differences(saved, settings)
    more = f" and {len(diff) - 3} more" if len(diff) > 3 else ""
    require(not diff, f"{option} {shown} holds results made with different settings ({'; '.join(diff[:3])}{more}); "
                      f"add --overwrite to replace them, or choose another {option}")


def _resolve_target(path: str | os.PathLike) -> Path:
    """The real folder a result path names (a symlinked result folder stays a link to the new run)."""
    path = Path(path)
    return path.resolve() if path.is_symlink() else path.absolute()


@contextlib.contextmanager
def result_folder(path: str | os.PathLike, option: str = "output folder",
                  replaces: Iterable[str] = (), settings: dict | None = None,
                  overwrite: bool = False) -> Iterator[Path]:
    """Yield a staging folder for the result set of ``path``; on success move it into place.

    ``option`` names the path in error messages (e.g. ``"--out"``). See the module docstring.
    ``settings`` (what the command writes as config.json) is compared with the config.json of a
    finished result set at ``path``: other settings are refused unless ``overwrite``. The output is
    locked (:func:`output_lock`) from entering to the commit.
    """
    with _locked_target(path, option, settings, overwrite) as (shown, target):
        with _staged_folder(shown, target, option, replaces) as staging:
            yield staging


@contextlib.contextmanager
def _locked_target(path, option: str, settings: dict | None, overwrite: bool) -> Iterator[tuple[Path, Path]]:
    """Validate the result path, make its parent, lock it, check its settings: (shown, target)."""
    shown, target = Path(path), _resolve_target(path)
    require(not target.exists() or target.is_dir(),
            f"{option} {shown} is a file, not a folder; give a folder path")
    require(not is_staging(target), f"{option} {shown} is a staging folder name; choose another name")
    cwd = Path.cwd().resolve()
    require(target.resolve() != cwd and target.resolve() not in cwd.parents and not (target / ".git").exists(),
            f"{option} {shown} is the working folder, holds it, or is a git checkout: the whole folder is "
            "replaced by the results, so give a folder of its own (e.g. experiments/results/NAME)")
    created = _make_parents(target.parent, option, shown)
    try:
        with output_lock(target, option, shown):
            check_settings(target, shown, option, settings, overwrite)
            yield shown, target
    finally:
        _remove_empty(created)


@contextlib.contextmanager
def _staged_folder(shown: Path, target: Path, option: str, replaces: Iterable[str]) -> Iterator[Path]:
    """The staging folder beside ``target``; committed on success, removed on any exception."""
    clean_stale(target)
    staging = target.parent / f".{target.name}.incomplete-{_token()}"
    try:
        staging.mkdir()
    except OSError as err:
        raise BridgeError(f"{option} {shown}: cannot write in {target.parent} ({err.strerror}); "
                          "choose a writable location") from None
    try:
        yield staging
        _commit_folder(staging, target, replaces)
    except BaseException as err:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(err, OSError):
            raise disk_error(err, shown, what="the result set") from None
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
    except BaseException as err:
        for temp in temps:
            with contextlib.suppress(OSError):
                temp.unlink()
        _remove_empty(created)
        if isinstance(err, OSError):
            raise disk_error(err, err.filename or (finals[0] if finals else "."), what=option) from None
        raise


@contextlib.contextmanager
def result_set(out: str | os.PathLike, figure: str | os.PathLike, replaces: Iterable[str] = (),
               out_option: str = "--out", figure_option: str = "--figure", settings: dict | None = None,
               overwrite: bool = False) -> Iterator[tuple[Path, Path]]:
    """A result folder and its figure, committed together: yields (staging folder, figure temp path).

    Entering checks the figure format and both output paths, locks ``out`` and compares
    ``settings`` with a finished result set there (:func:`result_folder`), before any work.

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
            result_folder(out, out_option, replaces=replaces, settings=settings, overwrite=overwrite) as tmp:
        fig = temps[0] if inside is None else tmp / inside
        fig.parent.mkdir(parents=True, exist_ok=True)
        yield tmp, fig


# ----------------------------------------------------------------------------- claims (one writer per unit)

@contextlib.contextmanager
def claim(lock: str | os.PathLike, wait_s: float = 0.0, poll_s: float = 0.05) -> Iterator[bool]:
    """Try to hold an exclusive lock (``flock``) on the file ``lock``: yields True while held, False
    when another process still holds it after ``wait_s`` seconds. The file records the holder's pid
    and is removed on leaving; the kernel drops the lock when its process dies, so a file left by a
    killed process is simply taken over (the same lock as :func:`output_lock`)."""
    lock = Path(lock)
    deadline = time.monotonic() + wait_s
    while (fd := _try_lock(lock, lambda err: disk_error(err, lock, what="the lock file"))) is None:
        if time.monotonic() >= deadline:
            yield False
            return
        time.sleep(poll_s)
    with _holding(lock, fd):
        yield True
