"""What every reader shares: the error type, the skip-or-raise rule for bad rows, text, CSV and JSON-lines files read
strictly, and the one text normaliser.

Readers are strict: bad input raises :class:`DataFormatError` (a ``ValueError``) naming the file, the line (or CSV
row) and what was expected; a missing file raises ``FileNotFoundError``. With ``skip_bad_rows=True`` bad *query* rows
are dropped instead, listed in ``QueryLabelData.skipped`` and counted in a logged warning.
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
_BOM = b"\xef\xbb\xbf"  # the UTF-8 byte order mark
_AFTER_LONE_CR = re.compile(rb"(?<=\r)(?!\n)")  # where a line ends at a \r not followed by \n (old Mac files)
# The csv module refuses a field over 131,072 characters by default: a long product description is valid CSV.
_CSV_FIELD_LIMIT = 2**31 - 1


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


def _not_utf8(err: UnicodeDecodeError) -> str:
    """Why bytes are not UTF-8, worded alike by every reader: the column on its line, the byte, and the fix (the
    caller names the file and the line)."""
    data = err.object
    line_start = data.rfind(b"\n", 0, err.start) + 1
    column = len(data[line_start : err.start].decode("utf-8", errors="replace")) + 1
    return f"not valid UTF-8 at column {column} (byte 0x{data[err.start]:02x}: {err.reason}); save the file as UTF-8"


def read_text(path: Path) -> str:
    """A text file decoded as UTF-8, a BOM before it dropped (it would start the first row's text)."""
    data = path.read_bytes().removeprefix(_BOM)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise DataFormatError(f"{path}:{line}: {_not_utf8(err)}") from err


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


def parse_json_line(raw: bytes) -> object:
    """One line of a JSON-lines file, decoded as UTF-8 (a BOM before it dropped, as ``json.loads`` of bytes does)
    and parsed. Raises ``ValueError`` whose message says what is wrong, for the caller to locate or skip."""
    try:
        # The line end is not part of the JSON text: left on, a line cut short is reported at column 1 of line 2.
        text = raw.removeprefix(_BOM).decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError as err:
        raise ValueError(_not_utf8(err)) from err
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        # one line is one JSON text: its column says where; "Extra data" is a second object glued to the first
        if err.msg == "Extra data":
            hint = " (one JSON object per line)"
        elif err.pos >= len(text) or err.msg.startswith("Unterminated"):
            hint = " (the line ends before the JSON object does: cut short?)"
        else:
            hint = ""
        raise ValueError(f"malformed JSON at column {err.colno}: {err.msg}{hint}") from err


def json_records(path: Path, needed: Sequence[str]) -> Iterator[tuple[int, dict]]:
    """Yield (line number, object) for every non-blank line of a JSON-lines file (``.gz`` too), each line checked
    to be a JSON object holding the keys ``needed``."""
    if not path.is_file():
        raise FileNotFoundError(f"file not found: {path}")
    for number, raw in enumerate(iter_lines(path), start=1):
        if not raw.strip():
            continue
        try:
            record = parse_json_line(raw)
        except ValueError as err:
            raise DataFormatError(f"{path}:{number}: {err}") from err
        if not isinstance(record, dict):
            raise DataFormatError(f"{path}:{number}: expected a JSON object, got {type(record).__name__}")
        missing = [key for key in needed if key not in record]
        if missing:
            raise DataFormatError(
                f"{path}:{number}: missing key(s) {', '.join(missing)} (keys: {', '.join(map(str, record))})"
            )
        yield number, record


def _csv_lines(path: Path) -> Iterator[str]:
    """The physical lines of a CSV file (``.gz`` too), each decoded as UTF-8 on its own so that a bad byte names its
    line; line ends are kept for ``csv.reader`` to join quoted newlines, and a UTF-8 BOM (Excel writes one) is
    dropped. Lines end at ``\\n``, ``\\r\\n`` or a lone ``\\r``, as in a file opened with ``newline=""``; splitting
    the bytes there is safe, as no multibyte UTF-8 character holds those bytes."""
    number = 0
    for raw in iter_lines(path):
        for piece in _AFTER_LONE_CR.split(raw) if b"\r" in raw else (raw,):
            if not piece:  # after a lone \r that ends the file
                continue
            number += 1
            try:
                line = (piece.removeprefix(_BOM) if number == 1 else piece).decode("utf-8")
            except UnicodeDecodeError as err:
                raise DataFormatError(f"{path}:{number}: {_not_utf8(err)}") from err
            yield line


def csv_records(path: Path, needed: Sequence[str], delimiter: str = ",") -> Iterator[tuple[int, int, list[str]]]:
    """Yield (data row number from 1, first line number, values of ``needed``) for every record of a CSV file with
    a header (``delimiter="\\t"`` for TSV; ``.gz`` too). Blank lines are skipped; quoted fields may hold newlines.

    Every record must have the header's number of fields: one more is most often a delimiter inside a value that
    was not quoted, which would shift every later value into the wrong column."""
    if not path.is_file():
        raise FileNotFoundError(f"file not found: {path}")
    lines = _csv_lines(path)
    if csv.field_size_limit() < _CSV_FIELD_LIMIT:
        csv.field_size_limit(_CSV_FIELD_LIMIT)
    reader = csv.reader(lines, delimiter=delimiter)
    try:
        header = next(reader, None)
        if header is None:
            raise DataFormatError(f"{path}:1: empty file, expected a header with columns {', '.join(needed)}")
        columns: dict[str, int] = {}
        for i, name in enumerate(header):
            first = columns.setdefault(name.strip(), i)
            if first != i:
                raise DataFormatError(
                    f"{path}:1: column {name.strip()!r} appears twice in the header (fields {first + 1} and {i + 1})"
                )
        missing = [name for name in needed if name not in columns]
        if missing:
            raise DataFormatError(f"{path}:1: missing column(s) {', '.join(missing)} (header: {', '.join(header)})")
        indices = [columns[name] for name in needed]
        width = len(header)
        delimiter_name = {",": "comma", "\t": "tab"}.get(delimiter, repr(delimiter))
        row_number = 0  # blank lines are not rows
        start = reader.line_num + 1
        for record in reader:
            if len(record) <= 1 and not any(field.strip() for field in record):
                start = reader.line_num + 1
                continue  # a blank line
            row_number += 1
            if len(record) != width:
                hint = (
                    f"an unquoted {delimiter_name} inside a value? quote the value"
                    if len(record) > width
                    else "a value or a delimiter missing?"
                )
                raise DataFormatError(
                    f"{path}:{start}: row {row_number} has {len(record)} fields, expected {width} as in the header "
                    f"({hint})"
                )
            yield row_number, start, [record[i] for i in indices]
            start = reader.line_num + 1
    except csv.Error as err:
        raise DataFormatError(f"{path}:{reader.line_num}: malformed CSV: {err}") from err
    finally:
        lines.close()


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
