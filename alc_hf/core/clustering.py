"""The clustering maths of clustered hard batches, NumPy and faiss only: :func:`neighbour_clusters` groups items
whose embeddings are neighbours into clusters of a given size, and :func:`hardest_negative_cosines` /
:func:`batch_hardness` measure how hard a batch plan's in-batch negatives are. The sampler and the callback that use
them on a training run live in :mod:`alc_hf.training.clustered_batches`."""

from __future__ import annotations

import math
from collections.abc import Sequence

import faiss
import numpy as np

from alc_hf.core.query_labels import RaggedIds, check_int, checked_row_norms

__all__ = ["batch_hardness", "hardest_negative_cosines", "neighbour_clusters"]

# Coarse cells hold about this many items. The neighbour search inside a cell costs O(cell² · dim) time and a larger
# cell loses fewer neighbours across its border; on all-MiniLM-L6-v2 embeddings of 34,628 product titles the mean
# cosine to the best cluster mate stayed within 0.825-0.829 for cells of 256 to 2,048.
_CELL_SIZE = 1024
_MAX_CELL = 2 * _CELL_SIZE
# Centroids per faiss k-means call. faiss trains on up to 256 points per centroid, so one call costs O(k² · dim):
# above this, cells are split again rather than made by a larger k.
_MAX_CENTROIDS = 256
_KMEANS_ITERATIONS = 10
# Nearest neighbours each row looks up in its cell (faiss.knn); a seed whose neighbours are all taken by earlier
# groups searches its whole cell.
_NEIGHBOURS = 32
# Rows whose norm is this close to 1 are used as they are (float32 normalisation leaves errors of about 1e-7).
_UNIT_NORM_TOLERANCE = 1e-5
# Embedding values gathered at once by hardest_negative_cosines (bounds its memory).
_HARDNESS_BLOCK = 1 << 22


def neighbour_clusters(embeddings: np.ndarray, cluster_size: int, seed: int = 0) -> np.ndarray:
    """Cluster id (``0 .. k-1``) of each row of ``embeddings``: groups of ``cluster_size`` rows that are close in
    cosine similarity.

    Two stages, so the cost is about ``n · dim · (256 + 1,024)`` instead of the ``n² · dim / cluster_size`` of one
    k-means with ``n / cluster_size`` centroids:

    1. coarse cells of about 1,024 rows: faiss spherical k-means, at most 256 centroids per call, applied again to
       any cell above 2,048 rows (a cell above 2,048 rows that keeps more than half of the rows it was split from,
       e.g. of near-identical rows, is cut into equal parts instead, so the depth stays O(log n));
    2. greedy grouping inside each cell: rows in order of decreasing similarity to their nearest neighbour; each
       row not yet grouped takes the ``cluster_size - 1`` most similar rows of its cell not yet grouped.

    Every cluster has exactly ``cluster_size`` rows except the last one of each cell (its remainder). Deterministic
    for the same input, seed and faiss thread count; computed on one process, since bit-level differences in the
    embeddings can change it.

    Args:
        embeddings: ``[n, dim]`` real values, finite, no all-zero row (rows are L2-normalised here).
        cluster_size: rows per cluster, >= 1.
        seed: seed of the k-means initialisation.

    Raises:
        ValueError: ``cluster_size`` below 1, embeddings that are not 2-D, hold NaN or inf, or have a zero row.
    """
    cluster_size = check_int(cluster_size, "cluster_size")
    vectors = _normalised_rows(embeddings)
    cluster_of = np.empty(len(vectors), dtype=np.int64)
    next_cluster = 0
    for members in _coarse_cells(vectors, int(seed) % (1 << 31)):
        next_cluster = _group_cell(vectors, members, cluster_size, next_cluster, cluster_of)
    return cluster_of


