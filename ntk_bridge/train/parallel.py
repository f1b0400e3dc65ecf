"""Data-parallel training steps: one mesh over the devices, the task / episode axis split over it.

The trainer's step is one jitted program over a 1-D mesh with axis ``"data"`` (:data:`DATA`)
of ``n`` devices (all local devices by default; after :func:`initialize_distributed`, all
devices of all processes):

- parameters, optimiser state and batch-norm statistics are replicated (``P()``);
- every array of a training batch is split along its first axis, the ``T = meta_batch`` tasks
  (MTL) or episodes (GBML), ``T / n`` per device (``P("data")``); :func:`check_split` refuses a
  ``T`` that ``n`` does not divide, in one line;
- the step is ``jax.jit(train_step, in_shardings=(P(), P("data"), P()), out_shardings=P())``,
  traced with the mesh known to :func:`map_episodes` (a context variable, set only while tracing).

What runs where. MTL is written in the global view: one forward pass over all ``T * M`` images,
so the partitioner computes each device's ``T * M / n`` images there and inserts the all-reduces
(batch-norm statistics over all ``T * M`` images, as on one device; the gradient sum). GBML
episodes are independent (each its own batch statistics and inner loop), so their per-episode
map runs under ``shard_map`` (:func:`map_episodes`): every device adapts its ``T / n`` episodes
(MAML's sequential ``lax.map`` included), the episode means are all-reduced outside it.
Either way the step computes the same function as the one-device step; only the order of the
floating-point sums changes (``tests/train/test_multidevice.py`` checks it to float32 tolerance on 4
virtual CPU devices). Random numbers do not depend on the sharding (JAX's partitionable
threefry, the default: :func:`check_partitionable_rng`).

Several hosts. :func:`initialize_distributed` calls ``jax.distributed.initialize`` (cluster
auto-detection: SLURM, Open MPI, Kubernetes, TPU pods; or ``JAX_COORDINATOR_ADDRESS`` with
``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID``); the mesh then spans every process's devices.
Each process computes the same global batch indices (a pure function of seed and step) and
hands over only the slices its own devices hold (:func:`place`, ``make_array_from_callback``);
evaluation and checkpoints work on each process's own copy of the replicated state
(:func:`local_view`). Tested: the step of 2 processes x 2 CPU devices equals the 1-process
4-device step. The join never waits forever: a deadline (``distributed_timeout``), a progress line
naming whom it waits for, and signals that stop it (``tests/faults/test_distributed_start.py``). One
process writes the run folder (:func:`is_writer`, process 0: the lock, the JSON and CSV files, the
checkpoints); a resume's state is read there and broadcast (:func:`from_writer`); tested: 2 processes,
interrupted and resumed, leave the run folder of one process.

Shapes: a batch is a dict of arrays with the task / episode axis first, e.g. ``x (T, M, H, W, C)``,
``y (T, M)``, ``classes (T, n_way)`` (:mod:`ntk_bridge.train.algorithms`).
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import math
import os
import signal
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ntk_bridge.errors import BridgeError, require

log = logging.getLogger(__name__)

DATA = "data"
JOIN_GRACE_S = 60       # JAX's own join deadline is ours plus this: it aborts the process when it passes
COORDINATOR_VARS = ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID")
# the mesh of the step being traced (set by compile_step, read by map_episodes)
_TRACING_MESH: contextvars.ContextVar = contextvars.ContextVar("ntk_bridge_step_mesh", default=None)


# ---------------------------------------------------------------- the mesh

@dataclass(frozen=True)
class DataParallel:
    """The mesh of a run and its two shardings. ``mesh``: a 1-D ``jax.sharding.Mesh`` over
    axis :data:`DATA`."""

    mesh: Any

    @property
    def n_devices(self) -> int:
        return int(self.mesh.shape[DATA])

    @property
    def replicated(self):
        """Sharding of parameters, optimiser state, keys and metrics: a full copy per device."""
        from jax.sharding import NamedSharding, PartitionSpec
        return NamedSharding(self.mesh, PartitionSpec())

    @property
    def split(self):
        """Sharding of a batch array: its first (task / episode) axis split over the devices."""
        from jax.sharding import NamedSharding, PartitionSpec
        return NamedSharding(self.mesh, PartitionSpec(DATA))


def available_devices() -> list:
    """All devices of the run: every process's after :func:`initialize_distributed`."""
    import jax
    return list(jax.devices())


