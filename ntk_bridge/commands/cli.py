"""The ``ntk-bridge`` command line.

Exit codes: 0 done, 2 bad input or a fault met (one ``error: ...`` line on stderr, no traceback),
130 interrupted by Ctrl-C and 143 by SIGTERM (one ``interrupted (...)`` line saying what was kept),
141 when the reader of its output went away (``ntk-bridge ... | head``; the results are written).

Each subcommand lives in ``ntk_bridge.commands.<name>`` and provides ``add_arguments(parser)``
and ``run(args) -> int``. Command modules import nothing heavy at module level, and the study
modules they read their defaults from import pandas inside their functions, so ``--help`` runs
neither pandas, scipy nor JAX (tests/commands/test_help_imports.py; about 2x ``python -c "import numpy"``,
experiments/results/bench/bench_help.txt) and JAX / neural-tangents load only for the command that
needs them.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import logging
import sys
from typing import Sequence

from ntk_bridge.errors import BridgeError

# name -> (module under ntk_bridge.commands, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "depth-sweep": ("depth_sweep", "distance between MTL and GBML kernel predictors vs depth (main job)"),
    "regime-map": ("regime_map", "where MTL and GBML kernel predictors meet: depth x inner scale x biases x outer time"),
    "width-sweep": ("width_sweep", "finite networks trained by gradient descent vs the closed forms, vs width"),
    "feature-map": ("feature_map", "MTL vs GBML where networks learn features: muP vs NTK parameterisation, vs width and depth"),
    "data": ("data", "inspect few-shot data sets on disk (data info --dataset NAME --root DIR)"),
    "train": ("train", "train a few-shot learner (MTL or a GBML baseline) and evaluate it"),
    "evaluate": ("evaluate", "evaluate a finished or interrupted run folder on test episodes"),
    "compare": ("compare", "train several algorithms on one data set and compare accuracy and cost"),
    "kernel-fewshot": ("kernel_fewshot", "closed-form kernel predictors on real few-shot tasks"),
    "report": ("report", "collect every result into figures/ and one markdown report"),
}


# OSErrors that come from the machine (disk, permissions), not from the code: one line, exit 2
ENVIRONMENT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM,
                                errno.EIO, errno.ENAMETOOLONG, errno.EMFILE})


def _load(name: str):
    module, _ = COMMANDS[name]
    return importlib.import_module(f"ntk_bridge.commands.{module}")


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (``error: ...``, exit 2) with the way to help."""

    def error(self, message: str):
        self.exit(2, f"error: {self.prog}: {message}; see `{self.prog} --help`\n")


def build_parser() -> argparse.ArgumentParser:
    """The parser of every command; nothing on this path imports pandas, scipy or JAX, so building
    it and printing ``--help`` runs none of them."""
    parser = OneLineParser(
        prog="ntk-bridge",
        description=(
            "Multi-task learning vs gradient-based meta-learning, in theory (infinite-width "
            "kernels) and in practice (few-shot benchmarks). Run `ntk-bridge COMMAND --help` "
            "for a command's options."),
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    for name, (module, help_text) in COMMANDS.items():
        try:
            mod = _load(name)
        except ModuleNotFoundError as err:  # a command not built yet is listed, not offered
            if err.name != f"ntk_bridge.commands.{module}":
                raise
            continue
        doc = (mod.__doc__ or help_text).strip()
        p = sub.add_parser(name, help=help_text, description=doc,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


class _ConsoleHandler(logging.Handler):
    """The library's log records as the command's own output: INFO to stdout, warnings to stderr,
    the message alone. The stream is looked up at each record, so redirected streams are followed."""

    def emit(self, record: logging.LogRecord) -> None:
        stream = sys.stderr if record.levelno >= logging.WARNING else sys.stdout
        stream.write(self.format(record) + "\n")
        stream.flush()


def show_library_log(level: int = logging.INFO) -> None:
    """Route the ``ntk_bridge`` loggers to the console (once per process). Library code logs and
    never prints; a command shows what it logs, a notebook user chooses with ``logging`` as usual."""
    root = logging.getLogger("ntk_bridge")
    root.setLevel(level)
    root.propagate = False
    if not any(isinstance(h, _ConsoleHandler) for h in root.handlers):
        root.addHandler(_ConsoleHandler())


def script_exit(main) -> int:
    """Run ``main()`` for an experiment script's ``__main__``: its return code, or 2 after one
    ``error: ...`` line on stderr for a :class:`BridgeError` (what the CLI does);
    ``raise SystemExit(script_exit(main))``."""
    show_library_log()
    try:
        return main()
    except BridgeError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def in_flags(message: str, parser: argparse.ArgumentParser, command: str) -> str:
    """The library names settings by their config fields in backticks (```outer_ridge```); on the
    command line each becomes the flag that sets it (``--outer-ridge``) where ``command`` has one."""
    import re

    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
    flags = {o for a in sub._actions for o in a.option_strings}

    def flag(m: re.Match) -> str:
        name = "--" + m.group(1).rsplit(".", 1)[-1].replace("_", "-")
        return name if name in flags else m.group(0)

    return re.sub(r"`([A-Za-z_][\w.]*)`", flag, message)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    show_library_log()
    from ntk_bridge.interrupts import exit_line, sigterm_as_interrupt

    try:
        with sigterm_as_interrupt():
            return int(args._run(args) or 0)
    except BridgeError as err:
        print(f"error: {in_flags(str(err), parser, args.command)}", file=sys.stderr)
        if getattr(err, "abandon", False) and argv is None:   # a thread of it is stuck in a library call
            _exit_now(2)
        return 2
    except BrokenPipeError:                   # `ntk-bridge ... | head`: the reader left; results are written
        import os
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())   # no second error when exiting
        return 141
    except OSError as err:                    # a write that no result-set writer wrapped (last resort)
        if err.errno not in ENVIRONMENT_ERRNOS:
            raise
        from ntk_bridge.io import disk_error
        print(f"error: {disk_error(err, err.filename or 'a file')}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:          # Ctrl-C 130, SIGTERM 143 (ntk_bridge.interrupts)
        line, code = exit_line(err)
        if not getattr(err, "abandon", False):   # abandoned start-up: nothing dispatched, JAX half-started
            _settle()
        print(line, file=sys.stderr)
        if argv is None:                       # the process's own command line: end it here
            _exit_now(code)
        return code


def _exit_now(code: int) -> None:
    """Flush and end the process without the interpreter's shutdown: after an interrupt, JAX work
    may still be in flight on its threads, and tearing the runtime down under it crashed the
    process (a segfault after the one line, seen in 2 of about 10 interrupted width sweeps). Every
    result file is already written and fsynced (ntk_bridge.io), staging folders and locks removed."""
    import os

    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


def _settle() -> None:
    """Wait for computations JAX dispatched before an interrupt: exiting while they still run on its
    threads can crash the interpreter's shutdown (seen as a segfault after Ctrl-C in a width sweep)."""
    jax = sys.modules.get("jax")
    if jax is None:
        return
    try:
        for array in jax.live_arrays():
            array.block_until_ready()
    except Exception:                          # deleted or donated buffers: nothing left to wait for
        pass


if __name__ == "__main__":
    sys.exit(main())
