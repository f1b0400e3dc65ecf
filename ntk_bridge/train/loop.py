"""The training loop: batches, schedules, validation, early stopping, checkpoints, run folders.

Reproducibility and exact resume: the images of step ``s`` come from
``numpy.random.default_rng([seed, 7, s])`` and its PRNG key (augmentation, DropBlock) is
``fold_in(PRNGKey(seed), s)``; validation episodes are fixed by the seed (or, with ``val_fresh``,
drawn from seed and step at each validation). A checkpoint (orbax,
written to a temporary folder and renamed, so a kill at any moment leaves the previous one
intact) holds the train state and the loop's own state (schedule, early stopping, running
metrics, history, timing), so a resumed run continues exactly as if never interrupted.

Run folder::

    config.json      the full TrainConfig (a resume with an incompatible config is refused)
    checkpoints/     latest train state every ``checkpoint_every`` steps (orbax, 2 kept)
    best/            weights with the best validation accuracy so far (orbax, 1 kept)
    metrics.csv      one row per validation: step, lr, train loss/acc, val acc +- CI per head
    steps.csv        one row per training step: step, loss, acc, lr, images_seen (train/steplog.py);
                     tb/ the same as TensorBoard event files when tensorboardX is installed
    timing.csv       per validation: training wall / CPU / compile seconds so far
    summary.json     final: test accuracy with its protocol, best step, wall time, images/s,
                     accelerator-hours, device, stop reason
"""

from __future__ import annotations

import functools
import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ntk_bridge.errors import BridgeError
from ntk_bridge.interrupts import Interrupted, StopRequest
from ntk_bridge.io import WriteError, output_lock, write_csv, write_json
from ntk_bridge.train.checkpoints import (
    DamagedCheckpoint,
    apply_tree,
    check_latest_checkpoint,
    has_checkpoint,
    managers,
    restore,
    resume_point,
    save,
    state_tree,
)
from ntk_bridge.train.config import TrainConfig, incompatible_fields, load_config

log = logging.getLogger(__name__)

_TRAIN_STREAM, _VAL_STREAM, _TEST_STREAM = 7, 11, 13


# ---------------------------------------------------------------- data

@dataclass
class RunData:
    train: Any
    val: Any
    test: Any
    mean: tuple
    std: tuple


def data_root(config: TrainConfig) -> Any:
    from ntk_bridge.data import default_data_root, default_omniglot_root
    from ntk_bridge.data.base import check_dataset
    if config.root:
        return config.root
    name = check_dataset(config.dataset)
    return default_omniglot_root() if name == "omniglot" else default_data_root() / name


def load_data(config: TrainConfig, splits=("train", "val", "test")) -> RunData:
    """Load the splits named in ``splits`` (others None) with ``config.dataset_options``."""
    from ntk_bridge.data import dataset_stats, load_split
    root = data_root(config)
    loaded = {s: load_split(config.dataset, root, s, **config.dataset_options) if s in splits else None
              for s in ("train", "val", "test")}
    mean, std = dataset_stats(config.dataset, root, **config.dataset_options)
    return RunData(loaded["train"], loaded["val"], loaded["test"], tuple(mean), tuple(std))


def batch_indices(config: TrainConfig, labels: np.ndarray, step: int, episodic: bool) -> dict:
    """Image indices and labels of training step ``step`` (a pure function of seed and step)."""
    from ntk_bridge.data.sampler import sample_episodes, sample_task_batch
    rng = np.random.default_rng([config.seed, _TRAIN_STREAM, step])
    if episodic:
        e = sample_episodes(labels, config.n_way, config.shots, config.train_query, config.meta_batch, rng)
        return {"support_idx": e.support_idx, "support_y": e.support_labels, "query_idx": e.query_idx,
                "query_y": e.query_labels, "classes": e.classes}
    t = sample_task_batch(labels, config.n_way, config.n_per_class, config.meta_batch, rng)
    return {"idx": t.idx, "y": t.labels, "classes": t.classes}


