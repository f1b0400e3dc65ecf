"""The report's inputs: every result folder read through its declared schema
(:mod:`ntk_bridge.report.schemas`), refused by name when cut short or unfinished.

:class:`Sources` names the folders, :class:`Loaded` is one folder's tables; a missing folder loads
as "not run" with the command that produces it (:data:`COMMANDS`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ntk_bridge.errors import BridgeError, require
from ntk_bridge.io import STAGING_RE, is_staging
from ntk_bridge.report import schemas

COMMANDS = {
    "depth": "ntk-bridge depth-sweep --out experiments/results/depth_sweep --figure figures/depth_sweep.png",
    "regime": "ntk-bridge regime-map --out experiments/results/regime_map --figure figures/regime_map.png",
    "width": "ntk-bridge width-sweep --out experiments/results/width_sweep",
    "kernel": "ntk-bridge kernel-fewshot --out experiments/results/kernel_fewshot",
    "kernel_val": ("ntk-bridge kernel-fewshot --test-split val --labels random-slots "
                   "--out experiments/results/kernel_fewshot_val"),
    "compare": "ntk-bridge compare --dataset omniglot --out experiments/results/compare_omniglot",
    "runs": "ntk-bridge train --dataset omniglot --shots 5 --run-dir runs/omniglot_5shot_mtl",
}


@dataclass
class Sources:
    """Where each kind of result is read from."""

    depth_sweep: Path = Path("experiments/results/depth_sweep")
    width_sweep: Path = Path("experiments/results/width_sweep")
    kernel_fewshot: Path = Path("experiments/results/kernel_fewshot")
    kernel_validation: Path | None = None              # None: the kernel folder's name + "_val"
    compare: list = field(default_factory=list)        # folders; empty = experiments/results/compare*
    runs: Path = Path("experiments/results/omniglot_mtl")
    regime_map: Path = Path("experiments/results/regime_map")


@dataclass
class Loaded:
    """One source: its frames (name -> DataFrame / dict) or why it is missing."""

    name: str
    path: str
    data: dict | None
    missing: str = ""
    command: str = ""


def _check_csv(path: Path) -> None:
    """Refuse a CSV that was cut short: it must end with a newline and every row must have the
    header's number of fields (pandas would fill a cut row with NaN and read on)."""
    import csv
    import io

    text = path.read_text()
    require(text.strip() != "", f"{path} is empty")
    require(text.endswith("\n"), f"{path} is truncated (its last line has no end)")
    rows = list(csv.reader(io.StringIO(text)))
    width = len(rows[0])
    bad = next((i for i, r in enumerate(rows[1:], start=2) if len(r) != width), None)
    require(bad is None, f"{path} is truncated or corrupt (line {bad} has {len(rows[bad - 1]) if bad else 0} "
                         f"of {width} fields)")


def _read_csv(path: Path) -> pd.DataFrame:
    _check_csv(path)
    return pd.read_csv(path)


def _read_json(path: Path):
    from ntk_bridge.io import read_json

    return read_json(path)


def _refuse_unfinished(path: Path) -> None:
    """BridgeError for a staging folder of :func:`ntk_bridge.io.result_folder` (never read as a run)."""
    if is_staging(path):
        raise BridgeError(f"{path} is an unfinished result folder (the staging folder of a run that was "
                          "interrupted or is still running); point the report at the finished folder "
                          f"{path.parent / STAGING_RE.match(path.name)['name']}")


def _read_part(f: Path, part, command: str):
    """One declared file: a JSON document, or a CSV table checked for its declared columns."""
    if isinstance(part, schemas.Document):
        return _read_json(f)
    frame = _read_csv(f)
    schemas.check_columns(f, part, frame, command)
    _check_numbers(f, part, frame)
    return frame


def _check_numbers(f: Path, part, frame: pd.DataFrame) -> None:
    """Every declared measurement column (unit other than "id" or "text") holds numbers (empty = NaN is fine);
    text there (a hand edit, a damaged file) is a BridgeError naming the file, column and line."""
    for col, unit in part.columns.items():
        if unit in ("id", "text") or col not in frame or pd.api.types.is_numeric_dtype(frame[col]):
            continue
        values = pd.to_numeric(frame[col], errors="coerce")
        bad = (values.isna() & frame[col].notna()).to_numpy().nonzero()[0]
        if len(bad):
            raise BridgeError(f"{f}: column {col!r} holds {str(frame[col].iloc[bad[0]])[:40]!r} on line {bad[0] + 2} "
                              "where a number is expected (edited or damaged)")
        frame[col] = values


