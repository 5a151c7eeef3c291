"""Batch sampler that never puts the same query or the same label twice in a batch.

The alc_hf losses treat every other in-batch candidate as a negative, so a batch holding one query twice (a query
with several positives has one training row per positive) or one label twice (a label shared by several queries)
would push a true positive away. :class:`UniqueQueryLabelBatchSampler` plans each epoch's batches so that the
query (``anchor`` text) and the label (first entry of the ``label`` column, else the ``positive`` text) are unique
within every batch.

Usage: ``SentenceTransformerTrainingArguments(batch_sampler=UniqueQueryLabelBatchSampler)`` (every row once per
epoch), ``OneRowPerQueryBatchSampler`` (one random positive per query per epoch), or
``UniqueQueryLabelBatchSampler.configure(one_row_per_query=True, query_column="query")``.

The trainer builds the sampler itself with ``(dataset, batch_size=, drop_last=, valid_label_columns=, generator=,
seed=)``, so extra options go through :meth:`UniqueQueryLabelBatchSampler.configure` (a ``functools.partial``,
which the trainer accepts as a callable) or a subclass such as :class:`OneRowPerQueryBatchSampler`.

Each epoch's plan depends only on ``seed`` and the epoch number (numpy ``SeedSequence([seed, epoch])``, integer
ids from Arrow, no Python ``hash()``), so every process of a distributed run builds the same batch sequence and
accelerate's ``BatchSamplerShard`` hands whole batches to the processes consistently. The plan is computed eagerly
(once per epoch, cached), so ``len()`` is exactly the number of batches ``iter()`` yields.
"""

from __future__ import annotations

import functools
from collections import deque
from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from datasets import Dataset
from sentence_transformers.base.sampler import DefaultBatchSampler

__all__ = [
    "OneRowPerQueryBatchSampler",
    "UniqueQueryLabelBatchSampler",
    "pack_unique_batches",
    "plan_unique_batches",
]

_IGNORED_COLUMNS = {"dataset_name"}
# More incomplete batches than this means degenerate data (a query or label with more rows than there are batches):
# they are kept as they are rather than merged.
_MAX_PARTIAL_TO_MERGE = 16


def dense_ids(values: np.ndarray) -> np.ndarray:
    """Map arbitrary integer keys to ``0 .. k-1`` (sorted order, so the mapping is deterministic)."""
    _, inverse = np.unique(values, return_inverse=True)
    return inverse.reshape(-1).astype(np.int64, copy=False)