def make_batch_fn(config: TrainConfig, mean, std):
    """A jitted ``(key, uint8 images (T, M, H, W, C)) -> float32`` augmenting (or only
    normalising, if ``config.augment`` is off) every image."""
    import jax

    from ntk_bridge.data.augment import augment_batch, normalize

    def prepare(key, images):
        flat = images.reshape((-1,) + images.shape[2:])
        if config.augment:
            out = augment_batch(key, flat, pad=config.pad, flip=config.flip, jitter=config.jitter,
                                mean=mean, std=std)
        else:
            out = normalize(flat, mean, std)
        return out.reshape(images.shape[:2] + out.shape[1:])

    return jax.jit(prepare)


def build_batch(config, split, idx: dict, key, prepare, episodic: bool, place=None) -> dict:
    """Gather the images of ``idx`` (host), move them to the device(s) and prepare them.
    ``place(host array) -> device array`` (default ``jnp.asarray``; the data-parallel step
    splits the task axis over the devices: ``train.parallel.place``)."""
    import jax
    import jax.numpy as jnp
    put = place or jnp.asarray
    i32 = lambda a: put(np.asarray(a, np.int32))  # noqa: E731
    if episodic:
        ks, kq = jax.random.split(key)
        return {"support_x": prepare(ks, put(split.images[idx["support_idx"]])),
                "support_y": i32(idx["support_y"]),
                "query_x": prepare(kq, put(split.images[idx["query_idx"]])),
                "query_y": i32(idx["query_y"]), "classes": i32(idx["classes"])}
    return {"x": prepare(key, put(split.images[idx["idx"]])), "y": i32(idx["y"]), "classes": i32(idx["classes"])}


def images_per_step(config: TrainConfig, episodic: bool) -> int:
    per_task = config.n_way * (config.shots + config.train_query if episodic else config.n_per_class)
    return config.meta_batch * per_task


class _NoStepLog:
    """The step log of a process that writes nothing (:func:`ntk_bridge.train.parallel.is_writer`)."""

    def add(self, *row) -> None:
        pass

    def close(self, history) -> None:
        pass


def _open_steplog(run_dir: Path, step: int):
    """The per-step log (steps.csv, TensorBoard events if tensorboardX is installed), rows after ``step`` dropped."""
    from ntk_bridge.train.steplog import StepLog
    return StepLog(run_dir).open(step)


# ---------------------------------------------------------------- schedule / early stopping

def learning_rate(config: TrainConfig, step: int, scale: float) -> float:
    """Learning rate of step ``step``: cosine decay to 0 over ``max_steps``, or the base rate
    times the plateau scale (``plateau_factor`` per ``plateau_patience`` bad validations)."""
    if config.schedule == "cosine":
        return config.lr * 0.5 * (1.0 + math.cos(math.pi * min(step, config.max_steps) / config.max_steps))
    return config.lr * scale


def update_on_validation(config: TrainConfig, loop: LoopState, val_acc: float, step: int) -> bool:
    """Update best / plateau / early-stopping counters in ``loop``; True if this is a new best."""
    improved = val_acc > loop.best_val
    if improved:
        loop.new_best(val_acc, step)
        return True
    loop.bad_evals += 1
    loop.stale_evals += 1
    if config.schedule == "plateau" and loop.bad_evals >= config.plateau_patience:
        loop.lr_scale *= config.plateau_factor
        loop.bad_evals = 0
    if config.early_stop_patience and loop.stale_evals >= config.early_stop_patience:
        loop.stop_reason = (f"early stop: no validation improvement in {loop.stale_evals} "
                               f"evaluations (best {loop.best_val:.2f}% at step {loop.best_step})")
    return False