def _load(name: str, path: Path, schema: schemas.ResultSchema, keys: tuple[str, ...], command: str) -> Loaded:
    """Read the parts ``keys`` of ``schema`` from ``path``; a missing required file makes the source
    missing, a missing optional one is left out.

    A file that exists but is unreadable, cut short or lacks a declared column, or a staging folder
    of an unfinished run (ntk_bridge.io.result_folder), is a BridgeError: the report is not written
    from it.
    """
    path = Path(path)
    _refuse_unfinished(path)
    if not path.is_dir():
        return Loaded(name, str(path), None, f"folder {path} does not exist", command)
    data = {}
    for key in keys:
        part = schema.parts[key]
        f = path / part.file
        if not f.exists():
            if part.optional:
                continue
            return Loaded(name, str(path), None, f"{f} is missing (run not finished?)", command)
        try:
            data[key] = _read_part(f, part, command)
        except (BridgeError, ValueError, OSError) as err:  # a cut-short or foreign file: refuse it, by name
            reason = str(err) if isinstance(err, BridgeError) else f"{f} is unreadable ({type(err).__name__}: {err})"
            raise BridgeError(f"{reason}; re-run `{command}` or move {path} out of the way") from None
    return Loaded(name, str(path), data, "", command)


def _subfolders(path: Path, marker: str) -> list[Path]:
    """Finished sub-folders of ``path`` holding ``marker`` (staging folders of unfinished runs skipped)."""
    if not path.is_dir():
        return []
    return sorted(p for p in path.iterdir() if p.is_dir() and not is_staging(p) and (p / marker).exists())


def load_depth(path: Path) -> Loaded:
    return _load("synthetic depth sweep", path, schemas.DEPTH_SWEEP, ("frame", "summary", "errors", "config"),
                 COMMANDS["depth"])


def load_width(path: Path) -> list[Loaded]:
    """The width sweep in ``path`` and in each sub-folder holding a summary.csv."""
    path = Path(path)
    _refuse_unfinished(path)
    marker = schemas.WIDTH_SWEEP.file("summary")
    folders = ([path] if (path / marker).exists() else []) + _subfolders(path, marker)
    keys = ("summary", "table", "pairs", "config", "run")
    if not folders:
        return [Loaded("width sweep", str(path), None,
                       f"no {marker} in {path} or its sub-folders", COMMANDS["width"])]
    return [_unless_incomplete(_load(f"width sweep ({p.name})", p, schemas.WIDTH_SWEEP, keys, COMMANDS["width"]))
            for p in folders]


def _unless_incomplete(src: Loaded) -> Loaded:
    """A width sweep whose run.json says ``"complete": false`` (still running, or killed between
    widths: its rows are partial) is listed as not finished instead of being read."""
    if src.data and src.data.get("run", {}).get("complete") is False:
        return Loaded(src.name, src.path, None, f"{src.path}/run.json says the sweep is not complete "
                      "(running or interrupted; finished widths only)", src.command)
    return src


def load_kernel(path: Path) -> Loaded:
    return _load("kernel few-shot", path, schemas.KERNEL_FEWSHOT,
                 ("accuracy", "distances", "vs_synthetic", "config", "run"), COMMANDS["kernel"])


def load_kernel_variants(path: Path) -> list[Loaded]:
    """Other kernel few-shot runs kept in sub-folders of the main one (e.g. another outer time)."""
    path = Path(path)
    subs = _subfolders(path, schemas.KERNEL_FEWSHOT.file("accuracy"))
    return [_load(f"kernel few-shot ({p.name})", p, schemas.KERNEL_FEWSHOT, ("accuracy", "distances", "config"),
                  COMMANDS["kernel"]) for p in subs]


# what a validation run must share with the test run (it differs in test_split, test episodes, labels)
VALIDATION_SAME = ("dataset", "train_split", "n_way", "n_query", "train_episodes", "image_size", "centre", "depths",
                   "net", "predictor", "conv_depths", "conv_image_size", "conv_train_episodes", "seed")


def load_kernel_validation(path: Path, kernel: Loaded) -> Loaded:
    """The kernel few-shot run on validation episodes that chooses the depths of ``kernel``'s run.

    Missing, or made with another protocol than ``kernel`` (a field of :data:`VALIDATION_SAME`
    differs, or it was scored on the test split itself): returned as not run, with the reason."""
    name, command = "kernel few-shot on validation episodes (chooses depths)", COMMANDS["kernel_val"]
    val = _load(name, Path(path), schemas.KERNEL_FEWSHOT, ("accuracy", "config"), command)
    if not (val.data and kernel.data):
        return val
    cfg_v, cfg_t = val.data["config"], kernel.data["config"]
    differ = [k for k in VALIDATION_SAME if cfg_v.get(k) != cfg_t.get(k)]
    if differ or cfg_v.get("test_split") == cfg_t.get("test_split"):
        why = (f"its {', '.join(differ)} differ from {kernel.path}" if differ
               else f"it was scored on the {cfg_v.get('test_split')!r} split, the test run's own")
        return Loaded(name, val.path, None, f"not usable: {why}", command)
    return val


PRIMARY_LABELS = "random-slots"      # the label space of the kernel few-shot sections (class slots at random)


