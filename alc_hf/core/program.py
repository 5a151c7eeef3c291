"""What the programs (``alc-hf`` and ``recipes/train_alc.py``) share: the errors a person fixes, how they are
reported, and the checks of option values that run before any work.

A user error (bad data, a bad option, a model that cannot load, a push that cannot work) ends the program with one
line, ``<program>: error: <message>``, and exit status 2, before any partial output is kept: a traceback says
nothing the message does not, and ``accelerate launch`` would print it once per process. The traceback is shown
when asked for, with ``ALC_HF_DEBUG=1`` (or ``alc-hf ... --debug``). Any other exception is a bug and keeps its
traceback. Nothing here imports more than the standard library, so ``alc-hf --help`` stays fast.
"""

from __future__ import annotations

import difflib
import os
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

__all__ = [
    "DEBUG_ENVIRONMENT_VARIABLE",
    "USAGE_ERROR_STATUS",
    "USER_ERRORS",
    "OptionRange",
    "SetupError",
    "check_choice_option",
    "check_option_ranges",
    "check_ranges",
    "nearest",
    "run_program",
    "unknown_arguments",
]

DEBUG_ENVIRONMENT_VARIABLE = "ALC_HF_DEBUG"
# argparse's own status for a bad command line: every user error ends the same way.
USAGE_ERROR_STATUS = 2


class SetupError(RuntimeError):
    """The run cannot work as it is set up: a model that does not load, a Hub push that cannot succeed, an optional
    library that is missing or incompatible. The message says what to change."""


# A data file's DataFormatError and a bad option are ValueErrors; a missing file is an OSError.
USER_ERRORS = (ValueError, OSError, SetupError)


def nearest(name: str, known: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the known name closest to a misspelt ``name``, or an empty string."""
    close = difflib.get_close_matches(name, list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def unknown_arguments(unknown: list[str], known_options: Iterable[str]) -> str:
    """What is wrong with the command-line arguments a parser did not take: the unknown options, each with the
    known option closest to it (their values are not listed), or else the stray values."""
    known_options = list(known_options)
    flags = [argument.split("=")[0] for argument in unknown if argument.startswith("-")]
    if not flags:
        return f"unexpected argument(s): {' '.join(unknown)}"
    return "unknown option(s): " + ", ".join(f"{flag}{nearest(flag, known_options)}" for flag in flags)


def run_program(main: Callable[[], object], program: str, debug: bool = False) -> int:
    """Run ``main()`` and return the exit status: 0, or :data:`USAGE_ERROR_STATUS` after printing one
    ``error:`` line to stderr for a :data:`USER_ERRORS` exception (re-raised with its traceback when ``debug`` or
    ``ALC_HF_DEBUG=1``). Under several processes each line names its rank: an error may hit one process only."""
    try:
        main()
    except USER_ERRORS as error:
        if debug or os.environ.get(DEBUG_ENVIRONMENT_VARIABLE, "") not in ("", "0"):
            raise
        rank = f"[rank {os.environ.get('RANK', '?')}] " if int(os.environ.get("WORLD_SIZE", "1")) > 1 else ""
        print(f"{rank}{program}: error: {error}", file=sys.stderr)
        return USAGE_ERROR_STATUS
    return 0


@dataclass(frozen=True)
class OptionRange:
    """The values a numeric option accepts: from ``low`` to ``high`` (each end included unless said otherwise),
    and ``special``, one value outside the range with a meaning of its own."""

    low: float | None = None
    high: float | None = None
    low_included: bool = True
    high_included: bool = True
    special: tuple[float, str] | None = None

    def accepts(self, value: float) -> bool:
        if self.special is not None and value == self.special[0]:
            return True
        above_low = self.low is None or value > self.low or (self.low_included and value == self.low)
        below_high = self.high is None or value < self.high or (self.high_included and value == self.high)
        return above_low and below_high

    def describe(self) -> str:
        if self.high is None:
            text = f"{'>=' if self.low_included else '>'} {self.low:g}"
        else:
            opening, closing = "[" if self.low_included else "(", "]" if self.high_included else ")"
            text = f"in {opening}{self.low:g}, {self.high:g}{closing}"
        return text if self.special is None else f"{text}, or {self.special[0]:g} ({self.special[1]})"


def check_choice_option(name: str, value: str | None, choices: Sequence[str]) -> None:
    if value is not None and value not in choices:
        raise ValueError(f"--{name} {value!r}: expected one of {', '.join(choices)}{nearest(value, choices)}")


def check_ranges(values: Mapping[str, Any], ranges: Mapping[str, OptionRange]) -> None:
    """A ValueError naming the first option of ``values`` (name to value, a list checked value by value) outside
    its entry of ``ranges``; None is not checked (an option left unset)."""
    for name, value in values.items():
        allowed = ranges.get(name)
        if allowed is None or value is None:
            continue
        for each in value if isinstance(value, list | tuple) else [value]:
            if not allowed.accepts(each):
                raise ValueError(f"--{name} {each!r}: expected a value {allowed.describe()}")


def check_option_ranges(options: Any, ranges: Mapping[str, OptionRange]) -> None:
    """:func:`check_ranges` on the fields of the dataclass ``options``: the options of a program, declared once."""
    check_ranges({option.name: getattr(options, option.name) for option in fields(options)}, ranges)