@dataclass
class LoopState:
    """What the step loop carries between steps and saves with every checkpoint (as JSON).

    best_val / best_step: the best validation accuracy (%) so far and its step (-1: none yet);
    bad_evals (plateau) and stale_evals (early stopping): validations since the last better one;
    lr_scale: the plateau schedule's factor on ``lr``; run_loss / run_acc / run_count: sums over
    the steps since the last validation; history / timing: one row per validation (metrics and
    seconds so far); train_s, wall_s, cpu_s, compile_s: seconds of training steps (wall), of the
    whole loop (wall), of process CPU, and of compilation; images_seen; stop_reason ("" while
    training on).
    """

    best_val: float = -1.0
    best_step: int = -1
    bad_evals: int = 0
    stale_evals: int = 0
    lr_scale: float = 1.0
    run_loss: float = 0.0
    run_acc: float = 0.0
    run_count: int = 0
    history: list = field(default_factory=list)
    train_s: float = 0.0
    wall_s: float = 0.0
    cpu_s: float = 0.0
    compile_s: float = 0.0
    images_seen: int = 0
    stop_reason: str = ""
    timing: list = field(default_factory=list)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, saved: dict) -> "LoopState":
        """The state of a checkpoint's JSON (a field it lacks keeps its default)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in saved.items() if k in names})

    def new_best(self, val_acc: float, step: int) -> None:
        self.best_val, self.best_step, self.bad_evals, self.stale_evals = val_acc, step, 0, 0

    def reset_running(self) -> None:
        self.run_loss, self.run_acc, self.run_count = 0.0, 0.0, 0


def new_loop_state() -> LoopState:
    return LoopState()


# ---------------------------------------------------------------- run folder

def trained_anything(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds a checkpoint or a validation (a start that failed before its
    first one left only config.json, and a retry may reuse the folder)."""
    return (run_dir / "metrics.json").exists() or any(
        (run_dir / sub).is_dir() and any((run_dir / sub).iterdir()) for sub in ("checkpoints", "best"))


def prepare_run_dir(config: TrainConfig, run_dir: Path) -> None:
    """Create ``run_dir`` with config.json, or check that an existing one is compatible (a
    folder in which nothing was trained yet takes the new config)."""
    from ntk_bridge.train.paths import check_output_dir
    check_output_dir(run_dir, "`run_dir`")
    path = run_dir / "config.json"
    if path.exists():
        try:
            saved = json.loads(path.read_text())
        except (ValueError, RecursionError):       # not JSON, not UTF-8, nested too deeply
            saved = None
        if saved is None and trained_anything(run_dir):
            raise BridgeError(f"{path} is not valid JSON; repair it or use a new `run_dir`")
        diff = incompatible_fields(saved, config) if saved is not None else []
        if diff and trained_anything(run_dir):
            shown = ", ".join(f"{k}: {saved.get(k)!r} there vs {config.to_dict().get(k)!r} now" for k in diff[:4])
            raise BridgeError(f"run folder {run_dir} was made with a different config ({shown}); "
                              f"use a new `run_dir` or the same settings to resume")
    elif run_dir.exists() and any(run_dir.iterdir()):
        raise BridgeError(f"run folder {run_dir} is not empty and has no config.json; "
                          f"pick a new `run_dir`")
    write_json(path, config.to_dict())


def load_run_config(run_dir: Path) -> TrainConfig:
    path = Path(run_dir) / "config.json"
    if not path.exists():
        raise BridgeError(f"{run_dir} is not a run folder (no config.json); give the folder "
                          f"that `ntk-bridge train` wrote")
    return load_config(path)                      # damaged JSON, a wrong field: one line naming the file


def device_info() -> dict:
    import jax
    devs = jax.devices()
    return {"platform": devs[0].platform, "device_kind": devs[0].device_kind, "n_devices": len(devs),
            "jax": jax.__version__}