def data_parallel(devices: int = 0) -> DataParallel:
    """The mesh over the first ``devices`` devices (0 = all of them, the default).

    A subset is for one process only: across processes every device takes part."""
    import jax
    from jax.sharding import AxisType, Mesh
    found = available_devices()
    require(isinstance(devices, int) and devices >= 0,
            f"devices must be an integer >= 0 (0 = all {len(found)}), got {devices!r}")
    require(devices <= len(found),
            f"devices={devices} but this machine has {len(found)} {found[0].platform} device(s); "
            f"set devices to at most {len(found)} (0 = all)")
    require(devices in (0, len(found)) or jax.process_count() == 1,
            f"devices={devices}: across {jax.process_count()} processes every device takes part; "
            f"set devices=0")
    chosen = found[:devices] if devices else found
    return DataParallel(Mesh(np.array(chosen), (DATA,), axis_types=(AxisType.Auto,)))


def check_split(meta_batch: int, n_devices: int, what: str = "meta_batch") -> None:
    """Refuse, in one line, a batch of ``meta_batch`` tasks that ``n_devices`` do not share evenly."""
    if meta_batch % n_devices:
        lower = max(d for d in range(1, n_devices + 1) if meta_batch % d == 0)
        up = -(-meta_batch // n_devices) * n_devices
        raise BridgeError(f"{what}={meta_batch} tasks do not split evenly over {n_devices} devices; "
                          f"set {what} to a multiple of {n_devices} (e.g. {up}) or devices={lower}")


def check_partitionable_rng() -> None:
    """The step's random numbers (augmentation, DropBlock, episode keys) must not depend on how
    the batch is split: JAX's ``jax_threefry_partitionable`` (default on since JAX 0.5)."""
    import jax
    require(bool(jax.config.jax_threefry_partitionable),
            "jax_threefry_partitionable is off, so random numbers would change with the device "
            "count; unset JAX_THREEFRY_PARTITIONABLE (or set it to 1)")


# ---------------------------------------------------------------- placing data

def place(dp: DataParallel, host: np.ndarray):
    """A host array ``(T, ...)`` (the same on every process) as a global array split along
    ``T``; each process copies only the slices its own devices hold."""
    import jax
    host = np.asarray(host)
    return jax.make_array_from_callback(host.shape, dp.split, lambda index: host[index])


def shard_batch(dp: DataParallel, batch: dict) -> dict:
    """Every array of ``batch`` split along its first axis (a no-op for one already split)."""
    import jax
    return {k: jax.device_put(v, dp.split) for k, v in batch.items()}


def replicate(dp: DataParallel, tree: Any) -> Any:
    """``tree`` (train state, keys) copied to every device (leaves already there are kept)."""
    import jax
    return jax.device_put(tree, dp.replicated)


def local_view(tree: Any) -> Any:
    """A replicated tree as single-device arrays on this process's first device (no copy), for
    work every process does alone: evaluation, checkpoints. Other leaves are returned as they are."""
    import jax

    def one(leaf):
        if isinstance(leaf, jax.Array) and len(leaf.sharding.device_set) > 1:
            require(leaf.is_fully_replicated, "local_view needs replicated arrays (train state), "
                    f"got one sharded as {leaf.sharding}")
            return leaf.addressable_data(0)
        return leaf

    return jax.tree_util.tree_map(one, tree)


# ---------------------------------------------------------------- the step

def compile_step(dp: DataParallel, train_step: Callable, state: Any, batch: dict, key: Any) -> Callable:
    """``train_step(state, batch, key) -> (state, metrics)`` compiled for ``dp``: state and key
    replicated, the batch split along its first axis, the old state donated. Returns the
    compiled function (call it with arguments placed by :func:`replicate` / :func:`place`)."""
    import jax
    check_partitionable_rng()
    jitted = jax.jit(train_step, in_shardings=(dp.replicated, dp.split, dp.replicated),
                     out_shardings=dp.replicated, donate_argnums=(0,))
    with _tracing(dp.mesh):
        return jitted.lower(state, batch, key).compile()


@contextlib.contextmanager
def _tracing(mesh):
    token = _TRACING_MESH.set(mesh)
    try:
        yield
    finally:
        _TRACING_MESH.reset(token)


def map_episodes(one: Callable, shared: Any, args: tuple, sequential: bool):
    """``one(shared, *episode)`` for each episode: ``args`` are arrays ``(E, ...)``, the result a
    pytree of arrays ``(E, ...)``; ``shared`` (e.g. the parameters) is the same for every
    episode. ``sequential``: ``lax.map`` (one episode after another) instead of ``vmap``.

    Inside a step compiled by :func:`compile_step` on ``n > 1`` devices this runs under
    ``shard_map``: each device maps its own ``E / n`` episodes with its own copy of ``shared``
    (the gradient with respect to ``shared`` is summed over the devices). ``one`` must take
    every traced value it uses through ``shared`` or the episode, not close over it (a
    closed-over tracer breaks the transpose of ``lax.map`` inside ``shard_map``)."""
    import jax

    def run(sh, a):
        if sequential:
            return jax.lax.map(lambda e: one(sh, *e), a)
        return jax.vmap(one, in_axes=(None,) + (0,) * len(a))(sh, *a)

    mesh = _TRACING_MESH.get()
    if mesh is None or mesh.shape[DATA] == 1:
        return run(shared, args)
    from jax.sharding import PartitionSpec

    def per_device(sh, a):
        # a device's own copy: a gradient taken inside ``one`` (MAML's inner loop) stays that
        # device's; left invariant, shard_map would sum it over the devices. The outer gradient
        # (the transpose of this cast) is the sum over the devices, as it must be.
        return run(jax.lax.pcast(sh, DATA, to="varying"), a)

    return jax.shard_map(per_device, mesh=mesh, in_specs=(PartitionSpec(), PartitionSpec(DATA)),
                         out_specs=PartitionSpec(DATA))(shared, args)


# ---------------------------------------------------------------- several hosts

def coordinator_settings(environ: dict | None = None) -> dict:
    """Keyword arguments of ``jax.distributed.initialize`` from ``JAX_COORDINATOR_ADDRESS``,
    ``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID`` (all three, or none: cluster auto-detection)."""
    env = os.environ if environ is None else environ
    given = {v: env.get(v, "") for v in COORDINATOR_VARS}
    if not any(given.values()):
        return {}
    missing = [v for v, s in given.items() if not s]
    require(not missing, f"{', '.join(missing)} not set; a JAX coordinator needs all of "
            f"{', '.join(COORDINATOR_VARS)} (e.g. host0:1234, 2, 0..1) or none (cluster auto-detection)")
    try:
        n, pid = int(given["JAX_NUM_PROCESSES"]), int(given["JAX_PROCESS_ID"])
    except ValueError:
        raise BridgeError(f"JAX_NUM_PROCESSES={given['JAX_NUM_PROCESSES']!r} and JAX_PROCESS_ID="
                          f"{given['JAX_PROCESS_ID']!r} must be integers") from None
    require(n >= 1 and 0 <= pid < n, f"JAX_PROCESS_ID={pid} must be in 0..JAX_NUM_PROCESSES-1 = 0..{n - 1}")
    return {"coordinator_address": given["JAX_COORDINATOR_ADDRESS"], "num_processes": n, "process_id": pid}


DISTRIBUTED_TIMEOUT_S = 300       # jax.distributed.initialize's own default, stated once here


def _waiting_for(settings: dict) -> str:
    """Whom a joining process waits for, in words (for the progress line and the timeout line)."""
    if not settings:
        return "the processes of the cluster JAX detects (SLURM, Open MPI, ...)"
    n, pid, where = settings["num_processes"], settings["process_id"], settings["coordinator_address"]
    if pid == 0:
        others = "process 1" if n == 2 else f"processes 1..{n - 1}"
        return f"{others} to connect to this process's coordinator at {where}"
    return f"the coordinator at {where} (process 0) and the other {n - 2} process(es)" if n > 2 else \
        f"the coordinator at {where} (process 0)"


def initialize_distributed(environ: dict | None = None, distributed_timeout: float = DISTRIBUTED_TIMEOUT_S) -> None:
    """Join the processes of a multi-host run (``jax.distributed.initialize``) before anything
    else touches JAX's devices. Without coordinator variables JAX detects the cluster itself.

    Never waits forever: a progress line (logging, INFO) says whom it waits for, the join is given
    ``distributed_timeout`` seconds (``initialization_timeout``), and the wait runs in a helper thread
    while this one polls, so Ctrl-C and SIGTERM stop it at once (the CLI's one ``interrupted`` line). A
    process that does not come within the deadline is one BridgeError line."""
    import threading

    import jax
    settings = coordinator_settings(environ)
    timeout = distributed_timeout
    require(isinstance(timeout, (int, float)) and math.isfinite(timeout) and timeout > 0,
            f"`distributed_timeout` must be a positive number of seconds (got {timeout!r})")
    whom = _waiting_for(settings)
    log.info("joining a distributed run%s: waiting up to %g s for %s",
             f" as process {settings['process_id']} of {settings['num_processes']}" if settings else "", timeout, whom)
    outcome: dict = {}

    def join() -> None:
        try:
            # JAX's own deadline comes later than ours: at its deadline it ends the process (an abort)
            seconds = math.ceil(timeout) + JOIN_GRACE_S
            jax.distributed.initialize(**settings, initialization_timeout=seconds, shutdown_timeout_seconds=seconds)
        except BaseException as err:  # noqa: BLE001 - handed to the waiting thread
            outcome["error"] = err

    helper = threading.Thread(target=join, name="ntk_bridge-distributed-join", daemon=True)
    helper.start()
    _wait(helper, timeout, whom)
    err = outcome.get("error")
    if err is not None:                      # refused before connecting (JAX's own argument checks)
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise BridgeError(f"jax.distributed.initialize failed ({first[:200]}); set JAX_COORDINATOR_ADDRESS, "
                          f"JAX_NUM_PROCESSES and JAX_PROCESS_ID, or run under SLURM / Open MPI") from None


class AbandonedStart(BridgeError):
    """The distributed start-up gave up (deadline passed): the join's thread is still inside JAX's
    connect, and JAX ends the process when its own deadline passes, so the caller must end the
    process now (the CLI does, after the one line: ``abandon``)."""

    abandon = True


def _wait(helper, timeout: float, whom: str) -> None:
    """Poll ``helper`` (the join) until it ends or ``timeout`` passes; a signal meanwhile stops the wait."""
    from ntk_bridge.interrupts import Interrupted

    deadline = time.monotonic() + timeout
    try:
        while helper.is_alive() and time.monotonic() < deadline:
            helper.join(0.2)                 # back in Python five times a second: signal handlers run here
    except KeyboardInterrupt as err:         # Ctrl-C, or SIGTERM through the CLI's handler
        stop = Interrupted(getattr(err, "signum", signal.SIGINT),
                           f"the distributed start-up was stopped while waiting for {whom}; nothing was written")
        stop.abandon = True                  # type: ignore[attr-defined]
        raise stop from None
    if helper.is_alive():
        raise AbandonedStart(f"no answer within {timeout:g} s from {whom}; start the same command on every "
                             "host, or raise `distributed_timeout` (seconds); nothing was written")


# ---------------------------------------------------------------- one writer

def is_writer() -> bool:
    """Whether this process writes the run folder: process 0 (the only process of a one-process run).
    It takes the run folder's lock and writes config.json, the metrics, the step log, the
    checkpoints and summary.json; the other processes write nothing and receive what it read
    (:func:`from_writer`)."""
    import jax
    return jax.process_index() == 0


def from_writer(tree: Any) -> Any:
    """``tree`` as process 0 has it, on every process (a collective: every process calls it with a
    tree of the same structure, shapes and dtypes; the others wait here for process 0)."""
    import jax
    if jax.process_count() == 1:
        return tree
    from jax.experimental import multihost_utils
    return jax.tree_util.tree_map(jax.numpy.asarray, multihost_utils.broadcast_one_to_all(tree))


def json_from_writer(obj: Any) -> Any:
    """A JSON-able object as process 0 has it, on every process (its UTF-8 text, broadcast)."""
    import json

    import jax
    if jax.process_count() == 1:
        return obj
    text = np.frombuffer(json.dumps(obj).encode(), np.uint8) if is_writer() else np.zeros(0, np.uint8)
    size = int(from_writer(np.int64(text.size)))
    padded = np.zeros(size, np.uint8)
    padded[:text.size] = text[:size]
    return json.loads(from_writer(padded).tobytes().decode())


def barrier(name: str) -> None:
    """Every process waits here until all have arrived (nothing to do in a one-process run)."""
    import jax
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils
        multihost_utils.sync_global_devices(name)
