"""Readers for the published on-disk forms of query–label data, each returning an :class:`XMCData`.

* :func:`read_xmc` — Extreme Classification Repository datasets (e.g. LF-AmazonTitles-131K), in either the
  JSON-lines form (``trn.json.gz`` / ``tst.json.gz`` / ``lbl.json.gz``) or the raw-text form (``trn_X.txt``,
  ``Y.txt``, ``trn_X_Y.txt`` ...), plus the optional ``filter_labels_{train,test}.txt`` reciprocal-pair files.
* :func:`read_filter_pairs` — one such filter file.
* :func:`read_product_tables` — the WDC Products / deepmatcher layout (``tableA.csv``, ``tableB.csv`` and the
  ``train.csv`` / ``valid.csv`` / ``test.csv`` labelled pairs).

Every reader is strict: bad input raises :class:`DataFormatError` (a ``ValueError``) naming the file, the line
(or CSV row) and what was expected, and a missing file raises ``FileNotFoundError``. With ``skip_bad_rows=True``
bad *query* rows are dropped instead, listed in ``XMCData.skipped`` and counted in a logged warning. Label rows
can never be dropped from the XMC forms (every positive index would shift), so a bad label row is always an error.
"""

from __future__ import annotations

import csv
import gzip
import json
import logging
import math
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from alc_hf.data.xmc import RaggedIds, XMCData, select_pair_rows

__all__ = ["DataFormatError", "read_filter_pairs", "read_product_tables", "read_xmc"]

logger = logging.getLogger(__name__)

_XMC_SPLITS = ("trn", "tst")
_TABLE_SPLITS = ("train", "valid", "test")
_TEXT_OPTIONS = ("title", "title+content")
_GROUND_TRUTH_OPTIONS = ("split", "all_splits")
_FILTER_FILES = {"trn": "filter_labels_train.txt", "tst": "filter_labels_test.txt"}

# One row of a sparse ``X_Y`` file: zero or more ``label:value`` tokens separated by blanks.
_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_SPARSE_ROW = re.compile(rf"[ \t]*(?:\d+:{_NUMBER}(?:[ \t]+\d+:{_NUMBER})*)?[ \t]*")
_SPARSE_LABEL = re.compile(r"(\d+):")
_WORD = re.compile(r"[^\W_]+")  # a run of Unicode letters/digits


class DataFormatError(ValueError):
    """A data file does not have the expected form; the message names the file, the line or row, and why."""


# --------------------------------------------------------------------------------------------------------------
# small helpers


def _check_choice(name: str, value: object, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(repr(a) for a in allowed)}; got {value!r}")


def _split_lines(text: str) -> list[str]:
    """Split on ``\\n`` only (``str.splitlines`` also splits on \\x1c, \\u2028 ... which occur inside titles).

    A final newline does not start an extra line, and a trailing ``\\r`` is removed from every line.
    """
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if "\r" in text:
        lines = [line[:-1] if line.endswith("\r") else line for line in lines]
    return lines


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        line = path.read_bytes()[: err.start].count(b"\n") + 1
        raise DataFormatError(f"{path}:{line}: not valid UTF-8 ({err.reason})") from err


def _warn_skipped(source: str, skipped: list[tuple[str, str]]) -> None:
    if skipped:
        logger.warning("%s: skipped %d bad row(s), first %s: %s", source, len(skipped), skipped[0][0], skipped[0][1])