def accelerator_hours(seconds: float, info: dict) -> float:
    """Device-hours: wall hours times the number of devices on GPU/TPU; 0 on CPU."""
    return 0.0 if info["platform"] == "cpu" else seconds / 3600.0 * info["n_devices"]


# ---------------------------------------------------------------- the loop

def init_state(config: TrainConfig, data: RunData):
    """(algorithm, model, initial TrainState, prepare fn) for ``config`` on ``data``."""
    import jax

    from ntk_bridge.train.algorithms import get_algorithm
    from ntk_bridge.train.models import build_backbone

    algorithm = get_algorithm(config.algorithm)
    model = build_backbone(config.backbone, channels=config.channels, drop_rate=config.drop_rate,
                           block_size=config.block_size, dropout=config.dropout)
    prepare = make_batch_fn(config, data.mean, data.std)
    k_init, _ = jax.random.split(jax.random.PRNGKey(config.seed))
    idx = batch_indices(config, data.train.labels, 0, algorithm.episodic)
    sample = build_batch(config, data.train, idx, k_init, prepare, algorithm.episodic)
    image = sample["x"][0, :1] if "x" in sample else sample["support_x"][0, :1]
    dim = jax.eval_shape(lambda x: model.apply(model.init(k_init, x, train=False), x), image).shape[-1]
    if dim == 0:
        raise BridgeError(f"images of size {image.shape[1:3]} are too small for {config.backbone} "
                          f"(four 2x2 poolings leave no pixels); use images of at least 16x16")
    state = algorithm.init(k_init, model, sample, config, data.train.num_classes)
    return algorithm, model, state, prepare


def evaluate_state(config, algorithm, state, data, split: str, episodes: int | None = None,
                   query: int | None = None, shots: int | None = None, head: str | None = None,
                   n_way: int | None = None, step: int | None = None):
    """Evaluate ``state`` on the fixed episodes of ``split`` (val or test); ``n_way`` other
    than the run's needs a frozen-feature head (logreg / proto / ridge, or MTL's own). With
    ``config.val_fresh`` the validation at training step ``step`` draws its own episodes."""
    from ntk_bridge.train.evaluation import evaluate
    stream = _VAL_STREAM if split == "val" else _TEST_STREAM
    fresh = [step] if split == "val" and config.val_fresh and step is not None else []
    s = getattr(data, split)
    return evaluate(
        state, s, data.mean, data.std, n_way=n_way or config.n_way, shots=shots or config.shots,
        query=query or (config.val_query if split == "val" else config.test_query),
        episodes=episodes or (config.val_episodes if split == "val" else config.test_episodes),
        seed=np.random.default_rng([config.seed, stream, *fresh]),
        head=head or ("logreg" if split == "val" and config.test_head == "own" else config.test_head),
        normalize_features=config.normalize_test_features, logreg_c=config.logreg_c,
        logreg_iters=config.logreg_iters, ridge_lambda=config.ridge_lambda, algorithm=algorithm)


def train(config: TrainConfig, run_dir: str | Path, *, callback: Callable[[int, dict], None] | None = None,
          data: RunData | None = None, evaluate_test: bool = True) -> dict:
    """Train (or resume) the run in ``run_dir``; returns the summary dict (also summary.json).

    Everything is checked before the run folder is touched (config, memory estimate, data,
    split sizes, model construction), so a failed start leaves no folder behind.
    ``callback(step, loop_state)`` is called after every step (after any checkpoint); an
    exception from it stops the run as a kill would. Runs in JAX's default float32: nothing in
    ntk_bridge switches the process to float64 (the kernel side asks for it only inside its own
    calls, :func:`ntk_bridge.engine.precision.float64`).
    """
    return _train(config, run_dir, callback=callback, data=data, evaluate_test=evaluate_test)


