"""The common in-memory form of query–label data that every reader returns."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np


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
    def from_lists(cls, rows: Sequence[Sequence[int]]) -> RaggedIds:
        lengths = np.fromiter((len(row) for row in rows), dtype=np.int64, count=len(rows))
        offsets = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        ids = np.fromiter((i for row in rows for i in row), dtype=np.int64, count=int(offsets[-1]))
        return cls(offsets, ids)

    def __len__(self) -> int:
        return self.offsets.size - 1

    def __getitem__(self, index: int) -> np.ndarray:  # type: ignore[override]
        if not -len(self) <= index < len(self):
            raise IndexError(f"row {index} out of range for {len(self)} rows")
        index %= len(self)
        return self.ids[self.offsets[index] : self.offsets[index + 1]]

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def select_rows(self, keep: np.ndarray) -> RaggedIds:
        """The rows where the boolean mask ``keep`` is true."""
        if keep.all():
            return self
        lengths = self.lengths()[keep]
        offsets = np.zeros(lengths.size + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        return RaggedIds(offsets, self.ids[np.repeat(keep, self.lengths())])

    def row_of_each_id(self) -> np.ndarray:
        """For every entry of ``ids``, the row it belongs to."""
        return np.repeat(np.arange(len(self), dtype=np.int64), self.lengths())


def select_pair_rows(pairs: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """The (row, label) ``pairs`` of the rows where ``keep`` is true, rows renumbered as after dropping the others."""
    if keep.all() or pairs.size == 0:
        return pairs
    new_index = np.cumsum(keep) - 1
    pairs = pairs[keep[pairs[:, 0]]]
    return np.stack([new_index[pairs[:, 0]], pairs[:, 1]], axis=1).astype(np.int64)


@dataclass
class XMCData:
    """Queries, label texts, each query's positive label indices, and the (query, label) pairs to filter out.

    Attributes:
        queries: query texts (product titles, offers, searches).
        labels: label texts (the catalog).
        positives: per query, the indices into ``labels`` of its positives.
        filter_pairs: ``[n, 2]`` int64 (query index, label index) pairs excluded from predictions and metrics.
        negatives: per query, indices of labelled hard negatives (e.g. the ``label == 0`` rows of product tables);
            empty rows where none are known.
        source: where the data came from, for messages.
        skipped: ``(place, reason)`` for every row dropped by ``skip_bad_rows=True``; empty otherwise.
    """

    queries: list[str]
    labels: list[str]
    positives: RaggedIds
    filter_pairs: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), dtype=np.int64))
    negatives: RaggedIds | None = None
    source: str = "<memory>"
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if len(self.positives) != len(self.queries):
            raise ValueError(f"{self.source}: {len(self.queries)} queries but positives for {len(self.positives)} rows")
        for name, ragged in (("positive", self.positives), ("negative", self.negatives)):
            if (
                ragged is not None
                and ragged.ids.size
                and not 0 <= ragged.ids.min() <= ragged.ids.max() < len(self.labels)
            ):
                bad_row = int(ragged.row_of_each_id()[(ragged.ids < 0) | (ragged.ids >= len(self.labels))][0])
                raise ValueError(
                    f"{self.source}: query {bad_row} has a {name} label index outside [0, {len(self.labels)})"
                )
        self.filter_pairs = np.asarray(self.filter_pairs, dtype=np.int64).reshape(-1, 2)

    @property
    def num_queries(self) -> int:
        return len(self.queries)

    @property
    def num_labels(self) -> int:
        return len(self.labels)

    def select_queries(self, keep: np.ndarray, source: str | None = None) -> XMCData:
        """The queries where the boolean mask ``keep`` is true, with their positives, negatives and filter pairs;
        the labels are unchanged."""
        keep = np.asarray(keep, dtype=bool)
        if keep.shape != (self.num_queries,):
            raise ValueError(f"{self.source}: keep must be a boolean mask over the {self.num_queries} queries")
        return XMCData(
            queries=[query for query, kept in zip(self.queries, keep.tolist(), strict=True) if kept],
            labels=self.labels,
            positives=self.positives.select_rows(keep),
            filter_pairs=select_pair_rows(self.filter_pairs, keep),
            negatives=None if self.negatives is None else self.negatives.select_rows(keep),
            source=source or self.source,
        )
