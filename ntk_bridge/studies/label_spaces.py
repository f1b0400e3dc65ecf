"""Label spaces for the closed-form kernel predictors on real classification episodes.

A label space gives every class slot of every episode a code vector in R^D. A task regresses
its support and query points onto the codes of their classes; a test query with output f is
classified by the nearest code among its own episode's n_way classes,

    argmin_j |f - c_j|^2  =  argmax_j  f . c_j - |c_j|^2 / 2,

and the predictors' outputs are stored as the projections ``f . c_j`` (n_q, n_way) with the
offsets ``-|c_j|^2 / 2`` beside them. Every predictor is linear in the targets and treats the D
output coordinates alike (the kernels are Theta (x) I_D), which is what makes the identities below
exact.

``random-slots`` (the usual few-shot protocol): D = n_way, slot j of every episode has code
    e_j - 1/n_way whatever its class, so slot j of two tasks are unrelated classes. The projection
    f . c_j equals the output f_j (outputs sum to 0 over slots because the targets do).
``global`` (the head-bank analogue): one output per base class, C = all classes of the training
    split. A base class c has code e_c - mu with mu = 1/C on every base coordinate (docs/theory.md 1's
    centring over C classes). A test class that is a base class keeps its own row; a new class has
    no row in the bank, so, as a fresh head at test time, slot j of a test episode gets a fresh
    coordinate: code e_{C+j} - mu. Consequence (exact): on held-out classes the training tasks'
    targets are 0 on the fresh coordinates, so MTL-B and ANIL decide as head-only and MAML as
    head-only with Theta; the kernel regime cannot carry a head bank over to new classes (its
    features do not move). Base classes that occur in no episode are merged into one "rest"
    coordinate with target -sqrt(m)/C (m of them): exact, since the outputs on those m coordinates
    are all equal.
``encoding``: a network trained on the training classes (``ntk-bridge train``) gives each base
    class an encoding (the mean of its images' features, or its head-bank row); codes are the
    encodings minus their mean over the C base classes. A new test class is encoded by the mean
    feature of its episode's support images (its prototype), minus the same mean; a test query is
    classified by the nearest code among its episode's classes. The codes mean the same thing in
    every task, so a function shared by the training tasks can transfer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ntk_bridge.errors import require

LABEL_SPACES = ("random-slots", "global", "encoding")


@dataclass(frozen=True)
class LabelCodes:
    """Codes of every slot: train (E_tr, n_way, D), test (E_te, n_way, D); ``name`` of the space."""

    name: str
    train: np.ndarray
    test: np.ndarray

    def __post_init__(self):
        require(self.train.ndim == 3 and self.test.ndim == 3 and self.train.shape[1:] == self.test.shape[1:],
                f"label codes must be (E, n_way, D) with the same (n_way, D) for training and test; got "
                f"{self.train.shape} and {self.test.shape}")
        require(bool(np.all(np.isfinite(self.train)) and np.all(np.isfinite(self.test))),
                f"{self.name} label codes contain NaN or inf")

    @property
    def dim(self) -> int:
        return self.train.shape[2]

    def offsets(self) -> np.ndarray:
        """-|c_j|^2 / 2 per test episode and slot, (E_te, n_way): added to f . c_j before the argmax."""
        return -0.5 * np.sum(self.test ** 2, axis=-1)


def random_slots(n_train: int, n_test: int, n_way: int) -> LabelCodes:
    """Slot j -> e_j - 1/n_way in every episode (D = n_way)."""
    code = np.eye(n_way) - 1.0 / n_way
    return LabelCodes("random-slots", np.broadcast_to(code, (n_train, n_way, n_way)).copy(),
                      np.broadcast_to(code, (n_test, n_way, n_way)).copy())


def global_targets(train_classes: np.ndarray, test_classes: np.ndarray, base_classes: Sequence[str]) -> LabelCodes:
    """Head-bank codes (see the module docstring).

    train_classes (E_tr, n_way), test_classes (E_te, n_way): class names per slot;
    base_classes: the C names of the training split. Coordinates: the base classes that occur in
    an episode (sorted), one "rest" coordinate for the m others if m > 0, then n_way fresh ones.
    """
    base = list(base_classes)
    n_base = len(base)
    base_set = set(base)
    train_classes, test_classes = np.asarray(train_classes), np.asarray(test_classes)
    missing = sorted(set(train_classes.ravel()) - base_set)
    require(not missing, f"training episodes use classes outside the base classes: {', '.join(missing[:3])}")
    used = sorted(set(train_classes.ravel()) | (set(test_classes.ravel()) & base_set))
    col = {c: i for i, c in enumerate(used)}
    rest = n_base - len(used)
    n_way = train_classes.shape[1]
    dim = len(used) + (1 if rest else 0) + n_way
    mu = np.zeros(dim)
    mu[:len(used)] = 1.0 / n_base
    if rest:
        mu[len(used)] = np.sqrt(rest) / n_base
    fresh0 = dim - n_way

    def codes(classes, allow_new):
        out = np.tile(-mu, classes.shape + (1,))
        for e, row in enumerate(classes):
            for j, c in enumerate(row):
                if c in col:
                    out[e, j, col[c]] += 1.0
                else:
                    require(allow_new, f"class {c} is not a base class")
                    out[e, j, fresh0 + j] += 1.0
        return out

    return LabelCodes("global", codes(train_classes, False), codes(test_classes, True))


def encoding_codes(table: np.ndarray, base_classes: Sequence[str], train_classes: np.ndarray,
                   test_classes: np.ndarray, test_prototypes: np.ndarray, name: str = "encoding") -> LabelCodes:
    """Codes from class encodings (see the module docstring).

    table (C, D): the encoding of each base class (rows in the order of ``base_classes``);
    train_classes (E_tr, n_way), test_classes (E_te, n_way): class names per slot;
    test_prototypes (E_te, n_way, D): the mean feature of each test slot's support images, used
    for a test class that is not a base class. Codes = encoding - mean of the C base encodings.
    """
    table = np.asarray(table, np.float64)
    base = list(base_classes)
    require(table.ndim == 2 and len(table) == len(base),
            f"encoding table must be (C, D) with C = {len(base)} base classes; got {table.shape}")
    row = {c: i for i, c in enumerate(base)}
    mean = table.mean(axis=0)
    train_classes, test_classes = np.asarray(train_classes), np.asarray(test_classes)
    missing = sorted(set(train_classes.ravel()) - set(row))
    require(not missing, f"training episodes use classes without an encoding: {', '.join(missing[:3])}")
    train = table[np.vectorize(row.get)(train_classes)] - mean
    protos = np.asarray(test_prototypes, np.float64)
    require(protos.shape == test_classes.shape + (table.shape[1],),
            f"test prototypes must be {test_classes.shape + (table.shape[1],)}; got {protos.shape}")
    test = protos.copy()
    for e, names in enumerate(test_classes):
        for j, c in enumerate(names):
            if c in row:
                test[e, j] = table[row[c]]
    return LabelCodes(name, train, test - mean)


def class_means(features: np.ndarray, labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Mean feature per class: features (N, D), labels (N,) in 0..n_classes-1 -> (n_classes, D)."""
    labels = np.asarray(labels)
    counts = np.bincount(labels, minlength=n_classes)
    require(bool(np.all(counts > 0)), "every class needs at least one image to have a mean feature")
    sums = np.zeros((n_classes, features.shape[1]))
    np.add.at(sums, labels, np.asarray(features, np.float64))
    return sums / counts[:, None]