def check_splits(config: TrainConfig, data: RunData) -> None:
    """Each split has ``n_way`` classes with enough images for its tasks, else one line that
    names the split (before any training step)."""
    needs = [("train", data.train, config.n_per_class, "images per training class (MTL: images_per_class, "
              "else shots + train_query)"),
             ("val", data.val, config.shots + config.val_query, "shots + val_query"),
             ("test", data.test, config.shots + config.test_query, "shots + test_query")]
    for label, split, per_class, what in needs:
        if split is None:
            continue
        _, counts = np.unique(split.labels, return_counts=True)
        if counts.size < config.n_way:
            hint = " or the `rotations` option (4x the classes)" if config.dataset == "omniglot" else ""
            raise BridgeError(f"the {label} split ({split.name}) has {counts.size} classes but "
                              f"n_way={config.n_way} needs at least {config.n_way}; lower n_way{hint}")
        if counts.min() < per_class:
            raise BridgeError(f"the {label} split ({split.name}) has classes with only {counts.min()} "
                              f"images but {what} = {per_class} are needed; lower the shots/queries (MTL: `images_per_class`)")


def start_run(config: TrainConfig, data: RunData | None, quiet: bool = False):
    """Every check of a start, then the model: (data, algorithm, state, prepare). Writes nothing."""
    from ntk_bridge.train.algorithms import get_algorithm
    from ntk_bridge.train.cost import check_memory, evaluation_warning
    from ntk_bridge.train.parallel import check_split, data_parallel
    get_algorithm(config.algorithm)  # bad input fails before anything is written
    check_memory(config)
    check_split(config.meta_batch, data_parallel(config.devices).n_devices)
    if data is None:
        data = load_data(config)
    check_splits(config, data)
    warning = evaluation_warning(config)
    if warning and not quiet:
        log.warning(warning)
    algorithm, _, state, prepare = init_state(config, data)
    return data, algorithm, state, prepare


def _train(config: TrainConfig, run_dir: str | Path, *, callback: Callable[[int, dict], None] | None,
           data: RunData | None, evaluate_test: bool) -> dict:
    from ntk_bridge.train.parallel import is_writer
    from ntk_bridge.train.paths import check_output_dir
    started = time.perf_counter()                 # the summary's session times count from here
    run_dir = check_output_dir(Path(run_dir), "`run_dir`")
    data, algorithm, state, prepare = start_run(config, data)
    fresh = not run_dir.exists()
    if not is_writer():        # several processes: process 0 alone locks and writes the run folder
        return _train_in(config, run_dir, callback, data, evaluate_test, algorithm, state, prepare, started)
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    try:
        with output_lock(run_dir.absolute(), "`run_dir`", run_dir):   # a second run on the folder is refused
            return _train_in(config, run_dir, callback, data, evaluate_test, algorithm, state, prepare, started)
    except WriteError:
        if fresh and not has_checkpoint(run_dir):  # a full disk before the first checkpoint: no folder left
            import shutil
            shutil.rmtree(run_dir, ignore_errors=True)
        raise