def _normalised_rows(embeddings: np.ndarray) -> np.ndarray:
    """The rows as float32, C-contiguous and L2-normalised, never modifying ``embeddings`` (an input that already
    is so is used as it is: the callback's 294,805 x 384 embeddings are 450 MB); errors name the first bad row."""
    array = np.asarray(embeddings)
    if array.ndim != 2 or array.shape[1] == 0:
        raise ValueError(f"embeddings must be a 2-D [n, dim] array with dim >= 1, got shape {array.shape}")
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise ValueError(f"embeddings must hold real numbers, got dtype {array.dtype}")
    norms = checked_row_norms(array, "embeddings")
    vectors = np.ascontiguousarray(array, dtype=np.float32)
    if np.abs(norms - 1).max(initial=0) <= _UNIT_NORM_TOLERANCE:
        return vectors
    if np.may_share_memory(vectors, array):
        return vectors / norms[:, None]
    vectors /= norms[:, None]
    return vectors


def _coarse_cells(vectors: np.ndarray, seed: int) -> list[np.ndarray]:
    """Row indices of cells of at most ``_MAX_CELL`` rows, each made of rows close to one k-means centroid."""
    cells: list[np.ndarray] = []
    pending = [np.arange(len(vectors), dtype=np.int64)]
    while pending:
        members = pending.pop()
        if len(members) <= _MAX_CELL:
            cells.append(members)
            continue
        k = min(_MAX_CENTROIDS, math.ceil(len(members) / _CELL_SIZE))
        part = vectors if len(members) == len(vectors) else vectors[members]
        kmeans = faiss.Kmeans(vectors.shape[1], k, niter=_KMEANS_ITERATIONS, seed=seed, spherical=True)
        kmeans.train(part)
        _, nearest = kmeans.index.search(part, 1)
        nearest = nearest[:, 0]
        order = np.argsort(nearest, kind="stable")
        for part in np.split(members[order], np.flatnonzero(np.diff(nearest[order])) + 1):
            # k-means found no structure in it (e.g. near-identical rows): equal parts, so every round halves.
            stuck = 2 * len(part) > len(members) and len(part) > _MAX_CELL
            pending.extend(np.array_split(part, math.ceil(len(part) / _CELL_SIZE)) if stuck else [part])
    return cells


def _group_cell(
    vectors: np.ndarray, members: np.ndarray, cluster_size: int, first_cluster: int, cluster_of: np.ndarray
) -> int:
    """Greedy groups of ``cluster_size`` nearest rows within one cell, numbered from ``first_cluster`` into
    ``cluster_of``; returns the next free cluster number."""
    size = len(members)
    if size <= cluster_size:
        cluster_of[members] = first_cluster
        return first_cluster + 1
    cell = vectors[members]
    # Each row finds itself too (first, or tied with its duplicates); it is skipped below as no longer free.
    scores, nearest = faiss.knn(cell, cell, min(_NEIGHBOURS, size - 1) + 1, metric=faiss.METRIC_INNER_PRODUCT)
    neighbours = nearest.tolist()
    free = [True] * size
    local = np.empty(size, dtype=np.int64)
    left = size
    cluster = first_cluster
    # Densest rows first: they have the closest neighbours to give, and take them before others do.
    for seed in np.argsort(-scores[:, 1], kind="stable").tolist():
        if not free[seed]:
            continue
        free[seed] = False
        want = min(cluster_size, left) - 1
        group = [seed]
        for j in neighbours[seed]:
            if len(group) > want:
                break
            if free[j]:
                free[j] = False
                group.append(j)
        if len(group) <= want:  # the seed's nearest rows are taken: search its whole cell
            similarity = cell @ cell[seed]
            similarity[~np.array(free)] = -np.inf
            missing = want + 1 - len(group)
            extra = np.argpartition(similarity, size - missing)[size - missing :].tolist()
            for j in extra:
                free[j] = False
            group += extra
        local[group] = cluster
        left -= len(group)
        cluster += 1
    cluster_of[members] = local
    return cluster


