"""The unit-grid runner: one way for every grid study to compute, cache, resume and spread its units.

A study declares its *units*: each a picklable argument (a frozen config) for one module-level
function ``compute(arg) -> {part name: bytes}`` and a JSON-able ``spec`` of everything the result
depends on. The unit's *content key* is ``sha256`` of the canonical JSON of ``{"study": NAME,
"spec": spec}`` (sorted keys, no spaces): the same unit has the same key on every machine and in
every run, and a unit whose settings change gets a new key (the old file is simply not read).

:func:`run_grid` computes the units missing from the cache folder and returns every unit's parts
(:class:`GridOutcome`); the study assembles its frame from them in its declared unit order, so
the frame does not depend on who computed what, when, or in which order.

The cache
    One file per unit, ``CACHE/<name>.<key[:16]>.unit``: a one-line JSON header (format version,
    full key, the spec, each part's name, size and sha256) and the parts' bytes after it, written
    atomically (:func:`ntk_bridge.io.atomic_write`) by the process that computed the unit. A file
    that cannot be parsed, is short, or fails a checksum is *damaged*: it is named in one log line
    and the unit is recomputed (the new file replaces it). Every executor's workers therefore need
    the cache folder: on a cluster, a shared file system.

Claims
    A unit is computed only under its claim, an exclusive ``flock`` on ``CACHE/.<file>.lock``
    (:func:`ntk_bridge.io.claim`), taken by the worker, which then looks at the cache again: a unit
    that another runner finished meanwhile is not computed again; a unit another runner is
    computing right now is skipped and waited for at the end (its claim is released when that
    process finishes or dies; if its file is still missing then, it is computed here). So two
    runners on one cache never write the same unit twice.

Executors (the standard ``concurrent.futures.Executor`` interface)
    ``workers=0`` runs units in this process (:class:`InProcess`); ``workers=N`` in N local worker
    processes (:class:`LocalProcesses`: spawned, one single-threaded XLA / BLAS each, see
    :func:`worker_environment`); ``scheduler=ADDRESS`` on a Dask distributed cluster
    (``distributed.Client(ADDRESS).get_executor()``; the optional extra ``dask``). A worker that
    dies mid-unit loses that unit only: it is retried once (``retries``), and every unit finished
    before stays in the cache.

Same bytes from every executor
    A unit's bytes depend only on its argument, as long as its arithmetic does not depend on the
    thread count. NumPy / LAPACK units on one BLAS thread (the regime map) are bit-identical on every
    executor (tests/studies/test_regime_map.py). JAX-trained units (the feature map) are not quite:
    XLA splits some reductions by thread, so single-threaded workers and a multi-threaded XLA in
    this process differed in the last bits (up to 5e-6 relative, a 16-unit feature map), while
    shards (in-process runs of the CLI) give the serial bytes (tests/studies/test_feature_map.py).

Shards and budget
    ``shard=(K, N)`` computes only the K-th of N deterministic shares of the units (sorted by content
    key, every N-th from the K-th; K = 0..N-1), for job arrays; the missing units are reported and
    the next run without a shard (or after every shard has run) assembles the whole study from the
    cache. ``budget_s`` stops submitting new units after that many seconds of wall time (the units
    in flight finish); the outcome then names what is missing, and a rerun resumes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import multiprocessing
import os
import time
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

from ntk_bridge.errors import BridgeError, require

log = logging.getLogger(__name__)

FORMAT = 1                       # version of the unit file layout
SUFFIX = ".unit"
Parts = Mapping[str, bytes]


# ----------------------------------------------------------------------------- units and keys

def canonical_json(obj: Any) -> str:
    """Sorted keys, no whitespace, non-finite floats as strings: the text a content key hashes."""
    def norm(v: Any) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            return str(v)
        if isinstance(v, dict):
            return {str(k): norm(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [norm(x) for x in v]
        return v
    return json.dumps(norm(obj), sort_keys=True, separators=(",", ":"), default=str, allow_nan=False)


@dataclass(frozen=True, eq=False)
class Unit:
    """One unit of a study: ``name`` (file-name safe, for people), ``spec`` (JSON-able, everything the
    result depends on: hashed into the key) and ``arg`` (what the study's compute function gets)."""

    study: str
    name: str
    spec: Any
    arg: Any

    def __post_init__(self):
        require(self.name and all(c.isalnum() or c in "-_.=+" for c in self.name),
                f"unit name {self.name!r} must be a non-empty file-name-safe word (letters, digits, -_.=+)")

    @cached_property
    def key(self) -> str:
        """sha256 (hex) of the canonical JSON of ``{"study": study, "spec": spec}``."""
        return hashlib.sha256(canonical_json({"study": self.study, "spec": self.spec}).encode()).hexdigest()

    def file(self, cache: Path) -> Path:
        return Path(cache) / f"{self.name}.{self.key[:16]}{SUFFIX}"


# ----------------------------------------------------------------------------- unit files

def encode(unit: Unit, parts: Parts) -> bytes:
    """The unit file: a JSON header line (format, key, spec, [name, size, sha256] per part), then the parts."""
    require(isinstance(parts, Mapping) and all(isinstance(v, bytes) for v in parts.values()),
            f"unit {unit.name}: the compute function must return a mapping of part names to bytes")
    names = list(parts)
    header = {"format": FORMAT, "key": unit.key, "study": unit.study, "spec": unit.spec,
              "parts": [[n, len(parts[n]), hashlib.sha256(parts[n]).hexdigest()] for n in names]}
    return canonical_json(header).encode() + b"\n" + b"".join(parts[n] for n in names)


def decode(data: bytes, key: str) -> dict[str, bytes]:
    """The parts of a unit file, or ValueError saying why it is damaged."""
    head, sep, body = data.partition(b"\n")
    if not sep:
        raise ValueError("no header line")
    try:
        header = json.loads(head)
        entries = [(str(n), int(size), str(digest)) for n, size, digest in header["parts"]]
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"unreadable header ({type(err).__name__})") from None
    if header.get("format") != FORMAT or header.get("key") != key:
        raise ValueError("header of another unit or format")
    if sum(size for _, size, _ in entries) != len(body):
        raise ValueError(f"{len(body)} bytes of data where the header says {sum(s for _, s, _ in entries)}")
    parts, at = {}, 0
    for name, size, digest in entries:
        parts[name], at = body[at:at + size], at + size
        if hashlib.sha256(parts[name]).hexdigest() != digest:
            raise ValueError(f"part {name!r} fails its sha256")
    return parts