def _train_in(config, run_dir, callback, data, evaluate_test, algorithm, state, prepare, started) -> dict:
    """:func:`_train` once the start checks passed: the run folder, resume, steps, test evaluation.

    Session times (this call, from ``started``, seconds): ``startup_s`` (checks, data, model, resume),
    ``loop_s`` (the step loop: ``steps_s`` in steps, ``compile_s_session`` compiling, the rest
    validating and checkpointing), ``test_s`` (the test episodes) and ``session_wall_s`` (all of it,
    through writing summary.json). ``wall_s`` / ``train_s`` stay the loop's totals over every session.
    On a process other than 0 (:func:`parallel.is_writer`) nothing is written: ``latest`` and ``best``
    are None, the resume point is process 0's (broadcast) and the test evaluation is process 0's."""
    from ntk_bridge.train import parallel
    writer = parallel.is_writer()
    latest = best = None
    if writer:
        check_latest_checkpoint(run_dir)
        prepare_run_dir(config, run_dir)
        latest, best = managers(run_dir)
    loop = new_loop_state()
    point = resume_point(latest, run_dir, state) if writer and latest.latest_step() is not None else None
    saved = parallel.json_from_writer(point[1] if point else None)
    if saved is not None:
        tree = parallel.from_writer(point[0] if point else state_tree(state))
        state, loop = apply_tree(state, tree), LoopState.from_json(saved)
        if loop.stop_reason.startswith("time budget") and not (
                config.time_budget_s and loop.train_s >= config.time_budget_s):
            loop.stop_reason = ""  # resumed with a larger (or no) budget: train on
    start = int(state.step)
    if start and config.progress:
        log.info(f"resuming {run_dir} from step {start} (its latest checkpoint)")
    info = device_info()
    before = (loop.wall_s, loop.train_s, loop.compile_s)
    t_loop = time.perf_counter()
    state, step = _steps(config, run_dir, algorithm, state, data, prepare, loop, (latest, best), callback)
    session = {"startup_s": t_loop - started, "loop_s": loop.wall_s - before[0], "steps_s": loop.train_s - before[1],
               "compile_s_session": loop.compile_s - before[2]}
    if not loop.stop_reason:
        loop.stop_reason = f"reached max_steps={config.max_steps}"
    summary = {
        "run_dir": str(run_dir), "steps": step, "resumed_from": start, "stop_reason": loop.stop_reason,
        "best_step": loop.best_step, "best_val_acc": loop.best_val,
        "wall_s": loop.wall_s, "train_s": loop.train_s, "cpu_s": loop.cpu_s,
        "compile_s": loop.compile_s, "images_seen": loop.images_seen,
        "images_per_s": loop.images_seen / max(loop.train_s, 1e-9),
        "accelerator_hours": accelerator_hours(loop.wall_s, info), **info, **session,
    }
    t_test = time.perf_counter()
    if evaluate_test and writer:
        final = restore_for_eval(run_dir, state, "best")
        results = {h: evaluate_state(config, algorithm, final, data, "test", head=h)[0]
                   for h in dict.fromkeys((config.test_head,) + tuple(config.val_heads))}
        summary["test"] = results[config.test_head].to_dict()
        summary["test_text"] = results[config.test_head].describe()
        summary["test_heads"] = {h: r.to_dict() for h, r in results.items()}
    summary["test_s"] = time.perf_counter() - t_test
    summary["session_wall_s"] = time.perf_counter() - started
    if writer:
        write_json(run_dir / "summary.json", summary)
    parallel.barrier("ntk_bridge: run folder written")
    return summary


