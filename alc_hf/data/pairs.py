"""Query–label data given as a table of pairs, read into :class:`QueryLabelData`.

* :func:`read_pairs` — one split of (query text, label text[, query id, label id, relevance]) rows: CSV, JSON-lines
  or Parquet files in a folder (one per split, named by the split), or a mapping from split to such a file or to a
  ``datasets.Dataset`` (a ``DatasetDict`` is one);
* :class:`~alc_hf.data.labelled_pairs.LabelledPairs` turns the (query, label, relevant) rows into per-query
  positives and negatives, with the rule every pair reader shares (a contradiction is an error, a repeat counts once).

Strict like every reader (:mod:`alc_hf.data.formats`): bad input is a :class:`DataFormatError` naming the file (or
the in-memory split), the line or row, and what was expected. ``datasets`` is never imported here: a ``Dataset``
can only come from a caller that imported it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alc_hf.core.query_labels import QueryLabelData
from alc_hf.data.formats import DataFormatError, as_id, csv_records, json_records
from alc_hf.data.labelled_pairs import LabelledPairs

__all__ = ["CALIBRATION_SPLITS", "PAIR_FILE_SUFFIXES", "LabelledPairs", "pair_sources", "read_pairs"]

# The names a split a threshold is calibrated on goes by, in the order they are looked for.
CALIBRATION_SPLITS = ("validation", "valid", "dev")
PAIR_FILE_SUFFIXES = (".csv", ".csv.gz", ".jsonl", ".jsonl.gz", ".parquet")


@dataclass
class _PairTable:
    """The needed columns of one split, whatever it was read from; ``locate(i)`` names the place of row ``i``."""

    name: str
    columns: dict[str, list]
    locate: Callable[[int], str]

    @property
    def num_rows(self) -> int:
        return len(next(iter(self.columns.values())))

    def text(self, column: str, row: int) -> str:
        value = self.columns[column][row]
        if not isinstance(value, str) or not value.strip():
            raise DataFormatError(f"{self.locate(row)}: column {column!r}: expected a non-empty text, found {value!r}")
        return value.strip()

    def key(self, column: str, row: int) -> str:
        key = as_id(self.columns[column][row])
        if key is None:
            found = self.columns[column][row]
            raise DataFormatError(f"{self.locate(row)}: column {column!r}: expected an id, found {found!r}")
        return key

    def relevant(self, column: str, row: int) -> bool:
        value = self.columns[column][row]
        text = value.strip() if isinstance(value, str) else value
        if text in ("0", "1") or (isinstance(value, int | float) and value in (0, 1)):
            return text in ("1", 1)
        raise DataFormatError(
            f"{self.locate(row)}: column {column!r}: relevance {value!r}, expected 0 (not relevant) or 1 (relevant)"
        )


def _is_dataset(value: object) -> bool:
    datasets = sys.modules.get("datasets")  # a Dataset exists only where its library was imported
    return datasets is not None and isinstance(value, datasets.Dataset)


def pair_sources(source: str | Path | Mapping[str, Any]) -> tuple[str, dict[str, Path | Any]]:
    """``(name, {split: file or Dataset})`` of a pairs source: a folder of ``<split><suffix>`` files (suffixes
    :data:`PAIR_FILE_SUFFIXES`), or a mapping from split to a file or a ``datasets.Dataset``."""
    if isinstance(source, Mapping):
        splits = {}
        for split, value in source.items():
            if not (isinstance(value, str | Path) or _is_dataset(value)):
                raise TypeError(f"split {split!r}: expected a file path or a datasets.Dataset, got {type(value)}")
            splits[str(split)] = Path(value) if isinstance(value, str | Path) else value
        if not splits:
            raise ValueError("the pairs mapping holds no split")
        return type(source).__name__, splits
    folder = Path(source)
    if not folder.is_dir():
        raise FileNotFoundError(f"pairs folder not found: {folder} (expected a folder of <split>.csv/.jsonl/.parquet)")
    splits = {}
    for path in sorted(folder.iterdir()):
        suffix = next((s for s in PAIR_FILE_SUFFIXES if path.name.endswith(s) and path.name != s), None)
        if suffix is None or not path.is_file():
            continue
        split = path.name[: -len(suffix)]
        if split in splits:
            raise DataFormatError(f"{folder}: two files for split {split!r}: {splits[split].name} and {path.name}")
        splits[split] = path
    if not splits:
        raise FileNotFoundError(
            f"no pair files in {folder}: expected <split> + one of {', '.join(PAIR_FILE_SUFFIXES)} (e.g. train.csv)"
        )
    return str(folder), splits


def _read_file(path: Path, needed: list[str]) -> _PairTable:
    name = str(path)
    if path.name.endswith((".csv", ".csv.gz")):
        records = list(csv_records(path, needed))
        lines = [line for _, line, _ in records]
        values = [row for _, _, row in records]
        columns = {column: [row[i] for row in values] for i, column in enumerate(needed)}
        return _PairTable(name, columns, lambda row: f"{path}:{lines[row]}")
    if path.name.endswith(".parquet"):
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            found = pq.read_schema(path).names
            missing = [column for column in needed if column not in found]
            if missing:
                raise DataFormatError(f"{path}: missing column(s) {', '.join(missing)} (columns: {', '.join(found)})")
            columns = pq.read_table(path, columns=needed).to_pydict()
        except (pa.ArrowException, OSError) as err:
            if isinstance(err, FileNotFoundError):
                raise
            raise DataFormatError(f"{path}: cannot be read as Parquet: {err}") from err
        return _PairTable(name, columns, lambda row: f"{path} row {row + 1}")
    records = list(json_records(path, needed))
    lines = [line for line, _ in records]
    columns = {column: [record[column] for _, record in records] for column in needed}
    return _PairTable(name, columns, lambda row: f"{path}:{lines[row]}")


def _read_split(name: str, split: str, value: Path | Any, needed: list[str]) -> _PairTable:
    if isinstance(value, Path):
        table = _read_file(value, needed)
    else:
        where = f"{name}[{split!r}]"
        missing = [column for column in needed if column not in value.column_names]
        if missing:
            raise DataFormatError(
                f"{where}: missing column(s) {', '.join(missing)} (columns: {', '.join(value.column_names)})"
            )
        table = _PairTable(where, value.select_columns(needed).to_dict(), lambda row: f"{where} row {row + 1}")
    if table.num_rows == 0:
        raise DataFormatError(f"{table.name}: no rows (split {split!r} is empty)")
    return table


def read_pairs(
    source: str | Path | Mapping[str, Any],
    split: str,
    query_column: str,
    label_column: str,
    query_id_column: str | None = None,
    label_id_column: str | None = None,
    relevance_column: str | None = None,
) -> QueryLabelData:
    """Read one split of a table of (query, label) pairs.

    * labels: one label space shared by every split of ``source`` (read in its order: sorted file names for a
      folder), deduplicated by ``label_id_column``, or by text without one: a label's index means the same label
      in training and evaluation;
    * queries: the split's distinct queries (by ``query_id_column``, or by text) in order of first appearance;
      ``query_ids`` holds the ids when the column is given;
    * positives: the labels of the query's rows, or only those with relevance 1 when ``relevance_column`` is given;
    * negatives: the labels of its relevance-0 rows (labelled hard negatives), or None without ``relevance_column``.

    Raises:
        FileNotFoundError: the folder or a file is missing.
        ValueError: ``split`` is not in ``source``.
        DataFormatError: a missing column, an empty text or id, a relevance other than 0/1, one id with two texts,
            a pair marked both relevant and not, an empty split; the message names the file, the line or row.
    """
    name, sources = pair_sources(source)
    if split not in sources:
        raise ValueError(f"no split {split!r} in {name}: found {', '.join(sources)}")
    optional = (query_id_column, label_id_column, relevance_column)
    needed = list(dict.fromkeys(c for c in (query_column, label_column, *optional) if c is not None))
    tables = {each: _read_split(name, each, value, needed) for each, value in sources.items()}

    labels: list[str] = []
    label_index: dict[str, int] = {}
    first_place: list[tuple[_PairTable, int]] = []
    split_labels: list[tuple[int, str]] = []  # (label index, label key) of each row of ``split``
    for table_split, table in tables.items():
        for row in range(table.num_rows):
            text = table.text(label_column, row)
            key = table.key(label_id_column, row) if label_id_column else text
            index = label_index.setdefault(key, len(labels))
            if index == len(labels):
                labels.append(text)
                first_place.append((table, row))
            elif labels[index] != text:
                first_table, first_row = first_place[index]
                raise DataFormatError(
                    f"{table.locate(row)}: label id {key!r} has text {text!r}, but "
                    f"{first_table.locate(first_row)} gives it {labels[index]!r}"
                )
            if table_split == split:
                split_labels.append((index, key))

    table = tables[split]
    pairs = LabelledPairs(table.locate)
    queries: list[str] = []
    query_rows: list[int] = []  # the first row of each query
    for row, (label, label_key) in enumerate(split_labels):
        text = table.text(query_column, row)
        key = table.key(query_id_column, row) if query_id_column else text
        relevant = table.relevant(relevance_column, row) if relevance_column else True
        query = pairs.add(row, key, label, label_key, relevant)
        if query == len(queries):
            queries.append(text)
            query_rows.append(row)
        elif queries[query] != text:
            raise DataFormatError(
                f"{table.locate(row)}: query id {key!r} has text {text!r}, but {table.locate(query_rows[query])} "
                f"gives it {queries[query]!r}"
            )
    pairs.warn_repeats(f"{name} [{split}]")
    return QueryLabelData(
        queries=queries,
        labels=labels,
        positives=pairs.positives(),
        negatives=pairs.negatives() if relevance_column else None,
        source=f"{name} [{split}]",
        query_ids=pairs.query_keys if query_id_column else None,
    )
