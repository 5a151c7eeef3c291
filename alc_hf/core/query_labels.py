"""The in-memory form of query–label data, and the ragged id lists it is made of. NumPy only: the metrics, the
retrieval and the readers share these types without importing torch."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

# Rows per validation pass of checked_row_norms: bounds the float32 copy made of other dtypes for 100K+ rows.
_ROW_BLOCK = 16384


class RaggedIds(Sequence):
    """Per-row integer ids stored as CSR (``offsets[i]:offsets[i+1]`` slices ``ids``): compact for 100K+ rows."""

    def __init__(self, offsets: np.ndarray, ids: np.ndarray) -> None:
        self.offsets = np.asarray(offsets, dtype=np.int64)
        self.ids = np.asarray(ids, dtype=np.int64)
        if (
            self.offsets.ndim != 1
            or self.offsets.size == 0
            or self.offsets[0] != 0
            or self.offsets[-1] != self.ids.size
        ):
            raise ValueError("offsets must start at 0 and end at len(ids)")

    @classmethod
    def from_lengths(cls, lengths: Sequence[int] | np.ndarray, ids: Sequence[int] | np.ndarray) -> RaggedIds:
        """Rows of ``lengths[i]`` consecutive entries of ``ids``."""
        lengths = np.asarray(lengths, dtype=np.int64)
        offsets = np.zeros(lengths.size + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        return cls(offsets, ids)

    @classmethod
    def from_lists(cls, rows: Sequence[Sequence[int]]) -> RaggedIds:
        lengths = np.fromiter((len(row) for row in rows), dtype=np.int64, count=len(rows))
        return cls.from_lengths(lengths, np.fromiter((i for row in rows for i in row), np.int64, int(lengths.sum())))

    def __len__(self) -> int:
        return self.offsets.size - 1

    def __getitem__(self, index: int) -> np.ndarray:  # type: ignore[override]
        if not -len(self) <= index < len(self):
            raise IndexError(f"row {index} out of range for {len(self)} rows")
        index %= len(self)
        return self.ids[self.offsets[index] : self.offsets[index + 1]]

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def row_of_each_id(self) -> np.ndarray:
        """For every entry of ``ids``, the row it belongs to."""
        return np.repeat(np.arange(len(self), dtype=np.int64), self.lengths())

    def position_of_each_id(self) -> np.ndarray:
        """For every entry of ``ids``, its place within its row."""
        return np.arange(self.ids.size) - np.repeat(self.offsets[:-1], self.lengths())

    def padded(self, width: int | None = None, fill: int = -1) -> np.ndarray:
        """``[rows, width]`` int64: each row's ids, cut to ``width`` (default: the longest row) and padded."""
        width = int(self.lengths().max(initial=0)) if width is None else width
        table = np.full((len(self), width), fill, dtype=np.int64)
        positions = self.position_of_each_id()
        keep = positions < width
        table[self.row_of_each_id()[keep], positions[keep]] = self.ids[keep]
        return table

    def first_outside(self, stop: int) -> tuple[int, int] | None:
        """``(row, id)`` of the first id outside ``[0, stop)``, or None: what an out-of-range error names."""
        outside = np.flatnonzero((self.ids < 0) | (self.ids >= stop))
        if outside.size == 0:
            return None
        return int(self.row_of_each_id()[outside[0]]), int(self.ids[outside[0]])

    def select_rows(self, keep: np.ndarray) -> RaggedIds:
        """The rows where the boolean mask ``keep`` is true."""
        if keep.all():
            return self
        return RaggedIds.from_lengths(self.lengths()[keep], self.ids[np.repeat(keep, self.lengths())])


def pair_keys(rows: np.ndarray, labels: np.ndarray, num_labels: int) -> np.ndarray:
    """One int64 key per (row, label) pair: ``row * num_labels + label``."""
    return np.asarray(rows, dtype=np.int64) * num_labels + labels


def sorted_unique(values: np.ndarray) -> np.ndarray:
    """``np.unique`` of a 1-D int64 array: sort and mask, which is ~100x faster than np.unique (NumPy 2.4) at 10M+."""
    values = np.sort(values)
    first = np.ones(values.size, dtype=bool)
    np.not_equal(values[1:], values[:-1], out=first[1:])
    return values[first]


def is_member(values: np.ndarray, sorted_keys: np.ndarray) -> np.ndarray:
    """Elementwise ``values in sorted_keys`` for a sorted ``sorted_keys``."""
    if sorted_keys.size == 0:
        return np.zeros(np.shape(values), dtype=bool)
    position = np.minimum(np.searchsorted(sorted_keys, values), sorted_keys.size - 1)
    return sorted_keys[position] == values


