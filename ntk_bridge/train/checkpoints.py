"""Checkpoints of a training run: orbax managers for the latest state and the best weights, each
step folder sealed with the sha256 of every file (:data:`CHECKSUMS`, written last), damage found
before a resume writes anything, and a full disk during a save turned into one line.

:func:`save` / :func:`restore` move the train state (and the loop's JSON state) through a host
copy; :func:`resume_point` and :func:`check_latest_checkpoint` say which checkpoint a resume can
start from, naming the previous intact one when the latest is damaged.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from ntk_bridge.errors import BridgeError


def managers(run_dir: Path):
    import jax
    import orbax.checkpoint as ocp
    opts: dict[str, Any] = dict(enable_async_checkpointing=False, create=True)
    if jax.process_count() > 1:   # only process 0 writes (parallel.is_writer): orbax syncs it alone
        opts["multiprocessing_options"] = ocp.options.MultiprocessingOptions(primary_host=0, active_processes={0})
        opts["create"] = False    # orbax refuses create=True with active_processes: the folders made here
        for sub in ("checkpoints", "best"):
            (run_dir / sub).mkdir(parents=True, exist_ok=True)
    latest = ocp.CheckpointManager((run_dir / "checkpoints").resolve(),
                                   options=ocp.CheckpointManagerOptions(max_to_keep=2, **opts))
    best = ocp.CheckpointManager((run_dir / "best").resolve(),
                                 options=ocp.CheckpointManagerOptions(max_to_keep=1, **opts))
    return latest, best


def state_tree(state) -> dict:
    return {"step": state.step, "params": state.params, "batch_stats": state.batch_stats,
            "opt_state": state.opt_state}


def _host(tree: dict) -> dict:
    """Copy a pytree to host numpy arrays. Checkpoints are written from numpy: orbax 0.11's
    jax.Array path needs a newer JAX than the 0.5 pinned here, the numpy path works on both."""
    import jax
    return jax.tree_util.tree_map(np.asarray, jax.device_get(tree))


CHECKSUMS = "ntk_bridge.sha256.json"   # in each checkpoint step folder: sha256 of every file, written last


def _step_dir(manager, step: int) -> Path:
    return Path(manager.directory) / str(int(step))


def _file_hashes(folder: Path) -> dict:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != CHECKSUMS}


def damage(manager, step: int) -> str:
    """Why checkpoint ``step`` of ``manager`` is damaged ("" if intact or, for a checkpoint written
    before checksums existed, unknown): a file missing, added or failing its sha256."""
    return _damage_of(_step_dir(manager, step))


def _damage_of(folder: Path) -> str:
    try:
        saved = json.loads((folder / CHECKSUMS).read_text())
    except FileNotFoundError:
        return "" if folder.is_dir() else f"{folder} is missing"
    except (OSError, ValueError, RecursionError):
        return f"{folder / CHECKSUMS} is unreadable"
    now = _file_hashes(folder)
    for name in sorted(set(saved) | set(now)):
        if saved.get(name) != now.get(name):
            return f"{folder / name} " + ("is missing" if name not in now else "fails its checksum")
    return ""


def _os_error(err: BaseException) -> OSError | None:
    """The OSError behind ``err`` (orbax / tensorstore report one as ValueError("... [os_error_code='28']"))."""
    import errno
    import re
    seen = err
    while seen is not None:
        if isinstance(seen, OSError):
            return seen
        m = re.search(r"os_error_code='?(\d+)", str(seen))
        if m or "No space left on device" in str(seen):
            code = int(m.group(1)) if m else errno.ENOSPC
            return OSError(code, os.strerror(code))
        seen = seen.__cause__ or seen.__context__
    return None


def _remove_partial(manager, step: int) -> None:
    """Remove what an unfinished save of ``step`` left: orbax's *.orbax-checkpoint-tmp folders, an unsealed step."""
    folder = Path(manager.directory)
    for entry in folder.iterdir() if folder.is_dir() else ():
        if "orbax-checkpoint-tmp" in entry.name:
            shutil.rmtree(entry, ignore_errors=True)
    if not (_step_dir(manager, step) / CHECKSUMS).exists():
        shutil.rmtree(_step_dir(manager, step), ignore_errors=True)
    with contextlib.suppress(Exception):
        manager.reload()


