"""The shape every study shares, written down once.

A study takes a frozen, validated config and goes through four steps, each a pure function of
what came before::

    frame    = study.run(config, progress)          tidy rows: one per unit x depth/width x draw/seed
    summary  = study.summarise(config, frame)       intervals and fitted rates over draws or seeds
    verdicts = study.verdicts(config, summary)      claims judged with named thresholds (may be empty)
    figure   = study.plot(config, result, title)    a matplotlib Figure built without pyplot

:func:`run_study` chains the first three into a :class:`Result`. The command of each study (its
``name``) adds only I/O around it: staging, caching, CSV/JSON files, the printed table.
:data:`STUDIES` holds the kernel-side studies that follow the protocol exactly; the feature map,
kernel few-shot and the trainer comparison keep richer results (several frames, trained run
folders) and follow the same order of steps in their own modules.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

import pandas as pd

C = TypeVar("C")


@dataclass(frozen=True)
class Result:
    """What a study computed: the tidy ``frame``, its ``summary`` and the ``verdicts``."""

    frame: pd.DataFrame
    summary: pd.DataFrame
    verdicts: pd.DataFrame


class Study(Protocol[C]):
    """config -> run -> frame, summarise, verdicts, plot (see the module docstring)."""

    name: str          # the command that runs it: ``ntk-bridge NAME``

    def run(self, config: C, progress: bool = False) -> pd.DataFrame: ...

    def summarise(self, config: C, frame: pd.DataFrame) -> pd.DataFrame: ...

    def verdicts(self, config: C, summary: pd.DataFrame) -> pd.DataFrame: ...

    def plot(self, config: C, result: Result, title: str) -> Any: ...


def run_study(study: Study[C], config: C, progress: bool = False) -> Result:
    """Run, summarise and judge: the three computing steps of ``study`` on ``config``."""
    frame = study.run(config, progress)
    summary = study.summarise(config, frame)
    return Result(frame, summary, study.verdicts(config, summary))


def no_verdicts() -> pd.DataFrame:
    """The verdicts of a study that judges nothing: an empty frame (a new one each call)."""
    return pd.DataFrame(columns=["claim", "holds"])


@dataclass(frozen=True)
class DepthSweep(Generic[C]):
    """``ntk-bridge depth-sweep``: the MTL-GBML distances over depth (:mod:`.depth_sweep`). It
    measures and judges nothing; the printed comparison with head-only is the command's."""

    name: str = "depth-sweep"

    def run(self, config, progress: bool = False) -> pd.DataFrame:
        from ntk_bridge.studies import depth_sweep

        return depth_sweep.run(config, progress=progress)

    def summarise(self, config, frame: pd.DataFrame) -> pd.DataFrame:
        from ntk_bridge.studies import depth_sweep

        return depth_sweep.summarize(frame)

    def verdicts(self, config, summary: pd.DataFrame) -> pd.DataFrame:
        return no_verdicts()

    def plot(self, config, result: Result, title: str):
        from ntk_bridge.studies import depth_sweep

        return depth_sweep.plot(result.frame, depth_sweep.error_table(result.frame), title)


@dataclass(frozen=True)
class RegimeMap(Generic[C]):
    """``ntk-bridge regime-map``: the depth study over regimes, with a verdict per cell and pair
    (:mod:`.regime_map`, :mod:`.regime_report`). ``cache``: the per-(cell, draw) results (a
    temporary folder when None, so nothing is kept)."""

    name: str = "regime-map"
    cache: Path | None = None

    def run(self, config, progress: bool = False) -> pd.DataFrame:
        from ntk_bridge.studies.regime_map import compute

        if self.cache is not None:
            return compute(config, Path(self.cache), progress=progress)
        with tempfile.TemporaryDirectory(prefix="ntk_bridge_regime_") as tmp:
            return compute(config, Path(tmp), progress=progress)

    def summarise(self, config, frame: pd.DataFrame) -> pd.DataFrame:
        from ntk_bridge.studies.regime_map import summarize_cells

        return summarize_cells(frame, config.deep_from)

    def verdicts(self, config, summary: pd.DataFrame) -> pd.DataFrame:
        from ntk_bridge.studies.regime_map import verdicts
        from ntk_bridge.studies.regime_report import verdict_frame

        return verdict_frame(verdicts(summary))

    def plot(self, config, result: Result, title: str):
        from ntk_bridge.studies.regime_report import plot

        return plot(result.summary, title)


@dataclass(frozen=True)
class WidthSweep(Generic[C]):
    """``ntk-bridge width-sweep``: finite networks vs the closed forms over width
    (:mod:`ntk_bridge.finite.sweep`). The frame is the per-network errors; the MTL-GBML distances
    at finite width are the second output of :func:`ntk_bridge.finite.sweep.run` and are not
    part of the protocol's result."""

    name: str = "width-sweep"

    def run(self, config, progress: bool = False) -> pd.DataFrame:
        from ntk_bridge.finite.sweep import run

        return run(config, progress=progress)[0]

    def summarise(self, config, frame: pd.DataFrame) -> pd.DataFrame:
        from ntk_bridge.finite.sweep import slope_table

        return slope_table(frame)

    def verdicts(self, config, summary: pd.DataFrame) -> pd.DataFrame:
        return no_verdicts()

    def plot(self, config, result: Result, title: str):
        from ntk_bridge.finite.sweep import plot

        return plot(result.frame, pd.DataFrame(), result.summary, title)


STUDIES: dict[str, Study] = {s.name: s for s in (DepthSweep(), RegimeMap(), WidthSweep())}
