"""The trainer's per-step metrics log: ``steps.csv`` (always) and TensorBoard event files (optional).

One row per training step: ``step, loss, acc, lr, images_seen`` (the step's own training loss and
accuracy on its batch, not a running mean), appended and flushed as the step ends, so a 20-step run
has 20 points and a crash loses at most the step in progress. Validation rows go to
``metrics.csv`` as before; :func:`plot_curve` draws both.

Resume: a resumed run starts from its checkpoint's step ``s``; :meth:`StepLog.open` first drops
every row with ``step > s`` (and a line cut short by a kill), so the log equals that of a run never
interrupted. TensorBoard: with ``tensorboardX`` installed (``pip install "ntk_bridge[tensorboard]"``:
no TensorFlow or PyTorch), the same scalars are also written as event files under ``tb/``
(``tensorboard --logdir RUN_DIR/tb``); a resumed run adds a new event file, and TensorBoard shows
the last value written for each step.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

COLUMNS = ("step", "loss", "acc", "lr", "images_seen")
FILE = "steps.csv"
TB_DIR = "tb"


def _kept_rows(path: Path, upto: int) -> list[str]:
    """Complete lines of ``path`` whose step is <= ``upto`` (header excluded)."""
    if not path.exists():
        return []
    text = path.read_text()
    lines = text.split("\n")
    if not text.endswith("\n"):
        lines = lines[:-1]                       # a line cut short by a kill
    kept = []
    for line in lines[1:]:
        fields = next(csv.reader([line]), [])
        if len(fields) == len(COLUMNS) and fields[0].isdigit() and int(fields[0]) <= upto:
            kept.append(line)
    return kept


class StepLog:
    """Appends one row per step to ``run_dir/steps.csv`` (and TensorBoard scalars if available)."""

    def __init__(self, run_dir: Path, tensorboard: bool = True):
        self.path = Path(run_dir) / FILE
        self.tb_dir = Path(run_dir) / TB_DIR
        self._tensorboard = tensorboard
        self._fh = None
        self._writer = None
        self._start = 0
        self._val_done: set[int] = set()

    def open(self, start_step: int) -> "StepLog":
        """Keep the rows of steps <= ``start_step`` (a resume), then append after them."""
        self._start = int(start_step)
        kept = _kept_rows(self.path, start_step)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(",".join(COLUMNS) + "\n" + "".join(line + "\n" for line in kept))
        self._fh = open(self.path, "a", newline="")
        if self._tensorboard:
            try:
                from tensorboardX import SummaryWriter
            except ImportError:
                self._writer = None
            else:
                self._writer = SummaryWriter(str(self.tb_dir), flush_secs=10)
        return self

    @property
    def tensorboard(self) -> bool:
        """Whether event files are written (tensorboardX importable and asked for)."""
        return self._writer is not None

    def add(self, step: int, loss: float, acc: float, lr: float, images_seen: int, history: list = ()) -> None:
        """One step's row: its batch loss and accuracy (fraction), learning rate, images so far; and,
        in the event files, the validation rows of ``history`` (metrics.json rows) not written yet."""
        self._validations(history)
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerow([int(step), repr(float(loss)), repr(float(acc)),
                                                       repr(float(lr)), int(images_seen)])
        self._fh.write(buf.getvalue())
        self._fh.flush()
        if self._writer is not None:
            for tag, value in (("train/loss", loss), ("train/acc", acc), ("train/lr", lr)):
                if math.isfinite(value):
                    self._writer.add_scalar(tag, float(value), int(step))

    def _validations(self, history) -> None:
        """Validation accuracy (%) of each new history row after the start step, in the event files."""
        if self._writer is None:
            return
        for row in history:
            s = int(row["step"])
            if s > self._start and s not in self._val_done:
                self._writer.add_scalar("val/acc", float(row["val_acc"]), s)
                self._val_done.add(s)

    def close(self, history: list = ()) -> None:
        """Write what is pending (the last validation) and close the files."""
        if self._writer is not None:
            self._validations(history)
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def read(run_dir: Path):
    """The per-step log of ``run_dir`` as a DataFrame (columns :data:`COLUMNS`); empty if absent."""
    import pandas as pd

    path = Path(run_dir) / FILE
    if not path.exists():
        return pd.DataFrame(columns=list(COLUMNS))
    return pd.read_csv(path)


def plot_curve(steps, history: list, title: str):
    """The figure of ``curve.png``: training loss per step (and a running mean) from the
    step log, validation accuracy (+- 95% CI) at each validation from ``history`` (metrics.json)."""
    import numpy as np
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 3.6), layout='constrained')
    (a, b) = fig.subplots(1, 2)
    if len(steps):
        a.plot(steps["step"], steps["loss"], lw=0.8, alpha=0.5, marker="." if len(steps) <= 50 else None,
               label="per step (its batch)")
        window = min(20, len(steps) // 5)          # a running mean over at most a fifth of the steps
        if window >= 2:
            smooth = np.convolve(steps["loss"].to_numpy(), np.ones(window) / window, mode="valid")
            a.plot(steps["step"].to_numpy()[window - 1:], smooth, lw=1.5, label=f"running mean of {window} steps")
        a.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=2, frameon=False)
    a.set(xlabel="step", ylabel="training loss")
    a.set_title(f"training loss of every step ({len(steps)} steps, steps.csv)", fontsize=9)
    if history:
        b.errorbar([h["step"] for h in history], [h["val_acc"] for h in history],
                   yerr=[h["val_ci95"] for h in history], marker="o", capsize=2)
        h0 = history[0]
        b.set_title(f"validation: {h0['val_episodes']} episodes x {h0['val_query']} q, head {h0['val_head']}, "
                    "95% CI", fontsize=9)
    else:
        b.set_title("no validation yet", fontsize=9)
    b.set(xlabel="step", ylabel="validation accuracy (%)")
    for ax in (a, b):
        ax.grid(True, alpha=0.3)
    fig.suptitle(title, fontsize=9)
    return fig
