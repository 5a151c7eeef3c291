"""Product-matching tables in the WDC Products / DeepMatcher layout, read into :class:`QueryLabelData`:
``tableA.csv`` (the queries), ``tableB.csv`` (the catalog) and ``train.csv`` / ``valid.csv`` / ``test.csv`` labelled
pairs. Parsed with a real CSV reader (descriptions hold quoted newlines); the rules for bad input are
:mod:`alc_hf.data.formats`' and :mod:`alc_hf.data.labelled_pairs`'."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from alc_hf.core.query_labels import QueryLabelData
from alc_hf.data.formats import BadRows, DataFormatError, check_choice, csv_records, warn_skipped
from alc_hf.data.labelled_pairs import LabelledPairs

__all__ = ["TABLE_SPLITS", "read_product_tables"]

TABLE_SPLITS = ("train", "valid", "test")


def _read_table(path: Path, text_fields: Sequence[str]) -> tuple[dict[str, int], list[str], list[str | None]]:
    """Read tableA/B: id -> position, texts in file order, and per position the place+reason if the text is bad."""
    ids: dict[str, int] = {}
    texts: list[str] = []
    problems: list[str | None] = []
    for row_number, line, values in csv_records(path, ("id", *text_fields)):
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
        for row_number, line, values in csv_records(path, ("ltable_id", "rtable_id", "label"))
    ]


def read_product_tables(
    data_dir: str | Path,
    split: str,
    text_fields: Sequence[str] = ("brand", "title"),
    skip_bad_rows: bool = False,
) -> QueryLabelData:
    """Read one split of a WDC Products / DeepMatcher folder as queries (tableA) against a catalog (tableB).

    * queries: every distinct ``ltable_id`` of ``{split}.csv``, in order of first appearance, text from tableA
      (``query_ids`` holds the ``ltable_id``);
    * labels: all of tableB in file order;
    * positives: the ``rtable_id`` of the split's ``label == 1`` rows; the ``cluster_id`` columns are never used;
    * negatives: the ``rtable_id`` of the split's ``label == 0`` rows (the labelled hard negatives of each block).

    What evaluation makes of it (ground truth over every split, the identical-text filter, the catalog view) lives
    with the evaluation views (:mod:`alc_hf.data.views`).

    Args:
        data_dir: the folder with ``tableA.csv``, ``tableB.csv``, ``train.csv``, ``valid.csv``, ``test.csv``.
        split: ``"train"``, ``"valid"`` or ``"test"``.
        text_fields: the table columns joined by ``" "`` (empty values skipped) into each text.
        skip_bad_rows: drop the queries of bad pair rows (unknown ids, a label other than 0/1, an empty query
            text) instead of raising; recorded in ``skipped``. An empty tableB text is always an error.

    Raises:
        ValueError: a bad option.
        FileNotFoundError: a needed file is missing.
        DataFormatError: bad content; the message names the file, the line and the CSV row. A pair labelled both 1
            and 0 is always an error naming both lines (never skipped); an exact repeat of a row counts once, with a
            logged warning (:class:`~alc_hf.data.labelled_pairs.LabelledPairs`).
    """
    check_choice("split", split, TABLE_SPLITS)
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

    pairs_path = data_dir / f"{split}.csv"
    problems = BadRows(pairs_path, skip_bad_rows)
    rows = _read_pairs(pairs_path)
    if not rows:
        raise DataFormatError(f"{pairs_path}: no rows after the header (split {split!r} is empty)")
    lines = [line for _, line, _, _, _ in rows]
    pairs = LabelledPairs(lambda row: f"{pairs_path}:{lines[row]}", marks=("label 1", "label 0"))
    bad_queries: set[str] = set()

    def bad(line: int, reason: str, ltable_id: str | None) -> None:
        problems.report(line, reason)
        if ltable_id is not None:
            bad_queries.add(ltable_id)

    for row, (row_number, line, left, right, label) in enumerate(rows):
        if left not in a_ids:
            bad(line, f"row {row_number}: ltable_id {left!r} not found in tableA.csv", None)
            continue
        if right not in b_ids:
            bad(line, f"row {row_number}: rtable_id {right!r} not found in tableB.csv", left)
            continue
        if label not in ("0", "1"):
            bad(line, f"row {row_number}: label {label!r}, expected 0 or 1", left)
            continue
        known_queries = len(pairs.query_keys)
        pairs.add(row, left, b_ids[right], right, label == "1")
        problem = a_problems[a_ids[left]]
        if len(pairs.query_keys) > known_queries and problem is not None:
            bad(line, f"row {row_number}: ltable_id {left!r}: {problem}", left)
    pairs.warn_repeats(source)

    keep = np.array([left not in bad_queries for left in pairs.query_keys], dtype=bool)
    query_ids = [left for left, kept in zip(pairs.query_keys, keep, strict=True) if kept]
    warn_skipped(source, problems.skipped)
    return QueryLabelData(
        queries=[a_texts[a_ids[left]] for left in query_ids],
        labels=labels,
        positives=pairs.positives().select_rows(keep),
        negatives=pairs.negatives().select_rows(keep),
        source=source,
        skipped=problems.skipped,
        query_ids=query_ids,
    )
