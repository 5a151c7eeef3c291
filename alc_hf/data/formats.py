"""What every reader shares: the error type, the skip-or-raise rule for bad rows, text, CSV and JSON-lines files read
strictly, and the one text normaliser.

Readers are strict: bad input raises :class:`DataFormatError` (a ``ValueError``) naming the file, the line (or CSV
row) and what was expected; a missing file raises ``FileNotFoundError``. With ``skip_bad_rows=True`` bad *query* rows
are dropped instead, listed in ``XMCData.skipped`` and counted in a logged warning.
"""

from __future__ import annotations

import csv
import gzip
import json
import logging
import re
from collections.abc import Iterator, Sequence
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


def as_id(value: object) -> str | None:
    """A row id as text: a non-empty string or an integer (JSON and Parquet ids are often numbers), stripped; None
    for anything else (a float, a boolean, null), for the caller to report where it found it."""
    if isinstance(value, bool) or not isinstance(value, str | int) or not str(value).strip():
        return None
    return str(value).strip()


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


def iter_lines(path: Path) -> Iterator[bytes]:
    """The lines of a file as bytes, gunzipped when its name ends in ``.gz``; a broken file is a located error."""
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rb") as handle:
            yield from handle
    except (OSError, EOFError) as err:  # gzip.BadGzipFile is an OSError; a truncated gzip raises EOFError
        raise DataFormatError(
            f"{path}: cannot be read as {'gzip' if path.name.endswith('.gz') else 'a file'}: {err}"
        ) from err


def json_records(path: Path, needed: Sequence[str]) -> Iterator[tuple[int, dict]]:
    """Yield (line number, object) for every non-blank line of a JSON-lines file (``.gz`` too), each line checked
    to be a JSON object holding the keys ``needed``."""
    if not path.is_file():
        raise FileNotFoundError(f"file not found: {path}")
    for number, raw in enumerate(iter_lines(path), start=1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
        except ValueError as err:  # JSONDecodeError and UnicodeDecodeError
            raise DataFormatError(f"{path}:{number}: malformed JSON: {err}") from None
        if not isinstance(record, dict):
            raise DataFormatError(f"{path}:{number}: expected a JSON object, got {type(record).__name__}")
        missing = [key for key in needed if key not in record]
        if missing:
            raise DataFormatError(
                f"{path}:{number}: missing key(s) {', '.join(missing)} (keys: {', '.join(map(str, record))})"
            )
        yield number, record


def _open_csv(path: Path, needed: Sequence[str], delimiter: str) -> tuple[csv.reader, dict[str, int], object]:
    if not path.is_file():
        raise FileNotFoundError(f"file not found: {path}")
    handle = open(path, newline="", encoding="utf-8")  # noqa: SIM115 - closed by the caller
    reader = csv.reader(handle, delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        handle.close()
        raise DataFormatError(f"{path}:1: empty file, expected a header with columns {', '.join(needed)}") from None
    columns = {name.strip(): i for i, name in enumerate(header)}
    missing = [name for name in needed if name not in columns]
    if missing:
        handle.close()
        raise DataFormatError(f"{path}:1: missing column(s) {', '.join(missing)} (header: {', '.join(header)})")
    return reader, columns, handle


def csv_records(path: Path, needed: Sequence[str], delimiter: str = ",") -> Iterator[tuple[int, int, list[str]]]:
    """Yield (data row number from 1, first line number, values of ``needed``) for every record of a CSV file with
    a header (``delimiter="\\t"`` for TSV). Blank lines are skipped; quoted fields may hold newlines."""
    reader, columns, handle = _open_csv(path, needed, delimiter)
    indices = [columns[name] for name in needed]
    width = max(indices) + 1
    try:
        start = reader.line_num + 1
        for row_number, record in enumerate(reader, start=1):
            if len(record) < width:
                if not any(field.strip() for field in record):
                    start = reader.line_num + 1
                    continue  # a blank line
                raise DataFormatError(
                    f"{path}:{start}: row {row_number} has {len(record)} fields, expected at least {width}"
                )
            yield row_number, start, [record[i] for i in indices]
            start = reader.line_num + 1
    except csv.Error as err:
        raise DataFormatError(f"{path}:{reader.line_num}: malformed CSV: {err}") from err
    except UnicodeDecodeError as err:
        raise DataFormatError(f"{path}: not valid UTF-8 ({err.reason})") from err
    finally:
        handle.close()


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
