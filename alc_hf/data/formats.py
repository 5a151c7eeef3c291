"""What every reader shares: the error type, the skip-or-raise rule for bad rows, text files read strictly, and the
one text normaliser.

Readers are strict: bad input raises :class:`DataFormatError` (a ``ValueError``) naming the file, the line (or CSV
row) and what was expected; a missing file raises ``FileNotFoundError``. With ``skip_bad_rows=True`` bad *query* rows
are dropped instead, listed in ``XMCData.skipped`` and counted in a logged warning.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path

logger = logging.getLogger(__name__)

_WORD = re.compile(r"[^\W_]+")  # a run of Unicode letters/digits


class DataFormatError(ValueError):
    """A data file does not have the expected form; the message names the file, the line or row, and why."""


class BadRows:
    """The skip-or-raise rule for the bad rows of one file: :meth:`report` raises a :class:`DataFormatError`
    naming ``path`` and the line, or with ``skip`` records ``(file:line, reason)`` in :attr:`skipped` and returns,
    for the caller to drop the row. Rows that cannot be dropped (``can_skip=False``: a label row, which every
    positive index would shift past) always raise."""

    def __init__(self, path: Path, skip: bool, can_skip: bool = True) -> None:
        self.path = path
        self.skip = skip
        self.can_skip = can_skip
        self.skipped: list[tuple[str, str]] = []

    def report(self, line: int, reason: str) -> None:
        if self.skip and self.can_skip:
            self.skipped.append((f"{self.path.name}:{line}", reason))
            return
        suffix = " (a label row cannot be skipped)" if self.skip else ""
        raise DataFormatError(f"{self.path}:{line}: {reason}{suffix}")


def warn_skipped(source: str, skipped: list[tuple[str, str]]) -> None:
    if skipped:
        logger.warning("%s: skipped %d bad row(s), first %s: %s", source, len(skipped), skipped[0][0], skipped[0][1])


def check_choice(name: str, value: object, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(repr(a) for a in allowed)}; got {value!r}")


def split_lines(text: str) -> list[str]:
    """Split on ``\\n`` only (``str.splitlines`` also splits on \\x1c, \\u2028 ... which occur inside titles).

    A final newline does not start an extra line, and a trailing ``\\r`` is removed from every line.
    """
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if "\r" in text:
        lines = [line[:-1] if line.endswith("\r") else line for line in lines]
    return lines


def read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        line = path.read_bytes()[: err.start].count(b"\n") + 1
        raise DataFormatError(f"{path}:{line}: not valid UTF-8 ({err.reason})") from err


def normalise_text(text: str) -> str:
    """The identity of a text, as the catalog view's identical-text filter and the built-in catalog's distinct
    offers understand it.

    Reading of the data README's "lower-cased, non-alphanumerics removed, repeated words collapsed": lower-case;
    split into words at every run of non-alphanumeric characters (Unicode letters and digits are alphanumeric); drop
    a word identical to the word just before it (``"Sony Sony WH-1000"`` -> ``sony wh 1000``, the usual brand +
    title repetition); then remove the separators too, i.e. join the words with nothing, so re-punctuated or
    re-spaced titles (``"WH-1000XM3"`` vs ``"WH1000XM3"``) get the same key.
    """
    words = _WORD.findall(text.lower())
    collapsed = [w for i, w in enumerate(words) if i == 0 or w != words[i - 1]]
    return "".join(collapsed)