def split_label_spaces(kernel: Loaded) -> tuple[Loaded, list[Loaded]]:
    """A kernel few-shot run scored in several label spaces (a ``labels`` column) as one source per space.

    The first is the random-slots space (or the first one present), which the kernel sections and
    claims describe; each other space is returned as a variant ``kernel few-shot (<space> labels)``.
    A run without a ``labels`` column is returned unchanged.
    """
    if not kernel.data or "labels" not in kernel.data["accuracy"].columns:
        return kernel, []
    spaces = list(dict.fromkeys(kernel.data["accuracy"]["labels"]))
    spaces.sort(key=lambda lab: lab != PRIMARY_LABELS)

    def only(lab: str) -> dict:
        return {k: (v[v["labels"] == lab] if isinstance(v, pd.DataFrame) and "labels" in v.columns else v)
                for k, v in kernel.data.items()}

    primary = Loaded(kernel.name, kernel.path, only(spaces[0]), "", kernel.command)
    others = [Loaded(f"{kernel.name} ({lab} labels)", f"{kernel.path} [labels {lab}]", only(lab), "", kernel.command)
              for lab in spaces[1:]]
    return primary, others


def load_compare(folders: list) -> list[Loaded]:
    if not folders:
        folders = sorted(p for p in Path("experiments/results").glob("compare*") if p.is_dir() and not is_staging(p))
    # a comparison folder may keep further comparisons (e.g. another learning rate) in sub-folders
    folders = [Path(p) for p in folders]
    folders += sorted(q for p in folders for q in _subfolders(p, schemas.COMPARE.file("summary")) if q not in folders)

    def label(p: Path) -> str:
        return f"compare ({p.parent.name + '/' if p.parent.name.startswith('compare') else ''}{p.name})"
    out = [_load(label(Path(p)), Path(p), schemas.COMPARE, ("summary", "config", "ratios"), COMMANDS["compare"])
           for p in folders]
    return out or [Loaded("compare", "experiments/results/compare*", None, "no compare folder", COMMANDS["compare"])]


def _run_folders(root: Path) -> list[Path]:
    """Every folder under ``root`` holding a summary.json, following symlinked folders (each real
    folder once), skipping staging folders of unfinished runs."""
    found, seen = [], set()
    for folder, subdirs, files in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:                                   # a link cycle or a second link to one run
            subdirs[:] = []
            continue
        seen.add(real)
        subdirs[:] = sorted(d for d in subdirs if not is_staging(d))
        if "summary.json" in files:
            found.append(Path(folder))
    return sorted(found)


def _read_run(run: Path) -> tuple[dict, dict]:
    """(summary, config) of a train run folder; a JSON file that does not parse is refused by name."""
    out = []
    for name in ("summary.json", "config.json"):
        f = run / name
        try:
            out.append(_read_json(f) if f.exists() else {})
        except (ValueError, OSError) as err:
            raise BridgeError(f"{f} is unreadable ({type(err).__name__}: {err}); re-run or evaluate that run, "
                              f"or move {run} out of the way") from None
    require(isinstance(out[0], dict), f"{run / 'summary.json'} is not a JSON object; move {run} out of the way")
    return out[0], out[1] if isinstance(out[1], dict) else {}


def load_runs(path: Path) -> Loaded:
    """Every train run folder under ``path`` with a summary.json holding a test result.

    Runs without a test result yet (unfinished) are skipped; a summary.json or config.json that
    does not parse is a BridgeError naming it.
    """
    path = Path(path)
    rows = []
    candidates = _run_folders(path)
    for run in candidates:
        s, c = _read_run(run)
        t = s.get("test")
        if not isinstance(t, dict) or "mean" not in t:
            continue
        rows.append({"run": str(run), "dataset": c.get("dataset", t.get("split", "?").split("/")[0]),
                     "algorithm": c.get("algorithm", "?"), "backbone": c.get("backbone", "?"),
                     "channels": c.get("channels"), "shots": t.get("shots"), "n_way": t.get("n_way"),
                     "acc": t["mean"], "ci95": t.get("ci95"), "episodes": t.get("episodes"),
                     "val": s.get("best_val_acc") if s.get("best_val_acc") is not None else float("nan"),
                     "query": t.get("query"), "head": t.get("head"), "split": t.get("split"),
                     "steps": s.get("steps"), "wall_s": s.get("wall_s"), "train_s": s.get("train_s"),
                     "platform": s.get("platform"), "accelerator_hours": s.get("accelerator_hours")})
    if not rows:
        return Loaded("train runs", str(path), None, f"no run folder with a test result under {path}", COMMANDS["runs"])
    return Loaded("train runs", str(path), {"runs": pd.DataFrame(rows)})


def load_regime(path: Path) -> Loaded:
    """The regime map (``ntk-bridge regime-map``): cells.csv, verdicts.csv, config.json."""
    return _load("regime map", path, schemas.REGIME_MAP, ("cells", "verdicts", "config"), COMMANDS["regime"])