def read_unit(unit: Unit, cache: Path) -> dict[str, bytes] | None:
    """The unit's parts from the cache; None if absent. A damaged file raises ValueError (the reason)."""
    try:
        data = unit.file(cache).read_bytes()
    except FileNotFoundError:
        return None
    return decode(data, unit.key)


def _readable(unit: Unit, cache: Path) -> dict[str, bytes] | None:
    """:func:`read_unit`, a damaged file counting as absent."""
    try:
        return read_unit(unit, cache)
    except ValueError:
        return None


# ----------------------------------------------------------------------------- one unit, on a worker

COMPUTED, CACHED, BUSY = "computed", "cached", "busy"


def execute(compute: Callable[[Any], Parts], unit: Unit, cache: str, wait_s: float = 0.0, attempt: int = 0) -> str:
    """Compute ``unit`` into the cache under its claim (runs on a worker; module-level, picklable).

    Returns :data:`COMPUTED`, :data:`CACHED` (another runner's file was found once the claim was
    held) or :data:`BUSY` (another process holds the claim, after waiting ``wait_s`` seconds).
    ``attempt`` only makes a retry a distinct task for schedulers that deduplicate calls.
    """
    from ntk_bridge.io import atomic_write, claim

    folder = Path(cache)
    path = unit.file(folder)
    with claim(path.parent / f".{path.name}.lock", wait_s=wait_s) as held:
        if not held:
            return BUSY
        if _readable(unit, folder) is not None:
            return CACHED
        data = encode(unit, compute(unit.arg))
        atomic_write(path, lambda fh: fh.write(data), mode="wb")
        return COMPUTED