def hardest_negative_cosines(
    batches: Sequence[Sequence[int]],
    query_embeddings: np.ndarray,
    positive_embeddings: np.ndarray,
    label_ids: np.ndarray,
    positive_ids: np.ndarray | None = None,
) -> np.ndarray:
    """Per row, the cosine between its query and its hardest in-batch negative: the most similar positive label of
    another row of its batch that is not a positive of its query. NaN for rows no batch serves and rows whose batch
    offers no negative.

    Args:
        batches: the plan: lists of row indices.
        query_embeddings: ``[num_rows, dim]`` L2-normalised embedding of each row's query.
        positive_embeddings: ``[num_rows, dim]`` L2-normalised embedding of each row's positive label.
        label_ids: ``[num_rows]`` each row's positive label id (the first entry of the ``label`` column).
        positive_ids: ``[num_rows, width]`` all positive label ids of each row's query, -1 padded (the tail of the
            ``label`` column); a candidate whose label id is among them is a positive, not a negative. None: a
            row's only positive is its own label.

    Raises:
        ValueError: arrays whose shapes disagree, or a batch with a row index out of range.
    """
    queries = np.asarray(query_embeddings, dtype=np.float32)
    positives = np.asarray(positive_embeddings, dtype=np.float32)
    labels = np.asarray(label_ids, dtype=np.int64)
    num_rows = len(labels)
    if queries.ndim != 2 or queries.shape != positives.shape or queries.shape[0] != num_rows or labels.ndim != 1:
        raise ValueError(
            f"query_embeddings and positive_embeddings must both be [num_rows, dim] and label_ids [num_rows]; got "
            f"{queries.shape}, {positives.shape} and {labels.shape}"
        )
    if positive_ids is not None:
        positive_ids = np.asarray(positive_ids, dtype=np.int64)
        if positive_ids.ndim != 2 or positive_ids.shape[0] != num_rows:
            raise ValueError(f"positive_ids must be [{num_rows}, width], got shape {positive_ids.shape}")
    hardest = np.full(num_rows, np.nan, dtype=np.float32)
    plan = RaggedIds.from_lists(batches)
    if plan.ids.size == 0:
        return hardest
    if plan.ids.min() < 0 or plan.ids.max() >= num_rows:
        raise ValueError(f"batches hold row indices outside [0, {num_rows})")
    padded = plan.padded()
    step = max(1, _HARDNESS_BLOCK // (padded.shape[1] * queries.shape[1]))
    for start in range(0, len(batches), step):
        rows = padded[start : start + step]
        valid = rows >= 0
        safe = np.where(valid, rows, 0)
        # similarity[b, i, j]: query of row i against the positive label of row j, both in batch b.
        similarity = queries[safe] @ positives[safe].transpose(0, 2, 1)
        candidate = labels[safe]
        positive = candidate[:, None, :] == candidate[:, :, None]
        if positive_ids is not None:
            for column in positive_ids[safe].transpose(2, 0, 1):
                positive |= (column[:, :, None] == candidate[:, None, :]) & (column[:, :, None] >= 0)
        similarity[positive | ~valid[:, None, :]] = -np.inf
        best = similarity.max(axis=2)
        best[best == -np.inf] = np.nan
        hardest[rows[valid]] = best[valid]
    return hardest


def batch_hardness(
    batches: Sequence[Sequence[int]],
    query_embeddings: np.ndarray,
    positive_embeddings: np.ndarray,
    label_ids: np.ndarray,
    positive_ids: np.ndarray | None = None,
) -> float:
    """Mean over the served rows of :func:`hardest_negative_cosines` (rows without a negative left out; NaN when
    no row has one): how hard a plan's in-batch negatives are. Random batches of product offers score low,
    batches of near-duplicates high."""
    hardest = hardest_negative_cosines(batches, query_embeddings, positive_embeddings, label_ids, positive_ids)
    found = hardest[np.isfinite(hardest)]
    return float(found.mean(dtype=np.float64)) if found.size else math.nan