def _steps(config, run_dir, algorithm, state, data, prepare, loop, managers, callback):
    """The step loop from ``state.step`` to max_steps / early stop / time budget; returns
    (state, step). Times: ``train_s`` (wall) and ``cpu_s`` (process CPU) of the steps, the
    step function compiled ahead of time on the first step (``compile_s``, not in train_s)."""
    import jax
    from tqdm.auto import tqdm

    from ntk_bridge.train import parallel
    from ntk_bridge.train.algorithms import set_learning_rate

    latest, best = managers
    step = int(state.step)
    dp = parallel.data_parallel(config.devices)  # the batch split over the devices, state replicated
    step_fn = None
    _, k_train = jax.random.split(jax.random.PRNGKey(config.seed))
    per_step = images_per_step(config, algorithm.episodic)
    steplog = _open_steplog(run_dir, step) if latest is not None else _NoStepLog()
    bar = tqdm(total=config.max_steps, initial=step, disable=not config.progress, dynamic_ncols=True,
               desc=f"{config.algorithm} {config.dataset} {config.shots}-shot")
    t_wall, wall_before = time.perf_counter(), loop.wall_s
    t_saved = time.perf_counter()
    stop = StopRequest().__enter__()  # Ctrl-C / SIGTERM: checkpoint at the end of the step, then stop
    try:
        while step < config.max_steps and not loop.stop_reason:
            t0, c0 = time.perf_counter(), time.process_time()
            lr = learning_rate(config, step, loop.lr_scale)
            state = parallel.replicate(dp, set_learning_rate(state, lr))
            k_batch, k_step = parallel.replicate(dp, tuple(jax.random.split(jax.random.fold_in(k_train, step))))
            idx = batch_indices(config, data.train.labels, step, algorithm.episodic)
            batch = parallel.shard_batch(dp, build_batch(config, data.train, idx, k_batch, prepare,
                                                         algorithm.episodic, lambda a: parallel.place(dp, a)))
            if step_fn is None:
                t1, c1 = time.perf_counter(), time.process_time()
                step_fn = parallel.compile_step(dp, algorithm.train_step, state, batch, k_step)
                compile_s = time.perf_counter() - t1
                loop.compile_s += compile_s
                t0, c0 = t0 + compile_s, c0 + time.process_time() - c1
            state, metrics = step_fn(state, batch, k_step)
            loss, acc = float(metrics["loss"]), float(metrics["acc"])
            step += 1
            _check_finite(config, loss, lr, step, run_dir, latest, _params_finite(state.params))
            loop.run_loss += loss
            loop.run_acc += acc
            loop.run_count += 1
            loop.images_seen += per_step
            loop.train_s += time.perf_counter() - t0
            loop.cpu_s += time.process_time() - c0
            steplog.add(step, loss, acc, lr, loop.images_seen, loop.history)
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.3f}", acc=f"{100 * acc:.1f}",
                            val=f"{loop.best_val:.1f}" if loop.best_val >= 0 else "-")
            if step % config.eval_every == 0 or step == config.max_steps:
                _validate(config, run_dir, algorithm, parallel.local_view(state), data, loop, step, lr, best)
                loop.wall_s = wall_before + time.perf_counter() - t_wall
            due = time.perf_counter() - t_saved >= 60 * config.checkpoint_minutes > 0
            if (step % config.checkpoint_every == 0 or step == config.max_steps or loop.stop_reason or due
                    or stop.requested):
                loop.wall_s = wall_before + time.perf_counter() - t_wall
                if latest is not None:
                    save(latest, step, state_tree(state), loop)
                t_saved = time.perf_counter()
            if callback is not None:
                callback(step, loop)
            if stop.requested:
                raise Interrupted(stop.signum, f"checkpoint of step {step} saved in {run_dir / 'checkpoints'}; "
                                               "rerun the same command to resume")
        if loop.stop_reason:  # stopped early: the bar ends full at the step it stopped
            bar.total = step
            bar.refresh()
    finally:
        stop.__exit__(None, None, None)
        bar.close()
        steplog.close(loop.history)
    loop.wall_s = wall_before + time.perf_counter() - t_wall
    return parallel.local_view(state), step


@functools.lru_cache(maxsize=None)
def _finite_reduction():
    """A jitted ``tree -> all entries finite`` (one dispatch per step)."""
    import jax
    import jax.numpy as jnp
    return jax.jit(lambda tree: jnp.all(jnp.stack([jnp.isfinite(x).all() for x in jax.tree_util.tree_leaves(tree)])))


def _params_finite(params) -> bool:
    """Whether every parameter is finite (False after a step with a NaN / infinite gradient)."""
    import jax
    return bool(_finite_reduction()(params)) if jax.tree_util.tree_leaves(params) else True


def _check_finite(config: TrainConfig, loss: float, lr: float, step: int, run_dir: Path | None = None,
                  latest=None, params_ok: bool = True) -> None:
    """Stop the run (one BridgeError line naming the step and the checkpoint kept) on a non-finite
    loss or parameters (a non-finite gradient); nothing of this step is saved."""
    if math.isfinite(loss) and params_ok:
        return
    what = f"training loss became {loss}" if not math.isfinite(loss) else \
        "a gradient was not finite (the parameters became NaN or infinite)"
    kept = latest.latest_step() if latest is not None else None
    keep = (f"the last good checkpoint (step {kept}) is kept in {Path(run_dir) / 'checkpoints'}" if kept is not None
            else "no checkpoint had been written")
    raise BridgeError(
        f"{what} at step {step} (lr {lr:g}, {config.optimizer}, {config.backbone}); {keep}; likely cause: "
        f"a learning rate too high for this setting (or unnormalised inputs); start a new run folder with a lower lr")