def support_prototypes(features: np.ndarray, support_idx: np.ndarray, support_labels: np.ndarray,
                       n_way: int) -> np.ndarray:
    """Mean support feature per slot: features (N, D); support_idx, support_labels (E, n_s) (image
    index and slot 0..n_way-1 of each support image) -> (E, n_way, D)."""
    f = np.asarray(features, np.float64)[np.asarray(support_idx)]          # (E, n_s, D)
    onehot = np.eye(n_way)[np.asarray(support_labels)]                    # (E, n_s, n_way)
    counts = onehot.sum(axis=1)                                           # (E, n_way)
    require(bool(np.all(counts > 0)), "every slot needs at least one support image")
    return np.einsum("esj,esd->ejd", onehot, f) / counts[..., None]


ENCODINGS = ("mean-feature", "head-row")


@dataclass(frozen=True)
class Encoder:
    """Features of a trained network on both splits: train (N_tr, D), test (N_te, D); its head-bank rows
    (C, D) if it has one (MTL); the run folder it came from and its algorithm."""

    train: np.ndarray
    test: np.ndarray
    head: np.ndarray | None
    run_dir: str
    algorithm: str
    run_config: object = None


def _same_classes(a, b) -> bool:
    return list(a.class_names) == list(b.class_names) and np.array_equal(np.asarray(a.labels), np.asarray(b.labels))