# ----------------------------------------------------------------------------- executors

class InProcess(Executor):
    """Runs each submitted call at once, in this process (the default executor)."""

    width = 1                              # calls the runner keeps in flight

    def submit(self, fn, /, *args, **kwargs) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as err:       # noqa: BLE001 -- handed to the caller through the future
            if isinstance(err, (KeyboardInterrupt, SystemExit)):
                raise
            future.set_exception(err)
        return future


def worker_environment(threads: int = 1) -> dict[str, str]:
    """Environment of one worker process so that N workers share the cores instead of each taking
    all of them: XLA's CPU client on ``threads`` threads (no Eigen thread pool, ``threads`` intra-op),
    and OpenMP / OpenBLAS / MKL on ``threads``."""
    xla = [f for f in os.environ.get("XLA_FLAGS", "").split()
           if not f.startswith(("--xla_cpu_multi_thread_eigen", "intra_op_parallelism_threads"))]
    xla += ["--xla_cpu_multi_thread_eigen=false", f"intra_op_parallelism_threads={threads}"]
    n = str(threads)
    return {"XLA_FLAGS": " ".join(xla), "OMP_NUM_THREADS": n, "OPENBLAS_NUM_THREADS": n, "MKL_NUM_THREADS": n}


def _init_worker(env: dict[str, str]) -> None:
    os.environ.update(env)


class LocalProcesses(Executor):
    """``n`` worker processes (spawned, :func:`worker_environment` each), one single-process pool per
    worker: a worker that dies fails only the call it was running, and the next submission to its
    slot starts a fresh process. Calls go to the slot with the fewest calls pending."""

    def __init__(self, n: int, threads: int = 1) -> None:
        require(isinstance(n, int) and n >= 1, f"`workers` must be an integer >= 1 (got {n!r})")
        self.width = n
        self._env = worker_environment(threads)
        self._slots = [self._pool() for _ in range(n)]
        self._pending: list[set[Future]] = [set() for _ in range(n)]

    def _pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_init_worker, initargs=(self._env,))

    def submit(self, fn, /, *args, **kwargs) -> Future:
        i = min(range(len(self._slots)), key=lambda j: len(self._pending[j]))
        try:
            future = self._slots[i].submit(fn, *args, **kwargs)
        except BrokenProcessPool:          # its worker died earlier: a fresh one
            self._slots[i].shutdown(wait=False)
            self._slots[i] = self._pool()
            future = self._slots[i].submit(fn, *args, **kwargs)
        self._pending[i].add(future)
        future.add_done_callback(self._pending[i].discard)
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        for slot in self._slots:
            slot.shutdown(wait=wait, cancel_futures=cancel_futures)


@contextlib.contextmanager
def dask_executor(address: str) -> Iterator[Executor]:
    """A ``concurrent.futures`` executor on the Dask cluster at ``address`` (needs the extra ``dask``)."""
    try:
        from distributed import Client
    except ImportError:
        raise BridgeError("`scheduler` needs Dask's distributed scheduler: pip install 'ntk_bridge[dask]'") from None
    try:
        client = Client(address, timeout=30)
    except (OSError, TimeoutError) as err:
        raise BridgeError(f"`scheduler` {address}: cannot reach the Dask scheduler ({err}); "
                          "check the address and that the scheduler is running") from None
    try:
        yield _DaskExecutor(client)
    finally:
        client.close()


class _DaskExecutor(Executor):
    """Dask's ``concurrent.futures`` executor, and how many calls to keep in flight: twice the
    cluster's worker threads now (at least 4; an adaptive cluster grows), so that a time budget
    stops new units instead of finding them all queued."""

    def __init__(self, client) -> None:
        self.client, self._ex = client, client.get_executor(pure=False)

    @property
    def width(self) -> int:
        return max(4, 2 * sum(self.client.nthreads().values()))

    def submit(self, fn, /, *args, **kwargs) -> Future:
        return self._ex.submit(fn, *args, **kwargs)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._ex.shutdown(wait=wait)


# ----------------------------------------------------------------------------- the runner

