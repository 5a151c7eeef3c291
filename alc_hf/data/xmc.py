"""The Extreme Classification Repository formats (e.g. LF-AmazonTitles-131K), read into :class:`QueryLabelData`.

* :func:`read_xmc` — one split in either the JSON-lines form (``trn.json.gz`` / ``tst.json.gz`` /
  ``lbl.json.gz``) or the raw-text form (``trn_X.txt``, ``Y.txt``, ``trn_X_Y.txt`` ...), with the optional
  ``filter_labels_{train,test}.txt`` reciprocal-pair files;
* :func:`read_filter_pairs` — one such filter file.

Label rows can never be dropped (every positive index would shift), so a bad label row is always an error; the
rest follows :mod:`alc_hf.data.formats`.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np

from alc_hf.core.query_labels import QueryLabelData, RaggedIds, select_pair_rows
from alc_hf.data.formats import (
    BadRows,
    DataFormatError,
    check_choice,
    iter_lines,
    parse_json_line,
    read_text,
    split_lines,
    warn_skipped,
)

__all__ = ["read_filter_pairs", "read_xmc"]

_XMC_SPLITS = ("trn", "tst")
_TEXT_OPTIONS = ("title", "title+content")
_FILTER_FILES = {"trn": "filter_labels_train.txt", "tst": "filter_labels_test.txt"}

# One row of a sparse ``X_Y`` file: zero or more ``label:value`` tokens separated by blanks.
_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_SPARSE_ROW = re.compile(rf"[ \t]*(?:\d+:{_NUMBER}(?:[ \t]+\d+:{_NUMBER})*)?[ \t]*")
_SPARSE_LABEL = re.compile(r"(\d+):")


# --------------------------------------------------------------------------------------------------------------
# filter pairs


def read_filter_pairs(path: str | Path) -> np.ndarray:
    """Read a ``filter_labels_*.txt`` file: ``row_index label_index`` per line, written as floats.

    Blank lines are ignored. Every value must be a finite, non-negative whole number (``1.0e+00`` is fine,
    ``1.5`` is not).

    Returns:
        ``[n, 2]`` int64 array of (query index, label index) pairs in file order.

    Raises:
        FileNotFoundError: the file does not exist.
        DataFormatError: a line without exactly two fields, a value that is not a number, not integral or
            negative; the message names the file and the line.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"filter file not found: {path}")
    text = read_text(path)
    lines = split_lines(text)
    tokens = text.split()
    # Fast path: every non-blank line has exactly two fields and all values convert in one numpy call.
    try:
        if len(tokens) % 2 or any(len(line.split()) != 2 for line in lines if line and not line.isspace()):
            raise ValueError("wrong number of fields")
        values = np.array(tokens, dtype=np.float64).reshape(-1, 2)
        if values.size and not (
            np.isfinite(values).all()
            and (values >= 0).all()
            and (values < 2**53).all()
            and (values == np.floor(values)).all()
        ):
            raise ValueError("bad value")
        return values.astype(np.int64)
    except ValueError:
        pass
    # Slow path: find and report the first bad line.
    for number, line in enumerate(lines, start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2:
            raise DataFormatError(
                f"{path}:{number}: expected 2 whitespace-separated numbers (row_index label_index), "
                f"got {len(fields)} field(s): {line.strip()[:80]!r}"
            )
        for field in fields:
            try:
                value = float(field)
            except ValueError:
                raise DataFormatError(f"{path}:{number}: {field[:40]!r} is not a number") from None
            if not math.isfinite(value) or value != math.floor(value) or value >= 2**53:
                raise DataFormatError(f"{path}:{number}: {field[:40]!r} is not a whole number (an index)")
            if value < 0:
                raise DataFormatError(f"{path}:{number}: {field[:40]!r} is negative (an index must be >= 0)")
    raise DataFormatError(f"{path}: could not be read as pairs of whole numbers")  # pragma: no cover


def _check_filter_pairs(path: Path, pairs: np.ndarray, num_queries: int, num_labels: int) -> None:
    """Raise naming the first line of ``path`` whose query or label index is out of range."""
    if pairs.size == 0:
        return
    bad = (pairs[:, 0] >= num_queries) | (pairs[:, 1] >= num_labels)
    if not bad.any():
        return
    k = int(np.argmax(bad))  # k-th non-blank line of the file
    line_number = [n for n, line in enumerate(split_lines(read_text(path)), start=1) if line.strip()][k]
    q, lab = (int(v) for v in pairs[k])
    if q >= num_queries:
        raise DataFormatError(f"{path}:{line_number}: query index {q} out of range, the split has {num_queries} rows")
    raise DataFormatError(f"{path}:{line_number}: label index {lab} out of range, there are {num_labels} labels")


# --------------------------------------------------------------------------------------------------------------
# XMC: JSON-lines form


def _find(data_dir: Path, *names: str) -> Path | None:
    for name in names:
        if (data_dir / name).is_file():
            return data_dir / name
    return None


def _read_json_lines(
    path: Path, text: str, *, is_labels: bool, num_labels: int | None, skip_bad_rows: bool
) -> tuple[list[str], np.ndarray, list[int], list[int], list[tuple[str, str]], int]:
    """Read one JSON-lines file.

    Returns:
        texts (kept rows), line numbers of the kept rows, per kept row the number of target indices, the flat
        target indices, skipped (place, reason), and the total number of rows (kept or not) in the file.
    """
    texts: list[str] = []
    kept_lines: list[int] = []
    counts: list[int] = []
    flat: list[int] = []
    problems = BadRows(path, skip_bad_rows, can_skip=not is_labels)
    with_content = text == "title+content"
    number = 0
    for number, raw in enumerate(iter_lines(path), start=1):
        try:
            obj = parse_json_line(raw)
        except ValueError as err:  # not UTF-8, or not JSON: the reason is the message
            problems.report(number, str(err))
            continue
        if not isinstance(obj, dict):
            problems.report(number, f"expected a JSON object, got {type(obj).__name__}")
            continue
        title = obj.get("title")
        if not isinstance(title, str):
            problems.report(number, "expected a string 'title'" + ("" if "title" in obj else " (missing)"))
            continue
        row_text = title.strip()
        if with_content:
            content = obj.get("content")
            if content is not None and not isinstance(content, str):
                problems.report(number, "expected 'content' to be a string")
                continue
            content = (content or "").strip()
            if content:
                row_text = f"{row_text}. {content}" if row_text else content
        if not row_text:
            problems.report(number, "empty text (title" + (" and content)" if with_content else ")"))
            continue
        targets = obj.get("target_ind")
        if targets is None:
            targets = []
        if not isinstance(targets, list) or not all(type(t) is int for t in targets):
            if not is_labels:
                problems.report(
                    number, f"expected 'target_ind' to be a list of integer label indices, got {str(targets)[:60]}"
                )
                continue
            targets = []  # a label's own targets are not used
        if not is_labels and num_labels is not None and targets and not all(0 <= t < num_labels for t in targets):
            first = next(t for t in targets if not 0 <= t < num_labels)
            problems.report(number, f"label index {first} in 'target_ind' is out of range [0, {num_labels})")
            continue
        texts.append(row_text)
        kept_lines.append(number)
        counts.append(len(targets))
        flat.extend(targets)
    return texts, np.asarray(kept_lines, dtype=np.int64), counts, flat, problems.skipped, number


# --------------------------------------------------------------------------------------------------------------
# XMC: raw-text form


def _read_text_lines(path: Path, *, is_labels: bool, skip_bad_rows: bool) -> tuple[list[str], list[tuple[str, str]]]:
    """One text per line; returns all lines (empty ones kept as ``""``) and the empty lines as skipped entries."""
    lines = split_lines(read_text(path))
    problems = BadRows(path, skip_bad_rows, can_skip=not is_labels)
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            problems.report(number, "empty text, expected one text per line")
    return lines, problems.skipped


def _read_sparse(
    path: Path, num_rows_expected: int, num_cols_expected: int, skip_bad_rows: bool
) -> tuple[RaggedIds, np.ndarray, list[tuple[str, str]]]:
    """Read a sparse ``X_Y`` matrix; returns positives for all rows, a mask of good rows, and skipped entries.

    Bad rows (a malformed token or a label index >= num_cols) are raised, or with ``skip_bad_rows`` marked bad.
    A header that is malformed or disagrees with the number of row lines or the other files is always an error.
    """
    lines = split_lines(read_text(path))
    if not lines:
        raise DataFormatError(f"{path}:1: empty file, expected a header 'num_rows num_cols'")
    header = lines[0].split()
    if len(header) != 2 or not all(h.isdigit() for h in header):
        raise DataFormatError(f"{path}:1: expected a header 'num_rows num_cols', got {lines[0][:80]!r}")
    num_rows, num_cols = int(header[0]), int(header[1])
    rows = lines[1:]
    if len(rows) != num_rows:
        raise DataFormatError(f"{path}:1: header says {num_rows} rows but the file has {len(rows)} row lines")
    if num_rows != num_rows_expected:
        raise DataFormatError(f"{path}:1: header says {num_rows} rows but the text file has {num_rows_expected} lines")
    if num_cols != num_cols_expected:
        raise DataFormatError(f"{path}:1: header says {num_cols} labels but the label file has {num_cols_expected}")
    good = np.ones(num_rows, dtype=bool)
    problems = BadRows(path, skip_bad_rows)

    def bad(row: int, reason: str) -> None:
        problems.report(row + 2, reason)  # line 1 is the header
        good[row] = False

    fullmatch = _SPARSE_ROW.fullmatch
    for row, line in enumerate(rows):
        if fullmatch(line) is None:
            token = next((t for t in line.split() if not _SPARSE_ROW.fullmatch(t)), line.strip())
            bad(row, f"malformed token {token[:40]!r}, expected 'label:value' pairs separated by spaces")
            rows[row] = ""
    counts = np.fromiter((line.count(":") for line in rows), dtype=np.int64, count=num_rows)
    labels = _SPARSE_LABEL.findall("\n".join(rows))
    positives = RaggedIds.from_lengths(counts, np.array(labels, dtype=np.int64))
    row_of = positives.row_of_each_id()
    for entry in np.flatnonzero(positives.ids >= num_cols):
        row = int(row_of[entry])
        if good[row]:
            bad(row, f"label index {int(positives.ids[entry])} >= num_cols {num_cols} from the header")
    problems.skipped.sort(key=lambda place_reason: int(place_reason[0].rsplit(":", 1)[1]))
    return positives, good, problems.skipped


# --------------------------------------------------------------------------------------------------------------
# XMC


def read_xmc(data_dir: str | Path, split: str, text: str = "title", skip_bad_rows: bool = False) -> QueryLabelData:
    """Read one split of an Extreme Classification Repository dataset (e.g. LF-AmazonTitles-131K).

    Two published forms are recognised (JSON-lines is preferred when both are complete):

    * JSON-lines: ``{split}.json.gz`` (queries) and ``lbl.json.gz`` (labels), or the same files uncompressed
      (``.json``); one object per line with ``uid``, ``title``, ``content`` and ``target_ind`` (indices into
      the lines of ``lbl.json.gz``); ``target_rel`` is ignored.
    * raw text: ``{split}_X.txt`` (one query per line), ``Y.txt`` (one label per line) and ``{split}_X_Y.txt``
      (header ``num_rows num_cols`` then one line of ``label:value`` tokens per query; values are ignored).

    If ``filter_labels_train.txt`` (trn) or ``filter_labels_test.txt`` (tst) is present it becomes
    ``filter_pairs``; its indices refer to the rows of the file, and are renumbered when rows are skipped.

    Args:
        data_dir: the dataset folder.
        split: ``"trn"`` or ``"tst"``.
        text: ``"title"``, or ``"title+content"`` (title and non-empty content joined by ``". "``). The raw-text
            form has one text per line, used as is for both.
        skip_bad_rows: drop bad query rows (recorded in ``skipped``, with a logged warning) instead of raising.
            Missing files, bad headers and bad label rows are always errors.

    Raises:
        ValueError: a bad ``split`` or ``text`` option.
        FileNotFoundError: neither form is complete in ``data_dir``.
        DataFormatError: bad content; the message names the file and line.
    """
    check_choice("split", split, _XMC_SPLITS)
    check_choice("text", text, _TEXT_OPTIONS)
    data_dir = Path(data_dir)
    source = f"{data_dir} [{split}]"
    json_queries = _find(data_dir, f"{split}.json.gz", f"{split}.json")
    json_labels = _find(data_dir, "lbl.json.gz", "lbl.json")
    raw_names = (f"{split}_X.txt", "Y.txt", f"{split}_X_Y.txt")
    raw_complete = all((data_dir / name).is_file() for name in raw_names)

    if json_queries is not None and json_labels is not None:
        labels, _, _, _, _, _ = _read_json_lines(
            json_labels, text, is_labels=True, num_labels=None, skip_bad_rows=skip_bad_rows
        )
        queries, kept_lines, counts, flat, skipped, num_rows = _read_json_lines(
            json_queries, text, is_labels=False, num_labels=len(labels), skip_bad_rows=skip_bad_rows
        )
        positives = RaggedIds.from_lengths(counts, flat)
        keep = np.zeros(num_rows, dtype=bool)
        keep[kept_lines - 1] = True
    elif raw_complete:
        query_lines, skipped = _read_text_lines(data_dir / raw_names[0], is_labels=False, skip_bad_rows=skip_bad_rows)
        labels, _ = _read_text_lines(data_dir / raw_names[1], is_labels=True, skip_bad_rows=skip_bad_rows)
        positives, keep, sparse_skipped = _read_sparse(
            data_dir / raw_names[2], len(query_lines), len(labels), skip_bad_rows
        )
        num_rows = len(query_lines)
        for place, _ in skipped:
            keep[int(place.rsplit(":", 1)[1]) - 1] = False
        skipped = skipped + sparse_skipped
        positives = positives.select_rows(keep)
        queries = [line for line, k in zip(query_lines, keep.tolist(), strict=True) if k]
    else:
        looked_for = [f"{split}.json.gz", f"{split}.json", "lbl.json.gz", "lbl.json", *raw_names]
        raise FileNotFoundError(
            f"no XMC data for split {split!r} in {data_dir}: looked for {', '.join(looked_for)} "
            f"(need {split}.json[.gz] + lbl.json[.gz], or {' + '.join(raw_names)})"
        )

    filter_path = data_dir / _FILTER_FILES[split]
    filter_pairs = np.zeros((0, 2), dtype=np.int64)
    if filter_path.is_file():
        filter_pairs = read_filter_pairs(filter_path)
        _check_filter_pairs(filter_path, filter_pairs, num_rows, len(labels))
        filter_pairs = select_pair_rows(filter_pairs, keep)
    warn_skipped(source, skipped)
    return QueryLabelData(
        queries=queries,
        labels=labels,
        positives=positives,
        filter_pairs=filter_pairs,
        source=source,
        skipped=skipped,
    )