def _validate(config, run_dir, algorithm, state, data, loop, step: int, lr: float, best) -> None:
    """Evaluate every head of ``config.heads`` on the validation episodes, update the best /
    plateau / early-stop / time-budget state, append the history row, save the best weights."""
    results = [evaluate_state(config, algorithm, state, data, "val", head=h, step=step)[0] for h in config.heads]
    res = results[0]
    new_best = update_on_validation(config, loop, res.mean, step)
    if config.time_budget_s and loop.train_s >= config.time_budget_s and not loop.stop_reason:
        loop.stop_reason = (f"time budget: {loop.train_s:.1f} s of training steps >= "
                               f"time_budget_s={config.time_budget_s:g}")
    row = {"step": step, "lr": lr, "train_loss": loop.run_loss / max(loop.run_count, 1),
           "train_acc": 100 * loop.run_acc / max(loop.run_count, 1),
           "val_acc": res.mean, "val_ci95": res.ci95, "val_episodes": res.episodes,
           "val_query": res.query, "shots": res.shots, "val_head": res.head,
           "best_val": loop.best_val, "images_per_s": loop.images_seen / max(loop.train_s, 1e-9)}
    if config.val_heads:
        for h, r in zip(config.heads, results):
            row[f"val_{h}"], row[f"val_{h}_ci95"] = r.mean, r.ci95
    loop.history.append(row)
    loop.timing.append({"step": step, "train_s": loop.train_s, "cpu_s": loop.cpu_s,
                           "compile_s": loop.compile_s})
    loop.reset_running()
    if best is None:                   # a process that does not write (parallel.is_writer)
        return
    if new_best:
        save(best, step, {"params": state.params, "batch_stats": state.batch_stats}, None)
    _write_metrics(run_dir, loop)


def _write_metrics(run_dir: Path, loop: LoopState) -> None:
    """metrics.csv/json (a pure function of config and seed) and timing.csv (seconds so far at
    each validation: training wall, process CPU, compilation; these vary from run to run)."""
    import pandas as pd
    write_csv(run_dir / "metrics.csv", pd.DataFrame(loop.history))
    write_json(run_dir / "metrics.json", loop.history)
    write_csv(run_dir / "timing.csv", pd.DataFrame(loop.timing))


def restore_for_eval(run_dir: Path, state, which: str = "best"):
    """``state`` with the weights of the best (or latest) checkpoint of ``run_dir``."""
    latest, best = managers(Path(run_dir))
    manager = best if which == "best" and best.latest_step() is not None else latest
    if manager.latest_step() is None:
        raise BridgeError(f"run folder {run_dir} has no checkpoint yet; train it first "
                          f"(ntk-bridge train ... --run-dir {run_dir})")
    try:
        if manager is best:
            tree, _ = restore(best, best.latest_step(), {"params": state.params, "batch_stats": state.batch_stats},
                               with_loop=False)
            return state.replace(params=tree["params"], batch_stats=tree["batch_stats"])
        tree, _ = restore(latest, latest.latest_step(), state_tree(state), with_loop=False)
    except DamagedCheckpoint as err:
        other = "latest" if manager is best else "best"
        raise BridgeError(f"the {'best' if manager is best else 'latest'} {err}; evaluate the {other} one "
                          f"(ntk-bridge evaluate {run_dir} --checkpoint {other}) or train again into a new --run-dir") from None
    return apply_tree(state, tree)