def parse_shard(text: str) -> tuple[int, int]:
    """``"K/N"`` as (K, N) with 0 <= K < N."""
    try:
        k, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise BridgeError(f"`shard` {text!r} must look like K/N (e.g. 0/4: the first of 4 shares)") from None
    require(n >= 1 and 0 <= k < n, f"`shard` {text}: need 0 <= K < N (K counts from 0, as SLURM array ids do)")
    return k, n


@dataclass(frozen=True)
class GridOptions:
    """Where and how much of a grid to run (defaults: everything, in this process)."""

    workers: int = 0                          # 0: in this process; N: N local worker processes
    scheduler: str | None = None              # a Dask scheduler address (instead of workers)
    shard: tuple[int, int] | None = None      # (K, N): only the K-th of N shares of the units
    budget_s: float | None = None             # stop submitting new units after this many seconds
    progress: bool = True
    retries: int = 1                          # more tries for a unit whose worker died
    wait_s: float = 3600.0                    # at the end: how long to wait for units other runners hold

    def __post_init__(self):
        require(isinstance(self.workers, int) and self.workers >= 0, f"`workers` must be >= 0 (got {self.workers!r})")
        require(self.scheduler is None or self.workers == 0, "give `workers` or `scheduler`, not both")
        if self.shard is not None:
            k, n = self.shard
            require(n >= 1 and 0 <= k < n, f"`shard` {k}/{n}: need 0 <= K < N")
        require(self.budget_s is None or self.budget_s > 0, f"`budget_s` must be > 0 (got {self.budget_s!r})")

    @contextlib.contextmanager
    def executor(self) -> Iterator[Executor]:
        if self.scheduler:
            with dask_executor(self.scheduler) as ex:
                yield ex
            return
        ex = LocalProcesses(self.workers) if self.workers else InProcess()
        try:
            yield ex
        finally:
            ex.shutdown(wait=True, cancel_futures=True)


@dataclass
class GridOutcome:
    """What a run of a grid left: every cached unit's parts (by key), and counts."""

    parts: dict[str, dict[str, bytes]] = field(default_factory=dict)
    missing: list[Unit] = field(default_factory=list)
    computed: int = 0
    seconds: float = 0.0

    @property
    def complete(self) -> bool:
        return not self.missing


def shard_of(units: Sequence[Unit], shard: tuple[int, int] | None) -> list[Unit]:
    """The units of shard (K, N): sorted by content key, every N-th from the K-th (in declared order)."""
    if shard is None:
        return list(units)
    k, n = shard
    mine = {u.key for i, u in enumerate(sorted(units, key=lambda u: u.key)) if i % n == k}
    return [u for u in units if u.key in mine]


def _scan(units: Sequence[Unit], cache: Path) -> tuple[dict[str, dict[str, bytes]], list[Unit]]:
    """(parts of the intact cached units, units to compute); each damaged file named in one log line."""
    found, todo = {}, []
    for unit in units:
        try:
            parts = read_unit(unit, cache)
        except ValueError as why:
            log.warning("cache file %s is damaged (%s): recomputing unit %s", unit.file(cache), why, unit.name)
            parts = None
        if parts is None:
            todo.append(unit)
        else:
            found[unit.key] = parts
    return found, todo


def run_grid(units: Sequence[Unit], compute: Callable[[Any], Parts], cache: str | os.PathLike,
             options: GridOptions = GridOptions(), desc: str = "units") -> GridOutcome:
    """Compute the units of ``units`` (this shard's) missing from ``cache``; return every unit's parts.

    ``compute`` must be a module-level function (it is pickled to worker processes). Raises the
    first exception a unit's computation raises (units finished before stay cached).
    """
    cache = Path(cache)
    keys = [u.key for u in units]
    require(len(set(keys)) == len(keys), "two units of the grid have the same content key (the same spec)")
    start = time.time()
    _, todo = _scan(shard_of(units, options.shard), cache)
    computed = 0
    if todo:
        try:
            cache.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise BridgeError(f"`cache` {cache}: cannot create it ({err.strerror}); choose a writable folder") from None
        computed = _compute_all(todo, compute, cache, options, desc, start)
    outcome = read_grid(units, cache)
    outcome.computed = computed
    outcome.seconds = time.time() - start
    log.info("%s: %d computed, %d of %d in the cache%s", desc, computed, len(outcome.parts), len(units),
             f"; {len(outcome.missing)} missing" if outcome.missing else "")
    return outcome