def check_int(value: int, name: str, minimum: int = 1) -> int:
    """``value`` as an ``int`` when it is an integer (not a bool) of at least ``minimum``; else a ValueError naming
    ``name``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def checked_row_norms(rows: np.ndarray, name: str, normalize: bool = True) -> np.ndarray | None:
    """Check every row of embeddings is finite (and, with ``normalize``, has a usable norm); return the float32 row
    norms, or None without ``normalize``. Errors name ``name`` and the first bad row."""
    norms = np.empty(rows.shape[0], dtype=np.float32) if normalize else None
    for start in range(0, rows.shape[0], _ROW_BLOCK):
        block = np.asarray(rows[start : start + _ROW_BLOCK], dtype=np.float32)
        with np.errstate(over="ignore", invalid="ignore"):
            block_norms = np.sqrt(np.einsum("ij,ij->i", block, block))
        # A NaN or inf value makes its row's norm non-finite, so only those rows need a closer look.
        for row in np.flatnonzero(~np.isfinite(block_norms)):
            if not np.isfinite(block[row]).all():
                raise ValueError(f"{name} row {start + row} holds NaN or inf (as float32); every value must be finite")
            # Finite values whose squares overflow float32: summed again in float64 (inf if the norm overflows too).
            with np.errstate(over="ignore"):
                block_norms[row] = np.sqrt(np.square(block[row], dtype=np.float64).sum())
        if norms is None:
            continue
        unusable = (block_norms == 0) | ~np.isfinite(block_norms)
        if unusable.any():
            row = int(np.flatnonzero(unusable)[0])
            problem = "is all zeros" if block_norms[row] == 0 else "has a norm that overflows float32"
            raise ValueError(f"{name} row {start + row} {problem} and cannot be normalised")
        norms[start : start + block.shape[0]] = block_norms
    return norms


def select_pair_rows(pairs: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """The (row, label) ``pairs`` of the rows where ``keep`` is true, rows renumbered as after dropping the others."""
    if keep.all() or pairs.size == 0:
        return pairs
    new_index = np.cumsum(keep) - 1
    pairs = pairs[keep[pairs[:, 0]]]
    return np.stack([new_index[pairs[:, 0]], pairs[:, 1]], axis=1).astype(np.int64)


@dataclass
class QueryLabelData:
    """Queries, label texts, each query's positive label indices, and the (query, label) pairs to filter out: the
    form every reader returns, whatever the source (XMC files, product tables, the built-in catalog).

    Attributes:
        queries: query texts (product titles, offers, searches).
        labels: label texts (the catalog).
        positives: per query, the indices into ``labels`` of its positives.
        filter_pairs: ``[n, 2]`` int64 (query index, label index) pairs excluded from predictions and metrics.
        negatives: per query, indices of labelled hard negatives (e.g. the ``label == 0`` rows of product tables);
            empty rows where none are known.
        source: where the data came from, for messages.
        skipped: ``(place, reason)`` for every row dropped by ``skip_bad_rows=True``; empty otherwise.
        query_ids: each query's id in its source (e.g. the ``ltable_id`` of a product table), or None.
    """

    queries: list[str]
    labels: list[str]
    positives: RaggedIds
    filter_pairs: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), dtype=np.int64))
    negatives: RaggedIds | None = None
    source: str = "<memory>"
    skipped: list[tuple[str, str]] = field(default_factory=list)
    query_ids: list[str] | None = None

    def __post_init__(self) -> None:
        if len(self.positives) != len(self.queries):
            raise ValueError(f"{self.source}: {len(self.queries)} queries but positives for {len(self.positives)} rows")
        if self.query_ids is not None and len(self.query_ids) != len(self.queries):
            raise ValueError(f"{self.source}: {len(self.queries)} queries but {len(self.query_ids)} query ids")
        for name, ragged in (("positive", self.positives), ("negative", self.negatives)):
            bad = None if ragged is None else ragged.first_outside(len(self.labels))
            if bad is not None:
                raise ValueError(
                    f"{self.source}: query {bad[0]} has a {name} label index outside [0, {len(self.labels)})"
                )
        self.filter_pairs = np.asarray(self.filter_pairs, dtype=np.int64).reshape(-1, 2)

    @property
    def num_queries(self) -> int:
        return len(self.queries)

    @property
    def num_labels(self) -> int:
        return len(self.labels)

    def select_queries(self, keep: np.ndarray, source: str | None = None) -> QueryLabelData:
        """The queries where the boolean mask ``keep`` is true, with their positives, negatives and filter pairs;
        the labels are unchanged."""
        keep = np.asarray(keep, dtype=bool)
        if keep.shape != (self.num_queries,):
            raise ValueError(f"{self.source}: keep must be a boolean mask over the {self.num_queries} queries")

        def kept(values: list[str]) -> list[str]:
            return [value for value, kept in zip(values, keep.tolist(), strict=True) if kept]

        return QueryLabelData(
            queries=kept(self.queries),
            labels=self.labels,
            positives=self.positives.select_rows(keep),
            filter_pairs=select_pair_rows(self.filter_pairs, keep),
            negatives=None if self.negatives is None else self.negatives.select_rows(keep),
            source=source or self.source,
            query_ids=None if self.query_ids is None else kept(self.query_ids),
        )


# The name of QueryLabelData before 0.2 (when the XMC reader came first), kept so that code written against it runs.
XMCData = QueryLabelData
