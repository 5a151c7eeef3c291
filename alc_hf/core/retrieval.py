"""Top-k search of query embeddings over a label corpus embedded once: exact (faiss flat) or approximate (HNSW, IVF),
with filter pairs removed, and scoring restricted to per-query candidate labels."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from alc_hf.core.query_labels import RaggedIds, check_int, checked_row_norms, is_member, pair_keys, sorted_unique

KINDS = ("flat", "hnsw", "ivf")
DEFAULT_OPTIONS: dict[str, dict[str, int | None]] = {
    "flat": {},
    "hnsw": {"M": 32, "ef_construction": 200, "ef_search": 128},
    "ivf": {"nlist": None, "nprobe": 16},
}
# Queries per faiss search call: memory grows as this times (k + the most filter pairs of a query).
_SEARCH_CHUNK = 4096
# search_candidates scores at most this many queries, and (query, label) slots, per faiss call.
_QUERY_BLOCK = 4096
_SLOT_BUDGET = 1 << 22
# faiss's k-means asks for at least this many training points per IVF list and prints a warning otherwise.
_MIN_POINTS_PER_LIST = 39
# What LabelIndex.save writes.
_INDEX_FILE, _VECTORS_FILE, _SETTINGS_FILE = "index.faiss", "vectors.npy", "index.json"


@dataclass
class TopK:
    """Per-query top-k predictions, best first.

    Attributes:
        ids: ``[n, k]`` int64 label indices; -1 where a query has fewer than k labels left to return.
        scores: ``[n, k]`` float32 inner products (cosine when normalised); -inf where ``ids`` is -1.
    """

    ids: np.ndarray
    scores: np.ndarray


class LabelIndex:
    """The label corpus embedded once, searched by many query sets.

    Scores are inner products; with ``normalize=True`` (the default) corpus and queries are L2-normalised first,
    so scores are cosine similarities.

    What a search promises when scores are equal within float rounding: every score is the exact float32 inner
    product up to rounding (faiss sums in an order that depends on its kernel — per-pair SIMD or BLAS — and on the
    CPU), so labels whose scores are that close (a tie) come back in an unspecified order, and of labels tied at the
    k-th place an unspecified one is kept. Every label outside such a tie, and every score, is what exact search
    gives. Sort or compare with a tolerance (about 1e-6 for cosines) rather than relying on the order of ties.

    Args:
        corpus_embeddings: ``[num_labels, dim]`` label embeddings (any float dtype; searched as float32).
        kind: ``"flat"`` (faiss ``IndexFlatIP``, exact), ``"hnsw"`` (``IndexHNSWFlat``; options ``M=32``,
            ``ef_construction=200``, ``ef_search=128``) or ``"ivf"`` (``IndexIVFFlat``; options ``nlist``, default
            ``4 * sqrt(num_labels)`` capped so each list has at least 39 training vectors, and ``nprobe=16``,
            capped at ``nlist``; trained on the corpus, which faiss subsamples to 256 vectors per list).
        normalize: L2-normalise corpus and queries (a float32 copy; the inputs are not modified).
        **options: the options of ``kind`` named above.

    Raises:
        ValueError: unknown kind or option, an option below 1, a corpus that is not 2-D, is empty, holds NaN or
            inf, or (with ``normalize``) a row whose norm is zero or overflows.
    """

    def __init__(
        self, corpus_embeddings: np.ndarray, kind: str = "flat", normalize: bool = True, **options: int
    ) -> None:
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        unknown = sorted(set(options) - set(DEFAULT_OPTIONS[kind]))
        if unknown:
            raise ValueError(
                f"unknown option(s) {unknown} for kind {kind!r}; it takes {sorted(DEFAULT_OPTIONS[kind]) or 'none'}"
            )
        for name, value in options.items():
            check_int(value, f"option {name}")
        corpus = np.asarray(corpus_embeddings)
        if corpus.ndim != 2 or corpus.shape[0] == 0 or corpus.shape[1] == 0:
            raise ValueError(f"corpus_embeddings must be a non-empty 2-D array [num_labels, dim], got {corpus.shape}")
        self._kind = kind
        self._normalize = normalize
        self._options = {**DEFAULT_OPTIONS[kind], **options}
        num_labels, dim = corpus.shape
        norms = checked_row_norms(corpus, "corpus_embeddings", normalize)
        vectors = _as_float32_rows(corpus, slice(None), norms)

        if kind == "flat":
            self._index = faiss.IndexFlatIP(dim)
        elif kind == "hnsw":
            self._index = faiss.IndexHNSWFlat(dim, int(self._options["M"]), faiss.METRIC_INNER_PRODUCT)
            self._index.hnsw.efConstruction = int(self._options["ef_construction"])
        else:
            nlist = self._options["nlist"]
            if nlist is None:
                nlist = max(1, min(round(4 * math.sqrt(num_labels)), num_labels // _MIN_POINTS_PER_LIST))
            if nlist > num_labels:
                raise ValueError(f"option nlist={nlist} exceeds the {num_labels} corpus vectors it is trained on")
            self._options["nlist"] = nlist
            self._options["nprobe"] = min(int(self._options["nprobe"]), nlist)
            # The index references the quantizer without owning it, so it is kept alive here.
            self._quantizer = faiss.IndexFlatIP(dim)
            self._index = faiss.IndexIVFFlat(self._quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
            self._index.train(vectors)
        self._index.add(vectors)

        if kind == "ivf":
            # IVF lists keep vectors in cluster order; candidates and recall need them by label index, and a
            # float32 input without normalisation arrives here as the caller's own array.
            self._vectors = vectors.copy() if np.may_share_memory(vectors, corpus) else vectors
        else:
            self._vectors = self._stored_vectors()

    def _stored_vectors(self) -> np.ndarray:
        """A read-only view of faiss's own copy of the corpus (flat and HNSW), rather than holding it twice."""
        storage = self._index if self._kind == "flat" else faiss.downcast_index(self._index.storage)
        vectors = faiss.rev_swig_ptr(storage.get_xb(), self.num_labels * self.dim).reshape(self.num_labels, self.dim)
        vectors.flags.writeable = False
        return vectors

    def save(self, folder: str | Path) -> Path:
        """Write the index into ``folder`` (faiss's own file, the settings, and for IVF the vectors by label index),
        for :meth:`load` to read back without building it again. Returns the folder."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        faiss.write_index(self._index, str(folder / _INDEX_FILE))
        if self._kind == "ivf":
            np.save(folder / _VECTORS_FILE, self._vectors)
        settings = {"kind": self._kind, "options": self._options, "normalize": self._normalize}
        (folder / _SETTINGS_FILE).write_text(json.dumps(settings))
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> LabelIndex:
        """The index :meth:`save` wrote into ``folder``.

        Raises:
            FileNotFoundError: ``folder`` holds no saved index.
        """
        folder = Path(folder)
        if not (folder / _SETTINGS_FILE).is_file() or not (folder / _INDEX_FILE).is_file():
            raise FileNotFoundError(f"no saved index in {folder} (expected {_SETTINGS_FILE} and {_INDEX_FILE})")
        settings = json.loads((folder / _SETTINGS_FILE).read_text())
        index = cls.__new__(cls)
        index._kind, index._options, index._normalize = settings["kind"], settings["options"], settings["normalize"]
        index._index = faiss.read_index(str(folder / _INDEX_FILE))
        if index._kind == "ivf":
            index._vectors = np.load(folder / _VECTORS_FILE)
        else:
            index._vectors = index._stored_vectors()
        return index

    @property
    def num_labels(self) -> int:
        return int(self._index.ntotal)

    @property
    def dim(self) -> int:
        return int(self._index.d)

    @property
    def kind(self) -> str:
        return self._kind

    @property
    def vectors(self) -> np.ndarray:
        """``[num_labels, dim]`` float32 corpus vectors by label index, as searched (normalised with
        ``normalize=True``); read them, do not change them."""
        return self._vectors

    @property
    def options(self) -> dict[str, int]:
        """The options in effect for ``kind``, defaults and caps applied."""
        return dict(self._options)

    def search(
        self,
        query_embeddings: np.ndarray,
        k: int,
        *,
        filter_pairs: np.ndarray | None = None,
    ) -> TopK:
        """The top-``k`` labels of every query over the whole corpus.

        With ``kind="flat"`` this is the exact top-k (ties as the class says): the top-k :meth:`search_candidates`
        gives with every label as a candidate.

        Args:
            query_embeddings: ``[n, dim]`` queries; ``n`` may be 0.
            k: predictions per query, >= 1. A ``k`` above ``num_labels`` is allowed: the columns past the labels
                left are padded with -1 / -inf.
            filter_pairs: ``[m, 2]`` integer (query row, label index) pairs never returned (the LF datasets'
                ``filter_labels_*.txt``). Each query still gets ``k`` real predictions where the corpus allows.

        Raises:
            ValueError: bad queries (see the class), ``k`` below 1, or a filter pair out of range.
        """
        k = check_int(k, "k")
        queries = self._checked_queries(query_embeddings)
        norms = checked_row_norms(queries, "query_embeddings", self._normalize)
        num_queries = queries.shape[0]
        filter_keys, filters_per_query = self._filter_keys(filter_pairs, num_queries)
        top = TopK(
            ids=np.full((num_queries, k), -1, dtype=np.int64),
            scores=np.full((num_queries, k), -np.inf, dtype=np.float32),
        )
        for start in range(0, num_queries, _SEARCH_CHUNK):
            rows = np.arange(start, min(start + _SEARCH_CHUNK, num_queries))
            # Enough results that every query keeps k after its filtered labels are dropped.
            width = min(k + int(filters_per_query[rows].max()), self.num_labels)
            scores, ids = self._index.search(_as_float32_rows(queries, rows, norms), width, params=self._params(width))
            dropped = (ids < 0) | is_member(pair_keys(rows[:, None], ids, self.num_labels), filter_keys)
            scores[dropped] = -np.inf
            # A stable sort on the score moves dropped entries to the end and keeps faiss's order otherwise.
            order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
            kept = order.shape[1]  # below k when the corpus is smaller: the rest stays -1 / -inf
            top.ids[rows, :kept] = np.take_along_axis(np.where(dropped, -1, ids), order, axis=1)
            top.scores[rows, :kept] = np.take_along_axis(scores, order, axis=1)
        return top

    def search_candidates(
        self,
        query_embeddings: np.ndarray,
        candidates: RaggedIds,
        k: int,
        *,
        filter_pairs: np.ndarray | None = None,
    ) -> TopK:
        """The top-``k`` of each query's own ``candidates`` (e.g. the labels a blocking step kept), scored exactly.

        Duplicate candidates in a row count once; rows with fewer than ``k`` candidates left (after filtering)
        are padded with -1 / -inf. Scores are exact inner products whatever the index kind (ties as the class says).

        Args:
            query_embeddings, k, filter_pairs: as for :meth:`search`.
            candidates: per query, the label indices to score; ``len(candidates) == n``.

        Raises:
            TypeError: ``candidates`` is not a :class:`~alc_hf.data.RaggedIds`.
            ValueError: bad queries or ``k``, a candidate count that differs from the query count, a candidate
                label index out of range (naming the query row), or a filter pair out of range.
        """
        k = check_int(k, "k")
        queries = self._checked_queries(query_embeddings)
        norms = checked_row_norms(queries, "query_embeddings", self._normalize)
        num_queries, num_labels = queries.shape[0], self.num_labels
        if not isinstance(candidates, RaggedIds):
            raise TypeError(
                f"candidates must be an alc_hf.data.RaggedIds (e.g. RaggedIds.from_lists(rows)), "
                f"got {type(candidates).__name__}"
            )
        if len(candidates) != num_queries:
            raise ValueError(f"candidates has {len(candidates)} rows but there are {num_queries} queries")
        bad = candidates.first_outside(num_labels)
        if bad is not None:
            raise ValueError(f"candidates of query {bad[0]} include label index {bad[1]}, outside [0, {num_labels})")
        # Sorted unique (row, label) keys drop duplicates and leave the pairs grouped by row, labels ascending.
        keys = sorted_unique(pair_keys(candidates.row_of_each_id(), candidates.ids, num_labels))
        filter_keys, _ = self._filter_keys(filter_pairs, num_queries)
        keys = keys[~is_member(keys, filter_keys)]
        rows, labels = np.divmod(keys, num_labels)

        pair_scores = self._pair_scores(queries, norms, rows, labels)
        # By row, then score descending, then label: a fixed order whatever order the pairs came in.
        order = np.lexsort((labels, -pair_scores, rows))
        rows, labels, pair_scores = rows[order], labels[order], pair_scores[order]
        row_starts = np.searchsorted(rows, np.arange(num_queries))
        rank = np.arange(rows.size) - row_starts[rows]
        keep = rank < k
        ids = np.full((num_queries, k), -1, dtype=np.int64)
        scores = np.full((num_queries, k), -np.inf, dtype=np.float32)
        ids[rows[keep], rank[keep]] = labels[keep]
        scores[rows[keep], rank[keep]] = pair_scores[keep]
        return TopK(ids=ids, scores=scores)

    def _pair_scores(
        self, queries: np.ndarray, norms: np.ndarray | None, rows: np.ndarray, labels: np.ndarray
    ) -> np.ndarray:
        """Inner products of the (query row, label) pairs, given sorted by row, computed by faiss in blocks.

        faiss's by-index kernel reads the label vectors in place: gathering them with NumPy first is ~10x slower.
        It takes a rectangle of label indices per block of queries (-1 padding skipped), so queries are taken in
        order of their pair count, keeping the padding small.
        """
        num_queries = queries.shape[0]
        pairs = RaggedIds.from_lengths(np.bincount(rows, minlength=num_queries), labels)
        by_count = np.argsort(pairs.lengths(), kind="stable")
        sorted_counts = pairs.lengths()[by_count]
        scores = np.empty(rows.size, dtype=np.float32)
        start = int(np.searchsorted(sorted_counts, 1))
        while start < num_queries:
            # The block's widest row is at most the count at the end of the largest block allowed.
            widest = int(sorted_counts[min(start + _QUERY_BLOCK, num_queries) - 1])
            stop = min(start + max(1, _SLOT_BUDGET // widest), start + _QUERY_BLOCK, num_queries)
            block_rows, block_counts = by_count[start:stop], sorted_counts[start:stop]
            block_pairs = RaggedIds.from_lengths(block_counts, np.zeros(int(block_counts.sum()), dtype=np.int64))
            slot_row, slot_column = block_pairs.row_of_each_id(), block_pairs.position_of_each_id()
            source = np.repeat(pairs.offsets[block_rows], block_counts) + slot_column
            padded = np.full((block_rows.size, int(block_counts[-1])), -1, dtype=np.int64)
            padded[slot_row, slot_column] = labels[source]
            products = np.empty(padded.shape, dtype=np.float32)
            # Converted and normalised exactly as search() does, so each query vector is bit-identical.
            block = _as_float32_rows(queries, block_rows, norms)
            faiss.fvec_inner_products_by_idx(
                faiss.swig_ptr(products),
                faiss.swig_ptr(block),
                faiss.swig_ptr(self._vectors),
                faiss.swig_ptr(padded),
                self.dim,
                *padded.shape,
            )
            scores[source] = products[slot_row, slot_column]
            start = stop
        return scores

    def recall(self, query_embeddings: np.ndarray, k: int, *, sample: int = 1000, seed: int = 0) -> float:
        """Recall@k of this index against exact search: the share of the exact top-``k`` labels that
        :meth:`search` also returns, over ``sample`` queries drawn at random (all of them when fewer).

        Exact for ``kind="flat"``, which returns 1.0 without searching. ``k`` is capped at ``num_labels``.

        Raises:
            ValueError: bad queries, no query, or ``k`` / ``sample`` below 1.
        """
        k = min(check_int(k, "k"), self.num_labels)
        sample = check_int(sample, "sample")
        queries = self._checked_queries(query_embeddings)
        if queries.shape[0] == 0:
            raise ValueError("recall needs at least one query, got 0")
        if self._kind == "flat":
            checked_row_norms(queries, "query_embeddings", self._normalize)
            return 1.0
        rng = np.random.default_rng(seed)
        chosen = np.sort(rng.choice(queries.shape[0], size=min(sample, queries.shape[0]), replace=False))
        picked = queries[chosen]
        norms = checked_row_norms(picked, "query_embeddings", self._normalize)
        _, exact = faiss.knn(
            _as_float32_rows(picked, slice(None), norms), self._vectors, k, metric=faiss.METRIC_INNER_PRODUCT
        )
        approximate = self.search(picked, k).ids
        rows = np.arange(chosen.size)[:, None]
        exact_keys = (rows * self.num_labels + exact)[exact >= 0]
        approximate_keys = (rows * self.num_labels + approximate)[approximate >= 0]
        return float(np.isin(exact_keys, approximate_keys).mean())

    def _params(self, width: int) -> faiss.SearchParameters | None:
        if self._kind == "hnsw":
            # HNSW cannot return more results than its search beam holds.
            return faiss.SearchParametersHNSW(efSearch=max(int(self._options["ef_search"]), width))
        return faiss.SearchParametersIVF(nprobe=self._options["nprobe"]) if self._kind == "ivf" else None

    def _checked_queries(self, query_embeddings: np.ndarray) -> np.ndarray:
        queries = np.asarray(query_embeddings)
        if queries.ndim != 2 or queries.shape[1] != self.dim:
            raise ValueError(f"query_embeddings must be 2-D [n, {self.dim}], got shape {queries.shape}")
        return queries

    def _filter_keys(self, filter_pairs: np.ndarray | None, num_queries: int) -> tuple[np.ndarray, np.ndarray]:
        """Sorted unique ``row * num_labels + label`` keys of the filter pairs, and the number per query row."""
        pairs = np.zeros((0, 2), dtype=np.int64) if filter_pairs is None else np.asarray(filter_pairs)
        if pairs.size == 0:
            return np.zeros(0, dtype=np.int64), np.zeros(num_queries, dtype=np.int64)
        if pairs.ndim != 2 or pairs.shape[1] != 2 or not np.issubdtype(pairs.dtype, np.integer):
            raise ValueError(
                f"filter_pairs must be an integer [m, 2] array of (query row, label index) pairs, "
                f"got {pairs.dtype} with shape {pairs.shape}"
            )
        pairs = pairs.astype(np.int64, copy=False)
        bad = (pairs[:, 0] < 0) | (pairs[:, 0] >= num_queries) | (pairs[:, 1] < 0) | (pairs[:, 1] >= self.num_labels)
        if bad.any():
            first = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"filter pair {first} is (query {pairs[first, 0]}, label {pairs[first, 1]}): query rows must be in "
                f"[0, {num_queries}) and label indices in [0, {self.num_labels})"
            )
        keys = sorted_unique(pair_keys(pairs[:, 0], pairs[:, 1], self.num_labels))
        return keys, np.bincount(keys // self.num_labels, minlength=num_queries)


def _as_float32_rows(rows: np.ndarray, which: np.ndarray | slice, norms: np.ndarray | None) -> np.ndarray:
    """The rows ``which`` as a C-contiguous float32 array, divided by their norms when given."""
    block = np.asarray(rows[which], dtype=np.float32)
    if norms is not None:
        # search_candidates divides the same float32 values by the same norms, so both paths see identical vectors.
        block = block / norms[which, None]
    return np.ascontiguousarray(block)
