"""Plain files of (id, text) records — a catalog to match against, new queries to match — read strictly and, for
queries, in chunks of bounded size: CSV (``.csv``, ``.csv.gz``), JSON lines (``.jsonl``, ``.jsonl.gz``) or Parquet
(``.parquet``), with the column names the caller gives (``id`` and ``text`` by default).

A record without an id or a text is an error naming the file, the line (or Parquet row) and the column; a repeated
catalog id is an error naming both places (a decision must name one product). Query ids may repeat (the same query
asked twice gets two decisions)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from alc_hf.data.formats import DataFormatError, as_id, csv_records, json_records

__all__ = ["RECORD_SUFFIXES", "RecordChunk", "read_catalog", "read_record_chunks", "record_count"]

RECORD_SUFFIXES = (".csv", ".csv.gz", ".jsonl", ".jsonl.gz", ".parquet")


@dataclass(frozen=True)
class RecordChunk:
    """Consecutive records of a file: their ids, texts, and where each is (``file:line`` or ``file row N``)."""

    ids: list[str]
    texts: list[str]
    places: list[str]


def _suffix(path: Path) -> str:
    suffix = next((s for s in RECORD_SUFFIXES if path.name.endswith(s)), None)
    if suffix is None:
        raise ValueError(f"{path}: expected a file ending in one of {', '.join(RECORD_SUFFIXES)}")
    return suffix


def _raw_records(path: Path, id_column: str, text_column: str) -> Iterator[tuple[str, object, object]]:
    """(place, id value, text value) of every record, streamed."""
    suffix = _suffix(path)
    if not path.is_file():
        raise FileNotFoundError(f"file not found: {path}")
    if suffix.startswith(".csv"):
        for _, line, (record_id, text) in csv_records(path, (id_column, text_column)):
            yield f"{path}:{line}", record_id, text
    elif suffix.startswith(".jsonl"):
        for line, record in json_records(path, (id_column, text_column)):
            yield f"{path}:{line}", record[id_column], record[text_column]
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            parquet = pq.ParquetFile(path)
            missing = [column for column in (id_column, text_column) if column not in parquet.schema_arrow.names]
            if missing:
                found = ", ".join(parquet.schema_arrow.names)
                raise DataFormatError(f"{path}: missing column(s) {', '.join(missing)} (columns: {found})")
            row = 0
            for batch in parquet.iter_batches(columns=[id_column, text_column], batch_size=65536):
                for record_id, text in zip(*(batch.column(i).to_pylist() for i in range(2)), strict=True):
                    row += 1
                    yield f"{path} row {row}", record_id, text
        except pa.ArrowException as error:
            raise DataFormatError(f"{path}: cannot be read as Parquet: {error}") from error


def _checked(place: str, record_id: object, text: object, id_column: str, text_column: str) -> tuple[str, str]:
    checked_id = as_id(record_id)
    if checked_id is None:
        raise DataFormatError(f"{place}: column {id_column!r}: expected an id, found {record_id!r}")
    if not isinstance(text, str) or not text.strip():
        raise DataFormatError(f"{place}: column {text_column!r}: expected a non-empty text, found {text!r}")
    return checked_id, text.strip()


def read_record_chunks(
    path: str | Path, id_column: str = "id", text_column: str = "text", chunk_size: int = 4096
) -> Iterator[RecordChunk]:
    """The records of ``path`` in chunks of at most ``chunk_size``, read as they are needed (a file of any size).

    Raises:
        FileNotFoundError: no such file.
        ValueError: a file of another kind.
        DataFormatError: a missing column, or a record without an id or a text (its place named).
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
    ids: list[str] = []
    texts: list[str] = []
    places: list[str] = []
    for place, record_id, text in _raw_records(Path(path), id_column, text_column):
        checked_id, checked_text = _checked(place, record_id, text, id_column, text_column)
        ids.append(checked_id)
        texts.append(checked_text)
        places.append(place)
        if len(ids) == chunk_size:
            yield RecordChunk(ids, texts, places)
            ids, texts, places = [], [], []
    if ids:
        yield RecordChunk(ids, texts, places)


def read_catalog(path: str | Path, id_column: str = "id", text_column: str = "text") -> RecordChunk:
    """Every record of a catalog file, whole, its ids unique.

    Raises:
        DataFormatError: as :func:`read_record_chunks`, a repeated id (both places named), or no record at all.
    """
    first_place: dict[str, str] = {}
    ids: list[str] = []
    texts: list[str] = []
    places: list[str] = []
    for chunk in read_record_chunks(path, id_column, text_column):
        for record_id, text, place in zip(chunk.ids, chunk.texts, chunk.places, strict=True):
            earlier = first_place.setdefault(record_id, place)
            if earlier != place:
                raise DataFormatError(
                    f"{place}: column {id_column!r}: id {record_id!r} is already the id of {earlier}: a catalog id "
                    "must name one product"
                )
            ids.append(record_id)
            texts.append(text)
            places.append(place)
    if not ids:
        raise DataFormatError(f"{path}: no record (a catalog needs at least one)")
    return RecordChunk(ids, texts, places)


def record_count(path: str | Path) -> int | None:
    """How many records a Parquet file holds (its metadata says, without reading it); None for the text formats,
    whose count is known only once they are read."""
    path = Path(path)
    if not path.name.endswith(".parquet") or not path.is_file():
        return None
    import pyarrow.parquet as pq

    return pq.ParquetFile(path).metadata.num_rows