def _ragged_from_counts(counts: Sequence[int] | np.ndarray, ids: Sequence[int] | np.ndarray) -> RaggedIds:
    counts = np.asarray(counts, dtype=np.int64)
    offsets = np.zeros(counts.size + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    return RaggedIds(offsets, np.asarray(ids, dtype=np.int64))


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
    text = _read_text(path)
    lines = _split_lines(text)
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
    non_blank = (n for n, line in enumerate(_split_lines(_read_text(path)), start=1) if line.strip())
    line_number = next(n for i, n in enumerate(non_blank) if i == k)
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


def _iter_lines(path: Path) -> Iterator[bytes]:
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rb") as handle:
            yield from handle
    except (OSError, EOFError) as err:  # gzip.BadGzipFile is an OSError; a truncated gzip raises EOFError
        raise DataFormatError(
            f"{path}: cannot be read as {'gzip' if path.name.endswith('.gz') else 'a file'}: {err}"
        ) from err


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
    skipped: list[tuple[str, str]] = []
    with_content = text == "title+content"
    number = 0

    def bad(reason: str) -> None:
        if skip_bad_rows and not is_labels:
            skipped.append((f"{path.name}:{number}", reason))
        else:
            suffix = " (a label row cannot be skipped)" if is_labels and skip_bad_rows else ""
            raise DataFormatError(f"{path}:{number}: {reason}{suffix}")

    for number, raw in enumerate(_iter_lines(path), start=1):
        try:
            obj = json.loads(raw)
        except ValueError as err:  # JSONDecodeError and UnicodeDecodeError
            bad(f"malformed JSON: {err}")
            continue
        if not isinstance(obj, dict):
            bad(f"expected a JSON object, got {type(obj).__name__}")
            continue
        title = obj.get("title")
        if not isinstance(title, str):
            bad("expected a string 'title'" + ("" if "title" in obj else " (missing)"))
            continue
        row_text = title.strip()
        if with_content:
            content = obj.get("content")
            if content is not None and not isinstance(content, str):
                bad("expected 'content' to be a string")
                continue
            content = (content or "").strip()
            if content:
                row_text = f"{row_text}. {content}" if row_text else content
        if not row_text:
            bad("empty text (title" + (" and content)" if with_content else ")"))
            continue
        targets = obj.get("target_ind")
        if targets is None:
            targets = []
        if not isinstance(targets, list) or not all(type(t) is int for t in targets):
            if not is_labels:
                bad(f"expected 'target_ind' to be a list of integer label indices, got {str(targets)[:60]}")
                continue
            targets = []  # a label's own targets are not used
        if not is_labels and num_labels is not None and targets and not all(0 <= t < num_labels for t in targets):
            first = next(t for t in targets if not 0 <= t < num_labels)
            bad(f"label index {first} in 'target_ind' is out of range [0, {num_labels})")
            continue
        texts.append(row_text)
        kept_lines.append(number)
        counts.append(len(targets))
        flat.extend(targets)
    return texts, np.asarray(kept_lines, dtype=np.int64), counts, flat, skipped, number


# --------------------------------------------------------------------------------------------------------------
# XMC: raw-text form


def _read_text_lines(path: Path, *, is_labels: bool, skip_bad_rows: bool) -> tuple[list[str], list[tuple[str, str]]]:
    """One text per line; returns all lines (empty ones kept as ``""``) and the empty lines as skipped entries."""
    lines = _split_lines(_read_text(path))
    skipped: list[tuple[str, str]] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            if skip_bad_rows and not is_labels:
                skipped.append((f"{path.name}:{number}", "empty text"))
            else:
                suffix = " (a label row cannot be skipped)" if is_labels and skip_bad_rows else ""
                raise DataFormatError(f"{path}:{number}: empty text, expected one text per line{suffix}")
    return lines, skipped


def _read_sparse(
    path: Path, num_rows_expected: int, num_cols_expected: int, skip_bad_rows: bool
) -> tuple[RaggedIds, np.ndarray, list[tuple[str, str]]]:
    """Read a sparse ``X_Y`` matrix; returns positives for all rows, a mask of good rows, and skipped entries.

    Bad rows (a malformed token or a label index >= num_cols) are raised, or with ``skip_bad_rows`` marked bad.
    A header that is malformed or disagrees with the number of row lines or the other files is always an error.
    """
    lines = _split_lines(_read_text(path))
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
    skipped: list[tuple[str, str]] = []

    def bad(row: int, reason: str) -> None:
        if not skip_bad_rows:
            raise DataFormatError(f"{path}:{row + 2}: {reason}")
        good[row] = False
        skipped.append((f"{path.name}:{row + 2}", reason))

    fullmatch = _SPARSE_ROW.fullmatch
    for row, line in enumerate(rows):
        if fullmatch(line) is None:
            token = next((t for t in line.split() if not _SPARSE_ROW.fullmatch(t)), line.strip())
            bad(row, f"malformed token {token[:40]!r}, expected 'label:value' pairs separated by spaces")
            rows[row] = ""
    counts = np.fromiter((line.count(":") for line in rows), dtype=np.int64, count=num_rows)
    labels = _SPARSE_LABEL.findall("\n".join(rows))
    ids = np.array(labels, dtype=np.int64) if labels else np.zeros(0, dtype=np.int64)
    positives = _ragged_from_counts(counts, ids)
    out_of_range = ids >= num_cols
    if out_of_range.any():
        for entry in np.flatnonzero(out_of_range):
            row = int(positives.row_of_each_id()[entry])
            if good[row]:
                bad(row, f"label index {int(ids[entry])} >= num_cols {num_cols} from the header")
        skipped.sort(key=lambda s: int(s[0].rsplit(":", 1)[1]))
    return positives, good, skipped


# --------------------------------------------------------------------------------------------------------------
# XMC


def read_xmc(data_dir: str | Path, split: str, text: str = "title", skip_bad_rows: bool = False) -> XMCData:
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
    _check_choice("split", split, _XMC_SPLITS)
    _check_choice("text", text, _TEXT_OPTIONS)
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
        positives = _ragged_from_counts(counts, flat)
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
    _warn_skipped(source, skipped)
    return XMCData(
        queries=queries,
        labels=labels,
        positives=positives,
        filter_pairs=filter_pairs,
        source=source,
        skipped=skipped,
    )


# --------------------------------------------------------------------------------------------------------------
# product tables (WDC Products, deepmatcher layout)


def normalise_text(text: str) -> str:
    """The identical-text key of the catalog-view filter.

    Reading of the README's "lower-cased, non-alphanumerics removed, repeated words collapsed": lower-case; split
    into words at every run of non-alphanumeric characters (Unicode letters and digits are alphanumeric); drop a
    word identical to the word just before it (``"Sony Sony WH-1000"`` -> ``sony wh 1000``, the usual brand +
    title repetition); then remove the separators too, i.e. join the words with nothing, so re-punctuated or
    re-spaced titles (``"WH-1000XM3"`` vs ``"WH1000XM3"``) get the same key.
    """
    words = _WORD.findall(text.lower())
    collapsed = [w for i, w in enumerate(words) if i == 0 or w != words[i - 1]]
    return "".join(collapsed)


def _open_csv(path: Path, needed: Sequence[str]) -> tuple[csv.reader, dict[str, int], object]:
    if not path.is_file():
        raise FileNotFoundError(f"file not found: {path}")
    handle = open(path, newline="", encoding="utf-8")  # noqa: SIM115 - closed by the caller
    reader = csv.reader(handle)
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


def _csv_records(path: Path, needed: Sequence[str]) -> Iterator[tuple[int, int, list[str]]]:
    """Yield (data row number from 1, first line number, values of ``needed``) for every record of the CSV."""
    reader, columns, handle = _open_csv(path, needed)
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


def _read_table(path: Path, text_fields: Sequence[str]) -> tuple[dict[str, int], list[str], list[str | None]]:
    """Read tableA/B: id -> position, texts in file order, and per position the place+reason if the text is bad."""
    ids: dict[str, int] = {}
    texts: list[str] = []
    problems: list[str | None] = []
    for row_number, line, values in _csv_records(path, ("id", *text_fields)):
        row_id = values[0].strip()
        if not row_id:
            raise DataFormatError(f"{path}:{line}: row {row_number} has an empty id")
        if row_id in ids:
            raise DataFormatError(f"{path}:{line}: row {row_number} repeats id {row_id!r}")
        text = " ".join(v.strip() for v in values[1:] if v.strip())
        ids[row_id] = len(texts)
        texts.append(text)
        problems.append(
            None if text else f"{path.name}:{line} (row {row_number}): empty text in {'+'.join(text_fields)}"
        )
    return ids, texts, problems


def _read_pairs(path: Path) -> list[tuple[int, int, str, str, str]]:
    """(row number, line, ltable_id, rtable_id, label) of every pair; label checked to be 0 or 1 later."""
    return [
        (row_number, line, values[0].strip(), values[1].strip(), values[2].strip())
        for row_number, line, values in _csv_records(path, ("ltable_id", "rtable_id", "label"))
    ]


def read_product_tables(
    data_dir: str | Path,
    split: str,
    text_fields: Sequence[str] = ("brand", "title"),
    ground_truth: str = "split",
    skip_bad_rows: bool = False,
) -> XMCData:
    """Read one split of a WDC Products / deepmatcher folder as queries (tableA) against a catalog (tableB).

    * queries: every distinct ``ltable_id`` of ``{split}.csv``, in order of first appearance, text from tableA;
    * labels: all of tableB in file order;
    * positives: the ``rtable_id`` of the split's ``label == 1`` rows (``ground_truth="all_splits"``: of the
      ``label == 1`` rows of train, valid and test for those queries); the ``cluster_id`` columns are never used;
    * negatives: the ``rtable_id`` of the split's ``label == 0`` rows (the labelled hard negatives of each block);
    * filter_pairs: per query, the tableB offers whose :func:`normalise_text` key equals the query's (and is not
      empty), unless they are positives of that query — unlabelled duplicates in the catalog view.

    Args:
        data_dir: the folder with ``tableA.csv``, ``tableB.csv``, ``train.csv``, ``valid.csv``, ``test.csv``.
        split: ``"train"``, ``"valid"`` or ``"test"``.
        text_fields: the table columns joined by ``" "`` (empty values skipped) into each text.
        ground_truth: ``"split"`` or ``"all_splits"``.
        skip_bad_rows: drop the queries of bad pair rows (unknown ids, a label other than 0/1, an empty query
            text) instead of raising; recorded in ``skipped``. An empty tableB text is always an error.

    Raises:
        ValueError: a bad option.
        FileNotFoundError: a needed file is missing.
        DataFormatError: bad content; the message names the file, the line and the CSV row.
    """
    _check_choice("split", split, _TABLE_SPLITS)
    _check_choice("ground_truth", ground_truth, _GROUND_TRUTH_OPTIONS)
    if isinstance(text_fields, str):
        text_fields = (text_fields,)
    text_fields = tuple(text_fields)
    if not text_fields:
        raise ValueError("text_fields must name at least one column")
    data_dir = Path(data_dir)
    source = f"{data_dir} [{split}]"

    a_ids, a_texts, a_problems = _read_table(data_dir / "tableA.csv", text_fields)
    b_ids, labels, b_problems = _read_table(data_dir / "tableB.csv", text_fields)
    first_bad_label = next((p for p in b_problems if p is not None), None)
    if first_bad_label is not None:  # a catalog row cannot be dropped: it may be another query's positive
        raise DataFormatError(f"{data_dir}/{first_bad_label}")

    pair_splits = _TABLE_SPLITS if ground_truth == "all_splits" else (split,)
    pairs_by_split = {name: _read_pairs(data_dir / f"{name}.csv") for name in pair_splits}

    skipped: list[tuple[str, str]] = []
    query_order: dict[str, int] = {}  # ltable_id -> query position (before dropping)
    bad_queries: set[str] = set()
    positives: list[list[int]] = []
    negatives: list[list[int]] = []
    file_name = f"{split}.csv"

    def bad(place: str, reason: str, ltable_id: str | None) -> None:
        if not skip_bad_rows:
            raise DataFormatError(f"{data_dir / place.split(':')[0]}:{place.split(':', 1)[1]}: {reason}")
        skipped.append((place, reason))
        if ltable_id is not None:
            bad_queries.add(ltable_id)

    def check_pair(name: str, row_number: int, line: int, left: str, right: str, label: str) -> bool:
        place = f"{name}.csv:{line}"
        if left not in a_ids:
            bad(place, f"row {row_number}: ltable_id {left!r} not found in tableA.csv", None)
            return False
        if right not in b_ids:
            bad(place, f"row {row_number}: rtable_id {right!r} not found in tableB.csv", left)
            return False
        if label not in ("0", "1"):
            bad(place, f"row {row_number}: label {label!r}, expected 0 or 1", left)
            return False
        return True

    for row_number, line, left, right, label in pairs_by_split[split]:
        if not check_pair(split, row_number, line, left, right, label):
            continue
        if left not in query_order:
            query_order[left] = len(positives)
            positives.append([])
            negatives.append([])
            problem = a_problems[a_ids[left]]
            if problem is not None:
                bad(f"{file_name}:{line}", f"row {row_number}: ltable_id {left!r}: {problem}", left)
        q = query_order[left]
        target = positives[q] if label == "1" else negatives[q]
        if b_ids[right] not in target:
            target.append(b_ids[right])

    if ground_truth == "all_splits":
        for name, rows in pairs_by_split.items():
            if name == split:
                continue
            for row_number, line, left, right, label in rows:
                if left not in query_order or not check_pair(name, row_number, line, left, right, label):
                    continue
                q = query_order[left]
                if label == "1" and b_ids[right] not in positives[q]:
                    positives[q].append(b_ids[right])

    keep_ids = [left for left in query_order if left not in bad_queries]
    keep = np.array([left not in bad_queries for left in query_order], dtype=bool)
    queries = [a_texts[a_ids[left]] for left in keep_ids]
    positives = [row for row, k in zip(positives, keep.tolist(), strict=True) if k]
    negatives = [row for row, k in zip(negatives, keep.tolist(), strict=True) if k]

    # Identical-text filter: tableB offers with the query's normalised text that are not its positives.
    by_key: dict[str, list[int]] = {}
    for index, label_text in enumerate(labels):
        key = normalise_text(label_text)
        if key:
            by_key.setdefault(key, []).append(index)
    filter_rows: list[tuple[int, int]] = []
    for q, query_text in enumerate(queries):
        same = by_key.get(normalise_text(query_text))
        if same:
            own = set(positives[q])
            filter_rows.extend((q, b) for b in same if b not in own)
    filter_pairs = np.array(filter_rows, dtype=np.int64).reshape(-1, 2)

    _warn_skipped(source, skipped)
    return XMCData(
        queries=queries,
        labels=labels,
        positives=RaggedIds.from_lists(positives),
        filter_pairs=filter_pairs,
        negatives=RaggedIds.from_lists(negatives),
        source=source,
        skipped=skipped,
    )