def load_encoder(run_dir, train_split, test_split, option: str = "`encoder`") -> Encoder:
    """Features of the Conv-4 trained in ``run_dir`` (by ``ntk-bridge train``) on the images of
    ``train_split`` and ``test_split`` (loaded splits of the kernel run).

    Refused in one line naming the folder when it does not exist, is not a run folder, has no
    checkpoint, or was trained on other classes than ``train_split``'s (or its test split differs);
    ``option`` (```encoder``` or ```trained```, the config fields) names where the folder came from.
    """
    from pathlib import Path

    from ntk_bridge.errors import BridgeError
    from ntk_bridge.train.evaluation import extract_features
    from ntk_bridge.train.loop import init_state, load_data, load_run_config, restore_for_eval

    folder = Path(run_dir)
    require(folder.is_dir(), f"{option} run folder {folder} does not exist; train one with `ntk-bridge train "
                             f"--dataset omniglot --run-dir {folder}` or give {option} the folder it wrote")
    config = load_run_config(folder)
    held = test_split.name.rsplit("/", 1)[-1] if test_split.name.rsplit("/", 1)[-1] in ("val", "test") else "test"
    data = load_data(config, splits=("train", held))      # the kernel run's evaluation split: test or val
    require(_same_classes(data.train, train_split),
            f"{option} run folder {folder} was trained on other classes ({config.dataset}, "
            f"{data.train.num_classes} classes) than the kernel run's training split "
            f"({train_split.num_classes} classes); train it on the same data set and split")
    require(_same_classes(getattr(data, held), test_split),
            f"{option} run folder {folder} has a different {held} split than the kernel run; use the same data set")
    _, _, state, _ = init_state(config, data)
    try:
        state = restore_for_eval(folder, state, "best")
    except BridgeError as err:
        raise BridgeError(f"{option} run folder {folder}: {err}") from None
    train = extract_features(state, data.train.images, data.mean, data.std)
    test = extract_features(state, getattr(data, held).images, data.mean, data.std)
    bank = state.params.get("head") if config.algorithm in ("mtl", "mtl-pooled") else None     # MTL: (C, D) head bank
    head = np.asarray(bank, np.float64) if hasattr(bank, "shape") else None
    return Encoder(train.astype(np.float64), test.astype(np.float64), head, str(folder), config.algorithm, config)


def encoder_table(encoder: Encoder, kind: str, train_labels: np.ndarray, n_classes: int) -> np.ndarray:
    """The (C, D) base-class encodings: mean training feature per class, or the head-bank rows."""
    require(kind in ENCODINGS, f"unknown encoding {kind!r}; choose one of {', '.join(ENCODINGS)}")
    if kind == "head-row":
        require(encoder.head is not None and encoder.head.shape[0] == n_classes,
                f"encoding run folder {encoder.run_dir} ({encoder.algorithm}) has no head bank over the "
                f"{n_classes} training classes; use `encoding` mean-feature or an MTL run")
        return encoder.head
    return class_means(encoder.train, train_labels, n_classes)


def trained_head_accuracy(encoder: Encoder, test_eps, n_way: int, head: str) -> np.ndarray:
    """Per-episode accuracy (E,) of the trained network itself on the test episodes ``test_eps``: its frozen
    features (L2-normalised if its config says so, as ``ntk-bridge evaluate`` does) and the test head
    ``head`` (proto: nearest support mean; logreg / ridge: fitted on the support; options from its config)."""
    import jax.numpy as jnp

    from ntk_bridge.train.heads import head_logits, l2_normalize

    cfg = encoder.run_config
    s = jnp.asarray(encoder.test[np.asarray(test_eps.support_idx)], jnp.float32)
    q = jnp.asarray(encoder.test[np.asarray(test_eps.query_idx)], jnp.float32)
    if cfg.normalize_test_features:
        s, q = l2_normalize(s), l2_normalize(q)
    logits = head_logits(head, s, jnp.asarray(test_eps.support_labels), q, n_way, logreg_c=cfg.logreg_c,
                         logreg_iters=cfg.logreg_iters, ridge_lambda=cfg.ridge_lambda)
    pred = np.asarray(jnp.argmax(logits, axis=-1))
    return np.mean(pred == np.asarray(test_eps.query_labels), axis=1)