def save(manager, step: int, tree: dict, loop: Any) -> None:
    """Save ``tree`` (and the loop state) as checkpoint ``step``, then seal it with :data:`CHECKSUMS`.
    A full disk (or another OSError) removes the unfinished checkpoint and is one BridgeError line
    (with the checkpoint's size); the earlier checkpoints stay."""
    import orbax.checkpoint as ocp

    from ntk_bridge.io import disk_error, write_json
    tree = _host(tree)
    try:
        if step in manager.all_steps():  # a resumed run re-reaching a step it saved before the kill
            manager.delete(step)
        items = {"state": ocp.args.StandardSave(tree)}
        if loop is not None:
            items["loop"] = ocp.args.JsonSave(loop.to_json())
        with _held_back_stderr() as held:
            manager.save(step, args=ocp.args.Composite(**items))
            manager.wait_until_finished()
            held.release()                   # saved: what the library printed is shown as usual
        write_json(_step_dir(manager, step) / CHECKSUMS, _file_hashes(_step_dir(manager, step)))
    except Exception as err:
        oserr = None if isinstance(err, BridgeError) else _os_error(err)
        if oserr is None and not isinstance(err, BridgeError):
            raise
        _remove_partial(manager, step)
        if isinstance(err, BridgeError):
            raise
        needed = sum(int(np.asarray(x).nbytes) for x in __import__("jax").tree_util.tree_leaves(tree))
        raise disk_error(oserr, _step_dir(manager, step), needed=needed, what="the checkpoint") from None


class _HeldBack:
    """Text written to stderr while saving, passed on to ``target`` only if the save succeeds."""

    def __init__(self, target) -> None:
        import io
        self.buffer, self.target = io.StringIO(), target

    def release(self) -> None:
        self.target.write(self.buffer.getvalue())
        self.buffer.seek(0)
        self.buffer.truncate()


@contextlib.contextmanager
def _held_back_stderr():
    """Hold back what the checkpoint library's threads print while a save runs: on a full disk orbax
    logs each failed write with its traceback; the one line of :func:`ntk_bridge.io.disk_error` says it."""
    import logging
    import sys
    held, absl = _HeldBack(sys.stderr), logging.getLogger("absl")
    level = absl.level
    absl.setLevel(logging.CRITICAL)
    sys.stderr = held.buffer
    try:
        yield held
    finally:
        sys.stderr = held.target
        absl.setLevel(level)


class DamagedCheckpoint(BridgeError):
    """A checkpoint whose files fail their checksums or that the checkpoint library cannot read."""


def restore(manager, step: int, template: dict, with_loop: bool):
    import jax
    import orbax.checkpoint as ocp
    why = damage(manager, step)
    if why:
        raise DamagedCheckpoint(f"checkpoint {_step_dir(manager, step)} is damaged ({why})")
    items = {"state": ocp.args.StandardRestore(_host(template))}
    if with_loop:
        items["loop"] = ocp.args.JsonRestore()
    try:
        out = manager.restore(step, args=ocp.args.Composite(**items))
    except Exception as err:  # orbax / tensorstore: a truncated or garbled file
        detail = " ".join(str(err).split())[:160]
        raise DamagedCheckpoint(f"checkpoint {_step_dir(manager, step)} cannot be read ({type(err).__name__}: "
                                f"{detail})") from None
    tree = jax.tree_util.tree_map(jax.numpy.asarray, out["state"])
    return tree, (out["loop"] if with_loop else None)


def resume_point(latest, run_dir: Path, state):
    """(tree, loop JSON) of the latest checkpoint; one the library cannot read is :func:`_cannot_resume`."""
    try:
        return restore(latest, latest.latest_step(), state_tree(state), with_loop=True)
    except DamagedCheckpoint as err:
        raise _cannot_resume(run_dir, str(err)) from None


def _cannot_resume(run_dir: Path, why: str) -> BridgeError:
    """One line for a damaged latest checkpoint: the previous intact one to resume from (delete the
    damaged folder), or a fresh start."""
    folder = Path(run_dir) / "checkpoints"
    steps = sorted((int(p.name) for p in folder.iterdir() if p.name.isdigit()), reverse=True)
    older = [s for s in steps[1:] if not _damage_of(folder / str(s))]
    fix = (f"the previous checkpoint (step {older[0]}) is intact: delete {folder / str(steps[0])} to resume "
           f"from it, or start fresh with a new `run_dir`" if older else
           f"no earlier intact checkpoint is left: start fresh with a new `run_dir` (or delete {run_dir})")
    return BridgeError(f"cannot resume {run_dir}: the latest {why}; {fix}")


def check_latest_checkpoint(run_dir: Path) -> None:
    """Before anything of a resume is written: refuse a latest checkpoint that fails its checksums."""
    folder = Path(run_dir) / "checkpoints"
    steps = sorted((int(p.name) for p in folder.iterdir() if p.name.isdigit()), reverse=True) if folder.is_dir() else []
    why = _damage_of(folder / str(steps[0])) if steps else ""
    if why:
        raise _cannot_resume(run_dir, f"checkpoint {folder / str(steps[0])} is damaged ({why})")


def apply_tree(state, tree: dict):
    return state.replace(step=tree["step"], params=tree["params"], batch_stats=tree["batch_stats"],
                         opt_state=tree["opt_state"])


def has_checkpoint(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds a finished (sealed) latest checkpoint."""
    folder = Path(run_dir) / "checkpoints"
    return folder.is_dir() and any((p / CHECKSUMS).is_file() for p in folder.iterdir())
