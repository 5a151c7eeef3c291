"""Retrieval data in the BEIR / MTEB layout, read into :class:`QueryLabelData`: ``corpus.jsonl`` (``_id``, ``title``,
``text``: the labels), ``queries.jsonl`` (``_id``, ``text``) and ``qrels/<split>.tsv`` (header ``query-id
corpus-id score``). Strict like every reader (:mod:`alc_hf.data.formats`)."""

from __future__ import annotations

import re
from pathlib import Path

from alc_hf.core.query_labels import QueryLabelData
from alc_hf.data.formats import DataFormatError, as_id, csv_records, json_records
from alc_hf.data.labelled_pairs import LabelledPairs

__all__ = ["beir_splits", "read_beir"]

_INTEGER = re.compile(r"[-+]?\d+")
_QRELS_COLUMNS = ("query-id", "corpus-id", "score")


def _jsonl(data_dir: Path, stem: str) -> Path:
    for name in (f"{stem}.jsonl", f"{stem}.jsonl.gz"):
        if (data_dir / name).is_file():
            return data_dir / name
    raise FileNotFoundError(f"no {stem}.jsonl (or {stem}.jsonl.gz) in {data_dir}")


def _record_id(path: Path, line: int, record: dict) -> str:
    key = as_id(record["_id"])
    if key is None:
        raise DataFormatError(f"{path}:{line}: expected an '_id' (a string), found {record['_id']!r}")
    return key


def _record_text(path: Path, line: int, record: dict, keys: tuple[str, ...]) -> str:
    """``keys`` joined by a space, missing or empty values skipped; no text at all is an error."""
    parts = []
    for key in keys:
        value = record.get(key)
        if value is not None and not isinstance(value, str):
            raise DataFormatError(f"{path}:{line}: expected '{key}' to be a string, found {value!r}")
        if value and value.strip():
            parts.append(value.strip())
    if not parts:
        raise DataFormatError(f"{path}:{line}: empty text ({' and '.join(keys)})")
    return " ".join(parts)


def beir_splits(data_dir: str | Path) -> list[str]:
    """The splits of a BEIR folder: the names of its ``qrels/*.tsv`` files."""
    return sorted(path.stem for path in (Path(data_dir) / "qrels").glob("*.tsv"))


def read_beir(data_dir: str | Path, split: str) -> QueryLabelData:
    """Read one split of a BEIR / MTEB retrieval dataset.

    * labels: every document of ``corpus.jsonl`` in file order, its ``title`` and ``text`` joined by a space (an
      empty title is skipped);
    * queries: the queries of ``qrels/{split}.tsv`` in order of first appearance, text from ``queries.jsonl``
      (``query_ids`` holds their ``_id``);
    * positives: the documents of the query's rows with ``score > 0``;
    * negatives: those with ``score <= 0`` (labelled non-relevant: hard negatives for training, candidates of the
      labelled evaluation view).

    Raises:
        FileNotFoundError: a file is missing (the message lists the splits found).
        DataFormatError: bad content, named with its file and line: a missing key or column, an empty text, a
            repeated ``_id``, a qrels id not in the corpus or the queries, a score that is not an integer, a pair
            scored both relevant and not, a qrels file without rows.
    """
    data_dir = Path(data_dir)
    qrels = data_dir / "qrels" / f"{split}.tsv"
    if not qrels.is_file():
        found = ", ".join(beir_splits(data_dir)) or "none"
        raise FileNotFoundError(f"no qrels for split {split!r}: {qrels} is missing (splits found: {found})")
    corpus_path, queries_path = _jsonl(data_dir, "corpus"), _jsonl(data_dir, "queries")

    labels: list[str] = []
    label_index: dict[str, int] = {}
    for line, record in json_records(corpus_path, ("_id",)):
        label_id = _record_id(corpus_path, line, record)
        if label_index.setdefault(label_id, len(labels)) != len(labels):
            raise DataFormatError(f"{corpus_path}:{line}: repeats _id {label_id!r}")
        labels.append(_record_text(corpus_path, line, record, ("title", "text")))
    queries_by_id: dict[str, tuple[int, dict]] = {}
    for line, record in json_records(queries_path, ("_id",)):
        query_id = _record_id(queries_path, line, record)
        if queries_by_id.setdefault(query_id, (line, record))[0] != line:
            raise DataFormatError(f"{queries_path}:{line}: repeats _id {query_id!r}")

    lines: list[int] = []
    pairs = LabelledPairs(lambda row: f"{qrels}:{lines[row]}")
    queries: list[str] = []
    for row, (_, line, (query_id, label_id, score)) in enumerate(csv_records(qrels, _QRELS_COLUMNS, "\t")):
        lines.append(line)
        query_id, label_id, score = query_id.strip(), label_id.strip(), score.strip()
        if query_id not in queries_by_id:
            raise DataFormatError(f"{qrels}:{line}: query-id {query_id!r} not found in {queries_path.name}")
        if label_id not in label_index:
            raise DataFormatError(f"{qrels}:{line}: corpus-id {label_id!r} not found in {corpus_path.name}")
        if not _INTEGER.fullmatch(score):
            raise DataFormatError(f"{qrels}:{line}: score {score!r}, expected an integer (> 0: relevant)")
        query = pairs.add(row, query_id, label_index[label_id], label_id, int(score) > 0)
        if query == len(queries):
            queries.append(_record_text(queries_path, *queries_by_id[query_id], ("text",)))
    if not lines:
        raise DataFormatError(f"{qrels}: no rows after the header (split {split!r} is empty)")
    pairs.warn_repeats(str(qrels))
    return QueryLabelData(
        queries=queries,
        labels=labels,
        positives=pairs.positives(),
        negatives=pairs.negatives(),
        source=f"{data_dir} [{split}]",
        query_ids=pairs.query_keys,
    )