def read_grid(units: Sequence[Unit], cache: str | os.PathLike) -> GridOutcome:
    """Every intact cached unit's parts and the units missing, computing nothing."""
    parts, missing = _scan(units, Path(cache))
    return GridOutcome(parts=parts, missing=missing)


def _compute_all(todo: list[Unit], compute, cache: Path, options: GridOptions, desc: str, start: float) -> int:
    from tqdm import tqdm

    with options.executor() as ex, tqdm(total=len(todo), desc=desc, unit="unit", disable=not options.progress) as bar:
        loop = _Loop(ex, compute, cache, options, bar)
        computed = loop.run(todo, start)
        busy = loop.busy
        if busy:
            log.info("%s: waiting for %d unit(s) that another runner is computing", desc, len(busy))
            loop.wait_s = options.wait_s
            computed += loop.run(busy, None)
    return computed


class _Loop:
    """Submit units up to the executor's width, collect results, retry units whose worker died."""

    def __init__(self, ex: Executor, compute, cache: Path, options: GridOptions, bar) -> None:
        self.ex, self.compute, self.cache, self.options, self.bar = ex, compute, cache, options, bar
        self.busy: list[Unit] = []
        self.wait_s = 0.0

    def _submit(self, unit: Unit, attempt: int) -> Future:
        return self.ex.submit(execute, self.compute, unit, str(self.cache), self.wait_s, attempt)

    def run(self, units: list[Unit], start: float | None) -> int:
        queue = [(u, 0) for u in units]
        running: dict[Future, tuple[Unit, int]] = {}
        computed = 0
        while queue or running:
            over = start is not None and self.options.budget_s is not None and time.time() - start > self.options.budget_s
            while queue and len(running) < getattr(self.ex, "width", 1) and not over:
                unit, attempt = queue.pop(0)
                running[self._submit(unit, attempt)] = (unit, attempt)
            if not running:
                log.info("time budget of %.0f s spent: %d unit(s) not started", self.options.budget_s, len(queue))
                break
            done, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for future in done:
                unit, attempt = running.pop(future)
                status = self._status(future, unit, attempt, queue)
                computed += status == COMPUTED
                if status == BUSY:
                    self.busy.append(unit)
                elif status is not None:
                    self.bar.update(1)
        return computed

    def _status(self, future: Future, unit: Unit, attempt: int, queue: list) -> str | None:
        err = future.exception()
        if err is None:
            return future.result()
        if not _worker_died(err):
            raise err
        if attempt < self.options.retries:
            log.warning("a worker died while computing unit %s (%s): retrying it", unit.name, type(err).__name__)
            queue.append((unit, attempt + 1))
        else:
            log.warning("a worker died while computing unit %s, %d times: leaving it missing", unit.name, attempt + 1)
        return None


def _worker_died(err: BaseException) -> bool:
    """A worker process lost (not an error of the unit): local pools and Dask's KilledWorker."""
    return isinstance(err, BrokenProcessPool) or type(err).__name__ == "KilledWorker"


def shard_text(shard: tuple[int, int] | None, outcome: GridOutcome, total: int, cache: Path) -> str:
    """What a shard run (which writes no results) or an unfinished run leaves: how far the grid is."""
    if outcome.missing:
        return missing_text(outcome, total, cache)
    return (f"all {total} units are in the cache {cache}" + (f" after shard {shard[0]}/{shard[1]}" if shard else "")
            + "; run the same command without --shard to assemble the results")


def missing_text(outcome: GridOutcome, total: int, cache: Path) -> str:
    """One line for a run that left units missing (a shard, a spent budget, a dead worker)."""
    return (f"{len(outcome.missing)} of {total} units are not in the cache {cache} yet ({outcome.computed} computed "
            "in this run); run the remaining shards, or rerun without --shard, to finish and assemble the results")
