"""Command-line flags derived from a frozen config dataclass: defaults and types stated once, there.

A command lists :class:`Flag` s (which field, the flag's wording); :func:`add_flags` takes each
flag's default from an instance of the config (so ``--help`` prints the dataclass default) and its
parser from the default's type, and :func:`build` turns the parsed flags back into the config
(``dataclasses.replace`` field by field, nested configs included, so the dataclass validates it).

    FLAGS = (Flag("seeds", "seeds per width"), Flag("net.depth", "hidden layers", name="--depth"))
    add_flags(parser, WidthSweepConfig(), FLAGS)
    config = build(WidthSweepConfig(), parser.parse_args(), FLAGS)

Imports nothing heavy.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Sequence


@dataclass(frozen=True)
class Flag:
    """One flag of one config field.

    ``field``: the dataclass field, dotted for a field of a nested config (``"net.depth"``);
    ``help``: the wording (the default is appended); ``name``: the flag (default
    ``--<last part of field, dashes for underscores>``); ``parse``: the argparse type (default
    from the default value: int, float, str, or comma-separated ints for an int tuple);
    ``choices``: allowed values; ``shown``: how the default is printed (default ``str`` /
    ``"a,b,c"`` for a tuple).
    """

    field: str
    help: str = ""
    name: str = ""
    parse: Callable[[str], Any] | None = None
    choices: tuple = ()
    shown: Callable[[Any], str] | None = None

    @property
    def dest(self) -> str:
        return self.field.replace(".", "__")

    @property
    def flag(self) -> str:
        return self.name or "--" + self.field.rsplit(".", 1)[-1].replace("_", "-")


def field_value(config: Any, dotted: str) -> Any:
    """``config.a.b`` for ``"a.b"``."""
    for part in dotted.split("."):
        config = getattr(config, part)
    return config


def _parser_for(value: Any) -> Callable[[str], Any]:
    from ntk_bridge.commands._fields import int_list
    if isinstance(value, bool):
        raise TypeError("a bool field needs its own flag (store_true / store_false)")
    if isinstance(value, tuple):
        if all(isinstance(v, int) for v in value):
            return int_list
        return str_list
    return type(value)


def str_list(text: str) -> tuple[str, ...]:
    """``"a,b"`` -> ``("a", "b")`` (empty items dropped)."""
    return tuple(v.strip() for v in text.split(",") if v.strip())


def _shown(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(map(_shown, value))
    return f"{value:g}" if isinstance(value, float) else str(value)


def add_flags(group: argparse._ActionsContainer, defaults: Any, flags: Sequence[Flag]) -> None:
    """One argparse option per flag, its default ``field_value(defaults, flag.field)``."""
    for f in flags:
        value = field_value(defaults, f.field)
        shown = f"default {(f.shown or _shown)(value)}"
        text = f"{f.help[:-1]}; {shown})" if f.help.endswith(")") else f"{f.help} ({shown})" if f.help else shown
        kwargs: dict[str, Any] = {"dest": f.dest, "default": value, "help": text}
        if f.choices:
            kwargs["choices"] = f.choices
        else:
            kwargs["type"] = f.parse or _parser_for(value)
            kwargs["metavar"] = f.flag.lstrip("-").replace("-", "_").upper()
        group.add_argument(f.flag, **kwargs)


SEED_MAX = 2**32 - 1   # numpy's and JAX's PRNG seeds are unsigned 32-bit integers here


def check_seed(value: int, flag: str = "--seed") -> None:
    """A seed must be an integer in 0..SEED_MAX (a negative or huge one reached numpy / JAX errors)."""
    from ntk_bridge.errors import require

    require(0 <= int(value) <= SEED_MAX - 10**6,
            f"{flag} {value} is out of range; give an integer from 0 to {SEED_MAX - 10**6} "
            "(draw i uses seed + i)")


def build(defaults: Any, args: argparse.Namespace, flags: Sequence[Flag]) -> Any:
    """``defaults`` with every flag's parsed value put into its field; a nested config (one level,
    ``"net.depth"``) is rebuilt once with all of its flags, so each dataclass checks its values together."""
    nested: dict[str, dict[str, Any]] = {}
    top: dict[str, Any] = {}
    for f in flags:
        if f.field.rpartition(".")[2] == "seed":
            check_seed(getattr(args, f.dest), f.flag)
        head, _, rest = f.field.partition(".")
        if "." in rest:
            raise ValueError(f"{f.field}: flags reach one nested config level at most")
        if rest:
            nested.setdefault(head, {})[rest] = getattr(args, f.dest)
        else:
            top[head] = getattr(args, f.dest)
    for head, values in nested.items():
        top[head] = dataclasses.replace(getattr(defaults, head), **values)
    return dataclasses.replace(defaults, **top)


def int_list(text: str, allow_none: bool = False) -> tuple[int, ...]:
    """Parse ``"1,2,4"`` into ``(1, 2, 4)``; with ``allow_none``, ``"none"`` or ``""`` gives ``()``.

    Every comma-separated item must be an integer: an empty item (``"1,,4"``, ``"1,2,"``) is
    refused, not skipped, since it usually means a value was lost.
    """
    if allow_none and text.strip().lower() in ("", "none"):
        return ()
    items = [v.strip() for v in text.split(",")]
    if "" in items:
        raise argparse.ArgumentTypeError(
            f"empty item in {text!r} (item {items.index('') + 1}); give comma-separated integers such as 1,2,4")
    try:
        return tuple(int(v) for v in items)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers such as 1,2,4, got {text!r}") from None


def int_list_or_none(text: str) -> tuple[int, ...]:
    return int_list(text, allow_none=True)


def int_or_auto(text: str) -> int | None:
    """``"auto"`` as None (the callee chooses), else the integer."""
    if text.strip().lower() == "auto":
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer or 'auto', got {text!r}") from None