def _text_ids(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """Integer id per row of a text column: equal strings get equal ids (independent of ``PYTHONHASHSEED``)."""
    unique = pc.unique(column)
    ids = pc.index_in(column, value_set=unique, skip_nulls=False)
    return np.asarray(ids.to_numpy(zero_copy_only=False), dtype=np.int64)


def _first_label_ids(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """The first entry of a list column (the positive's label id), or the value itself for a scalar column."""
    value_type = column.type
    if pa.types.is_list(value_type) or pa.types.is_large_list(value_type) or pa.types.is_fixed_size_list(value_type):
        column = pc.list_element(column, 0)
        value_type = column.type
    if pa.types.is_integer(value_type) and column.null_count == 0:
        return dense_ids(np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.int64))
    return _text_ids(pc.cast(column, pa.string()))


def group_ranks(groups: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Each row's random rank among the rows of its group (``groups``: dense ids), and the size of that group."""
    n = len(groups)
    counts = np.bincount(groups)
    permutation = rng.permutation(n)
    by_group = permutation[np.argsort(groups[permutation], kind="stable")]
    starts = np.cumsum(counts) - counts
    rank = np.empty(n, dtype=np.int64)
    rank[by_group] = np.arange(n, dtype=np.int64) - starts[groups[by_group]]
    return rank, counts[groups]


def _spread_order(query: np.ndarray, label: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random order of the rows in which the rows of one query (or of one label) are spread evenly.

    Row ``i`` of a group of ``c`` rows, at random rank ``r`` in that group, gets the key ``(r + u) / c`` with
    ``u ~ U(0, 1)``; the key of the larger of its two groups (query or label) decides its position. A query with 200
    positives is thus met about every ``n / 200`` rows instead of in clumps, so greedy packing rarely has to defer.
    """
    jitter = rng.random(len(query))
    query_rank, query_size = group_ranks(query, rng)
    label_rank, label_size = group_ranks(label, rng)
    key = np.where(query_size >= label_size, (query_rank + jitter) / query_size, (label_rank + jitter) / label_size)
    return np.argsort(key, kind="stable")


def plan_unique_batches(
    query_ids: np.ndarray,
    label_ids: np.ndarray,
    batch_size: int,
    drop_last: bool,
    rng: np.random.Generator,
    rows: np.ndarray | None = None,
    max_scan: int | None = None,
) -> list[list[int]]:
    """Pack ``rows`` (default: all) into batches with no repeated query id and no repeated label id.

    Rows are visited in a spread random order (:func:`_spread_order`) and packed by :func:`pack_unique_batches`.
    """
    query_ids = np.asarray(query_ids, dtype=np.int64)
    label_ids = np.asarray(label_ids, dtype=np.int64)
    rows = np.arange(len(query_ids), dtype=np.int64) if rows is None else np.asarray(rows, dtype=np.int64)
    order = rows[_spread_order(dense_ids(query_ids[rows]), dense_ids(label_ids[rows]), rng)] if len(rows) else rows
    return pack_unique_batches(query_ids, label_ids, order, batch_size, drop_last, max_scan)


def pack_unique_batches(
    query_ids: np.ndarray,
    label_ids: np.ndarray,
    order: np.ndarray,
    batch_size: int,
    drop_last: bool,
    max_scan: int | None = None,
) -> list[list[int]]:
    """Pack the rows ``order`` (row indices, in the order to visit them) into batches with no repeated query id and
    no repeated label id.

    A row whose query or label is already in the batch being filled is deferred to the front of the queue, so it
    goes into one of the next batches and rows stay close to their place in ``order``. Each batch looks at no more
    than ``max_scan`` candidates (default ``4 * batch_size + 16``), which bounds the work on degenerate data (a
    query with more positives than there are batches). Full batches come first, then the incomplete ones: a few
    leftovers are folded into one by swapping rows with full batches, so normally at most the last batch is
    incomplete; ``drop_last=True`` drops all incomplete batches.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    query_ids = np.asarray(query_ids, dtype=np.int64)
    label_ids = np.asarray(label_ids, dtype=np.int64)
    order = np.asarray(order, dtype=np.int64)
    if len(order) == 0:
        return []
    max_scan = 4 * batch_size + 16 if max_scan is None else max(max_scan, 1)
    queries = query_ids.tolist()
    labels = label_ids.tolist()
    full, partial = _greedy_batches(queries, labels, order.tolist(), batch_size, max_scan)
    if 1 < len(partial) <= _MAX_PARTIAL_TO_MERGE:
        partial = _merge_partial(full, partial, queries, labels, batch_size)
    return full if drop_last else full + partial


def _greedy_batches(
    queries: list[int], labels: list[int], order: list[int], batch_size: int, max_scan: int
) -> tuple[list[list[int]], list[list[int]]]:
    """The full and the incomplete batches of the rows ``order``, each filled with the first rows whose query and
    label it does not hold yet (rows scanned past are deferred, see :func:`pack_unique_batches`)."""
    query_mark = dict.fromkeys((queries[row] for row in order), -1)
    label_mark = dict.fromkeys((labels[row] for row in order), -1)
    queue = deque(order)
    full: list[list[int]] = []
    partial: list[list[int]] = []
    number = 0
    while queue:
        batch: list[int] = []
        skipped: list[int] = []
        scanned = 0
        while queue and len(batch) < batch_size and scanned < max_scan:
            row = queue.popleft()
            scanned += 1
            query, label = queries[row], labels[row]
            if query_mark[query] == number or label_mark[label] == number:
                skipped.append(row)
                continue
            query_mark[query] = number
            label_mark[label] = number
            batch.append(row)
        queue.extendleft(reversed(skipped))
        (full if len(batch) == batch_size else partial).append(batch)
        number += 1
    return full, partial


def _merge_partial(
    full: list[list[int]], partial: list[list[int]], queries: list[int], labels: list[int], batch_size: int
) -> list[list[int]]:
    """Fold the rows of several incomplete batches into as few as possible, swapping a row with a full batch when
    it conflicts with the batch being filled (full batches stay full and valid). Under accelerate, a batch shorter
    than ``batch_size`` anywhere but at the end makes ``BatchSamplerShard`` skip batches, so this matters."""
    budget = 200 * batch_size * batch_size  # bounded work on degenerate data
    merged: list[list[int]] = []
    current: list[int] = []
    current_queries: set[int] = set()
    current_labels: set[int] = set()
    unplaced: list[int] = []

    def fits(row: int) -> bool:
        return queries[row] not in current_queries and labels[row] not in current_labels

    def add(row: int) -> None:
        current.append(row)
        current_queries.add(queries[row])
        current_labels.add(labels[row])

    for row in (row for batch in partial for row in batch):
        if len(current) == batch_size:
            full.append(current)
            current, current_queries, current_labels = [], set(), set()
        if fits(row):
            add(row)
            continue
        placed = False
        for other in reversed(full):
            if budget <= 0:
                break
            budget -= len(other)
            clashes = [i for i, x in enumerate(other) if queries[x] == queries[row] or labels[x] == labels[row]]
            if len(clashes) > 1:
                continue
            position = next((i for i in clashes or range(len(other)) if fits(other[i])), None)
            if position is not None:
                add(other[position])
                other[position] = row
                placed = True
                break
        if not placed:
            unplaced.append(row)
    if len(current) == batch_size:
        full.append(current)
    elif current:
        merged.append(current)
    # Rows that found no swap (degenerate data): greedy batches of their own.
    more_full, rest = _greedy_batches(queries, labels, unplaced, batch_size, max_scan=len(unplaced))
    full.extend(more_full)
    merged.extend(rest)
    return merged


class UniqueQueryLabelBatchSampler(DefaultBatchSampler):
    """Batches with every query and every positive label at most once; deterministic per seed and epoch.

    Args:
        dataset: training rows with a query column (``anchor``), a positive column (``positive``) and optionally a
            ``label`` column (list of ints whose first entry is the positive's label id; otherwise the positive
            text identifies the label).
        batch_size: rows per batch.
        drop_last: drop incomplete batches. With ``False`` every selected row appears exactly once per epoch;
            with ``True`` the rows of incomplete batches sit the epoch out.
        valid_label_columns: passed by the trainer; not used (the label comes from ``label_column``).
        generator: passed by the trainer; not used (numpy ``SeedSequence([seed, epoch])`` drives the plan, so the
            plan never depends on the state of a shared torch generator).
        seed: base seed; :meth:`set_epoch` (called by the trainer every epoch) changes the order.
        one_row_per_query: pick one row per query each epoch (a random positive, different across epochs) instead
            of all rows, so a query with many positives does not dominate the epoch.
        query_column / positive_column / label_column: column names (missing query/positive columns fall back to
            the first/second text column).
        max_scan: candidates examined per batch before it is closed (default ``4 * batch_size + 16``).

    Usage and options: see the module docstring.

    Note: a query (or label) with more rows than there are batches (about ``len(dataset) / batch_size``) cannot
    be spread over full batches; the plan then ends with several incomplete batches (the fewest the greedy
    finds). With several processes, accelerate's ``BatchSamplerShard`` skips a round of batches whose last one is
    short, so such rows may sit that epoch out there; use ``one_row_per_query=True`` or a smaller batch size.
    """

    def __init__(
        self,
        dataset: Dataset,
        batch_size: int,
        drop_last: bool,
        valid_label_columns: list[str] | None = None,
        generator: torch.Generator | None = None,
        seed: int = 0,
        one_row_per_query: bool = False,
        query_column: str = "anchor",
        positive_column: str = "positive",
        label_column: str = "label",
        max_scan: int | None = None,
    ) -> None:
        super().__init__(
            dataset,
            batch_size=batch_size,
            drop_last=drop_last,
            valid_label_columns=valid_label_columns,
            generator=generator,
            seed=seed,
        )
        self.one_row_per_query = one_row_per_query
        self.max_scan = max_scan
        self.query_column, self.positive_column, has_label = self._resolve_columns(
            dataset, query_column, positive_column, label_column
        )
        label_source = label_column if has_label else self.positive_column
        self.query_ids, self.label_ids = self._read_ids(dataset, self.query_column, label_source, has_label)
        self._plan_cache: tuple[int, list[list[int]]] | None = None

    @classmethod
    def configure(cls, **options: Any) -> functools.partial[UniqueQueryLabelBatchSampler]:
        """A callable for ``SentenceTransformerTrainingArguments(batch_sampler=...)`` with extra options fixed,
        e.g. ``UniqueQueryLabelBatchSampler.configure(one_row_per_query=True)``."""
        return functools.partial(cls, **options)

    @staticmethod
    def _resolve_columns(
        dataset: Dataset, query_column: str, positive_column: str, label_column: str
    ) -> tuple[str, str | None, bool]:
        """The query column, the positive text column (None when the dataset has no other text column) and whether
        the label column exists; a missing query / positive column falls back to the first / next text column."""
        columns = [name for name in dataset.column_names if name not in _IGNORED_COLUMNS and name != label_column]
        if query_column not in dataset.column_names:
            if not columns:
                raise ValueError(f"the dataset has no query column; columns: {dataset.column_names}")
            query_column = columns[0]
        has_label = label_column in dataset.column_names
        if positive_column not in dataset.column_names:
            others = [name for name in columns if name != query_column]
            if not has_label and not others:
                raise ValueError(f"the dataset has no positive or {label_column!r} column: {dataset.column_names}")
            positive_column = others[0] if others else None
        return query_column, positive_column, has_label

    @staticmethod
    def _read_ids(
        dataset: Dataset, query_column: str, label_source: str, has_label: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        table = dataset.select_columns([query_column, label_source]).with_format("arrow")[:]
        query_ids = _text_ids(table.column(query_column))
        label_column = table.column(label_source)
        label_ids = _first_label_ids(label_column) if has_label else _text_ids(label_column)
        return query_ids, label_ids

    def _rng(self, epoch: int, *keys: int) -> np.random.Generator:
        seed = 0 if self.seed is None else int(self.seed) % (1 << 64)
        return np.random.default_rng(np.random.SeedSequence([seed, *(int(key) % (1 << 64) for key in (epoch, *keys))]))

    def plan(self, epoch: int | None = None) -> list[list[int]]:
        """The batches (lists of row indices) of ``epoch`` (default: the current one); cached for the last epoch."""
        epoch = self.epoch if epoch is None else epoch
        if self._plan_cache is not None and self._plan_cache[0] == epoch:
            return self._plan_cache[1]
        rng = self._rng(epoch)
        batches = self._plan_rows(self._epoch_rows(rng), rng)
        self._plan_cache = (epoch, batches)
        return batches

    def _epoch_rows(self, rng: np.random.Generator) -> np.ndarray | None:
        """The rows this epoch serves: all (None), or one random row per query with ``one_row_per_query``."""
        if not self.one_row_per_query:
            return None
        permutation = rng.permutation(len(self.query_ids))
        _, first = np.unique(self.query_ids[permutation], return_index=True)
        return np.sort(permutation[first])

    def _plan_rows(self, rows: np.ndarray | None, rng: np.random.Generator) -> list[list[int]]:
        """Batches of ``rows`` (None: all rows); subclasses change the order the rows are packed in."""
        return plan_unique_batches(
            self.query_ids, self.label_ids, self.batch_size, self.drop_last, rng, rows=rows, max_scan=self.max_scan
        )

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self.plan():
            yield list(batch)

    def __len__(self) -> int:
        return len(self.plan())


class OneRowPerQueryBatchSampler(UniqueQueryLabelBatchSampler):
    """:class:`UniqueQueryLabelBatchSampler` with ``one_row_per_query=True``: each epoch uses one random positive
    row per query (deterministic per seed and epoch)."""

    def __init__(self, dataset: Dataset, *args: Any, **options: Any) -> None:
        options.setdefault("one_row_per_query", True)
        super().__init__(dataset, *args, **options)
