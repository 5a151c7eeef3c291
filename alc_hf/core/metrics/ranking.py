"""Ranking metrics on top-k predictions: which predictions are relevant, filter pairs, P@k."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from alc_hf.core.query_labels import RaggedIds, is_member, pair_keys, sorted_unique


def _ragged(relevant: Sequence[Sequence[int]], num_rows: int) -> RaggedIds:
    """Per-query relevant ids as :class:`~alc_hf.core.query_labels.RaggedIds` (used as is when they are)."""
    if len(relevant) != num_rows:
        raise ValueError(f"relevant has {len(relevant)} rows but there are {num_rows} queries")
    return relevant if isinstance(relevant, RaggedIds) else RaggedIds.from_lists(relevant)


def _check_predicted_ids(predicted_ids: np.ndarray) -> np.ndarray:
    predicted_ids = np.asarray(predicted_ids)
    if predicted_ids.ndim != 2 or not np.issubdtype(predicted_ids.dtype, np.integer):
        raise ValueError(
            f"predicted_ids must be a 2-D integer array [queries, k], got {predicted_ids.dtype} "
            f"with shape {predicted_ids.shape}"
        )
    if predicted_ids.shape[0] == 0:
        raise ValueError("predicted_ids has no query: the split is empty")
    if (predicted_ids < -1).any():
        raise ValueError("predicted_ids may hold label indices or -1 (no prediction), found values below -1")
    return predicted_ids.astype(np.int64, copy=False)


def relevance_matrix(predicted_ids: np.ndarray, relevant: Sequence[Sequence[int]]) -> np.ndarray:
    """``[n, k]`` bool: whether each predicted label is one of its query's relevant labels (-1 is never)."""
    predicted_ids = _check_predicted_ids(predicted_ids)
    relevant = _ragged(relevant, predicted_ids.shape[0])
    ids = relevant.ids
    if ids.size and ids.min() < 0:
        query = int(relevant.row_of_each_id()[ids < 0][0])
        raise ValueError(f"query {query} has a negative relevant label id: label ids must be >= 0")
    num_ids = int(max(predicted_ids.max(), ids.max() if ids.size else 0)) + 1
    relevant_keys = sorted_unique(pair_keys(relevant.row_of_each_id(), ids, num_ids))
    rows = np.arange(predicted_ids.shape[0])[:, None]
    return is_member(pair_keys(rows, predicted_ids, num_ids), relevant_keys) & (predicted_ids >= 0)


def drop_filtered_pairs(
    predicted_ids: np.ndarray, scores: np.ndarray, filter_pairs: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """Remove the (query, label) ``filter_pairs`` from top-k predictions and move the rest left, in order.

    Returns copies of ``predicted_ids`` and ``scores`` padded at the end with -1 and -inf where predictions were
    removed. The LF datasets' ``filter_labels_*.txt`` list such pairs (a product's own reciprocal entries).
    """
    predicted_ids = _check_predicted_ids(predicted_ids)
    scores = np.asarray(scores, dtype=np.float32)
    if scores.shape != predicted_ids.shape:
        raise ValueError(f"scores has shape {scores.shape} but predicted_ids has {predicted_ids.shape}")
    if filter_pairs is None or len(filter_pairs) == 0:
        return predicted_ids.copy(), scores.copy()
    filter_pairs = np.asarray(filter_pairs, dtype=np.int64)
    if filter_pairs.ndim != 2 or filter_pairs.shape[1] != 2:
        raise ValueError(f"filter_pairs must be [m, 2] (query, label) pairs, got shape {filter_pairs.shape}")
    if filter_pairs.min() < 0:
        raise ValueError(
            f"filter pair {int(np.flatnonzero((filter_pairs < 0).any(axis=1))[0])} has a negative query or label index"
        )
    num_ids = int(max(predicted_ids.max(), filter_pairs[:, 1].max())) + 1
    filter_keys = sorted_unique(pair_keys(filter_pairs[:, 0], filter_pairs[:, 1], num_ids))
    rows = np.arange(predicted_ids.shape[0])[:, None]
    removed = is_member(pair_keys(rows, predicted_ids, num_ids), filter_keys) & (predicted_ids >= 0)
    # A stable sort on the removed flag moves kept predictions left without reordering them.
    order = np.argsort(removed, axis=1, kind="stable")
    kept_ids = np.where(removed, -1, predicted_ids)
    kept_scores = np.where(removed, -np.inf, scores).astype(np.float32)
    return np.take_along_axis(kept_ids, order, axis=1), np.take_along_axis(kept_scores, order, axis=1)


def precision_at_k(
    predicted_ids: np.ndarray,
    relevant: Sequence[Sequence[int]],
    k: int,
    filter_pairs: np.ndarray | None = None,
) -> float:
    """P@k: the share of relevant labels among each query's top ``k``, averaged over **all** queries.

    ``filter_pairs`` are removed first. A query with no relevant label (an open-set query) scores 0, and a query
    with fewer than ``k`` predictions counts its missing ones as wrong (the XMC convention: divide by ``k``).

    Args:
        predicted_ids: ``[n, K]`` label indices, best first, -1 for no prediction; ``K >= k``.
        relevant: per query, its relevant label indices (lists or :class:`alc_hf.data.RaggedIds`).
        k: cut-off.
        filter_pairs: optional ``[m, 2]`` (query, label) pairs to remove before cutting at ``k``.
    """
    predicted_ids = _check_predicted_ids(predicted_ids)
    if not 1 <= k <= predicted_ids.shape[1]:
        raise ValueError(f"k must be between 1 and the {predicted_ids.shape[1]} predictions per query, got {k}")
    if filter_pairs is not None:
        predicted_ids, _ = drop_filtered_pairs(predicted_ids, np.zeros(predicted_ids.shape, np.float32), filter_pairs)
    return precision_from_relevance(relevance_matrix(predicted_ids[:, :k], relevant), k)


def precision_from_relevance(relevance: np.ndarray, k: int) -> float:
    """P@k from a ``[n, K]`` relevance matrix (see :func:`relevance_matrix`), averaged over all ``n`` queries."""
    return float(np.asarray(relevance)[:, :k].sum(axis=1).mean() / k)
