"""Ctrl-C and SIGTERM as orderly stops: an exception type with its exit code, and a stop request
that long loops poll at their safe points.

Exit codes (the shell's convention, 128 + signal number): 130 for Ctrl-C (SIGINT), 143 for SIGTERM.
The CLI prints one line ``interrupted (SIGINT): <what was kept>`` and exits with that code.

- :func:`sigterm_as_interrupt` (installed by the CLI for every command): SIGTERM raises
  :class:`Interrupted` like Ctrl-C raises KeyboardInterrupt, so the staging folders of
  :mod:`ntk_bridge.io` are cleaned up and the previous results stay.
- :class:`StopRequest` (the training loop): while it is active, the first SIGINT/SIGTERM only
  records the request; the loop calls :meth:`StopRequest.check` after each step, saves what it
  must and raises :class:`Interrupted`. A second Ctrl-C stops at once (KeyboardInterrupt).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator

DISCARDED = "the output being written was discarded; earlier results are as they were"


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


class Interrupted(KeyboardInterrupt):
    """A stop asked by a signal. ``str(err)``: one line saying what was kept; ``code``: 128 + signum."""

    def __init__(self, signum: int = signal.SIGINT, message: str = ""):
        super().__init__(message)
        self.signum = int(signum)
        self.message = " ".join(str(message).split())

    @property
    def code(self) -> int:
        return 128 + self.signum

    def line(self) -> str:
        return f"interrupted ({signal_name(self.signum)})" + (f": {self.message}" if self.message else "")


def exit_line(err: KeyboardInterrupt) -> tuple[str, int]:
    """(the one stderr line, the exit code) of an interrupt; a plain KeyboardInterrupt is a Ctrl-C."""
    if not isinstance(err, Interrupted) or not err.message:
        err = Interrupted(getattr(err, "signum", signal.SIGINT), str(err) or DISCARDED)
    return err.line(), err.code


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """While active, SIGTERM raises :class:`Interrupted` (exit 143) in the main thread."""
    if not _in_main_thread():
        yield
        return

    def handler(signum, frame):
        raise Interrupted(signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class StopRequest:
    """Records SIGINT / SIGTERM while active (a context manager) instead of raising at once.

    ``signum`` is the first signal received (None while none). A second SIGINT raises
    KeyboardInterrupt immediately (the user insists). Outside the main thread it records nothing.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict = {}

    def _handler(self, signum, frame):
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum

    def __enter__(self) -> "StopRequest":
        if _in_main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    @property
    def requested(self) -> bool:
        return self.signum is not None
