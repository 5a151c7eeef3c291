"""Training rows built from :class:`~alc_hf.core.query_labels.QueryLabelData`: the dataset the alc_hf losses
train on."""

from __future__ import annotations

import logging

import numpy as np
import pyarrow as pa
from datasets import Dataset

from alc_hf.core.query_labels import QueryLabelData, RaggedIds

logger = logging.getLogger(__name__)


def training_rows(
    data: QueryLabelData, num_hard_negatives: int = 0, max_positive_ids: int = 32, seed: int = 0
) -> Dataset:
    """One row per (query, positive label): the training dataset for the alc_hf losses.

    Columns: ``anchor`` (query text), ``positive`` (label text), ``negative_1 .. negative_n`` when
    ``num_hard_negatives`` > 0, and ``label``, the ids the losses use to keep positives out of the negatives::

        [id(positive), id(negative_1), ..., id(negative_n), positive ids of the query ..., -1 padding]

    Hard negatives come from ``data.negatives`` (the labelled negatives of a query, shuffled and cycled when it has
    fewer than n); a query with none gets random catalog labels that are not its positives. A query's positive ids
    are listed up to ``max_positive_ids`` (the column is rectangular); queries with more are reported, and their
    further positives could then meet them as negatives.

    To sample one positive per query per epoch instead of training on all of them, keep these rows and use the
    batch sampler's one-row-per-query mode.
    """
    if num_hard_negatives < 0:
        raise ValueError(f"num_hard_negatives must be >= 0, got {num_hard_negatives}")
    if max_positive_ids < 1:
        raise ValueError(f"max_positive_ids must be >= 1, got {max_positive_ids}")
    if len(data.positives.ids) == 0:
        raise ValueError(f"{data.source}: no (query, positive) pair to train on")
    rng = np.random.default_rng(seed)
    row_query = data.positives.row_of_each_id()
    row_label = data.positives.ids

    positive_lengths = data.positives.lengths()
    width = int(min(positive_lengths.max(), max_positive_ids))
    truncated = int((positive_lengths > width).sum())
    if truncated:
        logger.warning(
            "%s: %d queries have more than %d positives; the label column lists the first %d",
            data.source,
            truncated,
            width,
            width,
        )
    id_columns = [row_label[:, None]]
    texts = np.asarray(data.labels, dtype=object)
    columns: dict[str, pa.Array] = {
        "anchor": pa.array(np.asarray(data.queries, dtype=object)[row_query], type=pa.string()),
        "positive": pa.array(texts[row_label], type=pa.string()),
    }
    if num_hard_negatives:
        negative_ids = _hard_negative_ids(data, row_query, num_hard_negatives, rng)
        for n in range(num_hard_negatives):
            columns[f"negative_{n + 1}"] = pa.array(texts[negative_ids[:, n]], type=pa.string())
        id_columns.append(negative_ids)
    id_columns.append(data.positives.padded(width)[row_query])
    label = np.concatenate(id_columns, axis=1)
    columns["label"] = pa.FixedSizeListArray.from_arrays(pa.array(label.reshape(-1)), label.shape[1])
    return Dataset(pa.table(columns))


def _hard_negative_ids(data: QueryLabelData, row_query: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """``[rows, count]`` negative label ids per training row (labelled negatives first, then random non-positives)."""
    negatives = data.negatives if data.negatives is not None else RaggedIds(np.zeros(data.num_queries + 1), [])
    chosen = np.empty((len(row_query), count), dtype=np.int64)
    lengths = negatives.lengths()[row_query]
    starts = negatives.offsets[:-1][row_query]
    has_labelled = lengths > 0
    # Cycle through each query's labelled negatives from a random start, so rows of one query differ.
    offsets = rng.integers(0, np.maximum(lengths, 1))
    for n in range(count):
        picks = starts + (offsets + n) % np.maximum(lengths, 1)
        chosen[has_labelled, n] = negatives.ids[picks[has_labelled]]
    unlabelled = np.flatnonzero(~has_labelled)
    for row in unlabelled:
        positives = set(data.positives[row_query[row]].tolist())
        pool = rng.integers(0, data.num_labels, size=4 * count + len(positives))
        picks = [label for label in pool.tolist() if label not in positives][:count]
        if len(picks) < count:
            raise ValueError(f"{data.source}: cannot find {count} non-positive labels for query {row_query[row]}")
        chosen[row] = picks
    return chosen
