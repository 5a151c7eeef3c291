"""Tests of alc_hf.core.retrieval against slow reference loops: a full NumPy score matrix and a per-row Python sort.

The promise checked (``LabelIndex``'s docstring): every score is the exact inner product up to float32 rounding,
labels whose scores are equal within that rounding (a tie) come in an unspecified order and an unspecified one of a
tie at the k-th place is kept, and every other label is the one exact search gives. The suite runs under both of
faiss's exact kernels, which sum in different orders, so it holds whichever BLAS kernel or CPU runs it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import faiss
import numpy as np
import pytest

from alc_hf.core import retrieval as retrieval_index
from alc_hf.core.query_labels import RaggedIds
from alc_hf.core.retrieval import LabelIndex, TopK

# float32 rounding of a cosine of 16-32 dimensions is about 1e-7; scores closer than this are one tie.
TIE = 1e-5


def reference_scores(corpus, queries, normalize=True):
    """float64 scores, each pair summed on its own: unlike a BLAS matmul, identical rows get identical scores."""
    corpus = np.asarray(corpus, dtype=np.float64)
    queries = np.asarray(queries, dtype=np.float64)
    if normalize:
        corpus = corpus / np.linalg.norm(corpus, axis=1, keepdims=True)
        queries = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    return (queries[:, None, :] * corpus[None, :, :]).sum(axis=2)


def reference_pools(num_queries, num_labels, filter_pairs=(), candidates=None):
    """Per query, the labels it may be given: its candidates (or every label), without its filtered pairs."""
    filtered = {(int(row), int(label)) for row, label in filter_pairs}
    pools = []
    for row in range(num_queries):
        pool = range(num_labels) if candidates is None else sorted(set(candidates[row]))
        pools.append([label for label in pool if (row, label) not in filtered])
    return pools


def assert_exact_topk(result: TopK, corpus, queries, k, *, filter_pairs=(), candidates=None, normalize=True):
    """``result`` is an exact top-k of every query's pool, up to the order of ties (see the module docstring)."""
    assert result.ids.dtype == np.int64 and result.scores.dtype == np.float32
    assert result.ids.shape == result.scores.shape == (len(queries), k)
    scores = reference_scores(corpus, queries, normalize)
    isolated_places = 0
    for row, pool in enumerate(reference_pools(len(queries), len(corpus), filter_pairs, candidates)):
        ranked = np.sort(scores[row, pool])[::-1]
        got = result.ids[row]
        returned = got[got >= 0]
        assert len(returned) == min(k, len(pool)), f"query {row}: {len(returned)} labels for a pool of {len(pool)}"
        assert (got[len(returned) :] == -1).all() and np.isneginf(result.scores[row, len(returned) :]).all()
        assert len(set(returned.tolist())) == len(returned), f"query {row} got a label twice: {got}"
        assert set(returned.tolist()) <= set(pool), f"query {row} got a label outside its pool: {got}"
        expected = ranked[: len(returned)]
        # Every returned score is right, and every returned label is worth the score of its place.
        np.testing.assert_allclose(result.scores[row, : len(returned)], expected, rtol=0, atol=TIE)
        np.testing.assert_allclose(scores[row, returned], expected, rtol=0, atol=TIE)
        # A place whose score is apart from every other label's holds the one label exact search gives.
        for place, label in enumerate(returned.tolist()):
            neighbours = np.concatenate([ranked[max(place - 1, 0) : place], ranked[place + 1 : place + 2]])
            if (np.abs(neighbours - ranked[place]) > TIE).all():
                isolated_places += 1
                assert scores[row, label] == ranked[place], f"query {row}, place {place}: label {label}"
    assert isolated_places > 0, "no place outside a tie: the data cannot tell a right label from a wrong one"


def assert_same_topk(first: TopK, second: TopK):
    """Two searches agree up to the order of ties: the same scores, and the same labels outside ties."""
    np.testing.assert_allclose(first.scores, second.scores, rtol=0, atol=TIE)
    apart = np.ones(first.scores.shape, dtype=bool)
    close_to_next = np.abs(np.diff(first.scores, axis=1)) <= TIE
    apart[:, 1:] &= ~close_to_next
    apart[:, :-1] &= ~close_to_next
    apart[:, -1] = False  # the k-th place may hold either label of a tie with a place beyond k
    np.testing.assert_array_equal(first.ids[apart], second.ids[apart])


def random_data(num_labels=300, num_queries=60, dim=16, duplicates=20, seed=0):
    """Gaussian corpus whose last ``duplicates`` rows copy its first ones (exact ties); queries near some labels."""
    rng = np.random.default_rng(seed)
    corpus = rng.standard_normal((num_labels, dim))
    corpus[num_labels - duplicates :] = corpus[:duplicates]
    near = rng.integers(0, num_labels, num_queries)
    queries = corpus[near] + 0.3 * rng.standard_normal((num_queries, dim))
    # Some queries sit exactly on a duplicated label, so their best score is an exact tie.
    queries[:5] = corpus[:5]
    return corpus, queries


def integer_data(num_labels=120, num_queries=40, dim=8, seed=1):
    """Small integers: every inner product is exact in float32 whatever the summation order, so ties are many."""
    rng = np.random.default_rng(seed)
    return (
        rng.integers(-2, 3, (num_labels, dim)).astype(np.float32),
        rng.integers(-2, 3, (num_queries, dim)).astype(np.float32),
    )


@pytest.fixture(params=["sequential", "blas"])
def faiss_path(request, monkeypatch):
    """Run under both of faiss's exact kernels: per-pair SIMD dot products (few queries) and BLAS blocks."""
    monkeypatch.setattr(faiss.cvar, "distance_compute_blas_threshold", 10**9 if request.param == "sequential" else 0)
    return request.param


def reference_top_ids(corpus, queries, k):
    """The exact top-k labels (ties in label order): for building filters and candidate lists."""
    return np.argsort(-reference_scores(corpus, queries), axis=1, kind="stable")[:, :k]


def test_flat_search_matches_reference(faiss_path):
    corpus, queries = random_data()
    assert_exact_topk(LabelIndex(corpus).search(queries, 7), corpus, queries, 7)


def test_exact_ties_in_both_paths(faiss_path):
    corpus, queries = integer_data()
    index = LabelIndex(corpus, normalize=False)
    scores = np.sort(reference_scores(corpus, queries, normalize=False), axis=1)[:, ::-1]
    assert (scores[:, 14] == scores[:, 15]).sum() > 10, "the data must hold many ties across the k-th place"
    assert_exact_topk(index.search(queries, 15), corpus, queries, 15, normalize=False)
    every_label = RaggedIds.from_lists([list(range(len(corpus)))[::-1]] * len(queries))
    result = index.search_candidates(queries, every_label, 15)
    assert_exact_topk(result, corpus, queries, 15, normalize=False)


def test_filter_pairs_removed_and_k_kept(faiss_path):
    corpus, queries = random_data()
    exact = reference_top_ids(corpus, queries, 12)
    # Filter each query's own best labels (as the LF datasets do), query 3 more than k of them, plus a far label.
    filter_pairs = [(row, int(label)) for row in range(0, 60, 2) for label in exact[row, :3]]
    filter_pairs += [(3, int(label)) for label in exact[3]] + [(59, 0), (59, 0)]
    result = LabelIndex(corpus).search(queries, 5, filter_pairs=np.array(filter_pairs))
    assert_exact_topk(result, corpus, queries, 5, filter_pairs=filter_pairs)
    assert (result.ids >= 0).all()
    returned = {(row, int(label)) for row in range(len(queries)) for label in result.ids[row]}
    assert not returned & set(filter_pairs)


def test_chunk_boundaries_do_not_change_results(monkeypatch):
    corpus, queries = random_data(num_queries=10)
    exact = reference_top_ids(corpus, queries, 20)
    # Queries in different chunks of 3, one (row 4) with more filters than k; filter rows are given unsorted.
    filter_pairs = [(9, int(exact[9, 0])), (4, int(exact[4, 0]))] + [(4, int(label)) for label in exact[4, 1:9]]
    filter_pairs += [(2, int(exact[2, 1])), (3, int(exact[3, 0]))]
    index = LabelIndex(corpus)
    for chunk_size in (1, 3, 4, 10, 4096):
        monkeypatch.setattr(retrieval_index, "_SEARCH_CHUNK", chunk_size)
        result = index.search(queries, 6, filter_pairs=np.array(filter_pairs))
        assert_exact_topk(result, corpus, queries, 6, filter_pairs=filter_pairs)


def test_k_above_corpus_size_is_padded():
    corpus = np.eye(5)
    queries = np.array([[1.0, 0.5, 0, 0, 0], [0, 0, 0, 0, 1.0]])
    result = LabelIndex(corpus).search(queries, 8, filter_pairs=np.array([[0, 0]]))
    assert_exact_topk(result, corpus, queries, 8, filter_pairs=[(0, 0)])
    assert (result.ids[0, 4:] == -1).all() and (result.ids[1, 5:] == -1).all()
    assert np.isneginf(result.scores[result.ids == -1]).all()


def test_no_queries_gives_empty_result():
    result = LabelIndex(np.eye(3)).search(np.zeros((0, 3)), 2)
    assert result.ids.shape == (0, 2) and result.scores.shape == (0, 2)


def test_search_candidates_matches_reference():
    corpus, queries = random_data()
    rng = np.random.default_rng(2)
    rows = [rng.integers(0, len(corpus), rng.integers(0, 30)).tolist() for _ in range(len(queries))]
    rows[0] = []
    rows[1] = [7, 7, 7, 3]  # duplicates count once: two labels, fewer than k
    rows[2] = [5, 285, 5, 285]  # 285 duplicates label 5: an exact tie
    rows[3] = [0, 1, 2]
    rows[4] = [10, 11, 12, 11]
    filter_pairs = [(3, 1), (3, 0), (4, 11)]
    candidates = RaggedIds.from_lists(rows)
    result = LabelIndex(corpus).search_candidates(queries, candidates, 8, filter_pairs=np.array(filter_pairs))
    assert_exact_topk(result, corpus, queries, 8, filter_pairs=filter_pairs, candidates=rows)
    assert (result.ids[0] == -1).all() and np.isneginf(result.scores[0]).all()
    assert sorted(result.ids[1, :2].tolist()) == [3, 7] and (result.ids[1, 2:] == -1).all()
    assert sorted(result.ids[2, :2].tolist()) == [5, 285] and result.scores[2, 0] == result.scores[2, 1]
    assert result.ids[3].tolist() == [2] + [-1] * 7
    assert sorted(result.ids[4, :2].tolist()) == [10, 12] and (result.ids[4, 2:] == -1).all()


def test_search_candidates_blocks_do_not_change_results(monkeypatch):
    corpus, queries = random_data()
    rng = np.random.default_rng(7)
    rows = [rng.integers(0, len(corpus), rng.integers(0, 40)).tolist() for _ in range(len(queries))]
    rows[9] = list(range(len(corpus)))  # wider than the slot budget below: a block of its own
    candidates = RaggedIds.from_lists(rows)
    index = LabelIndex(corpus)
    monkeypatch.setattr(retrieval_index, "_QUERY_BLOCK", 4)
    monkeypatch.setattr(retrieval_index, "_SLOT_BUDGET", 50)
    assert_exact_topk(index.search_candidates(queries, candidates, 6), corpus, queries, 6, candidates=rows)


def test_flat_search_and_all_candidates_agree(faiss_path):
    corpus, queries = random_data(seed=3)
    filter_pairs = np.array([(0, 0), (0, 280), (7, 12), (7, 13), (30, 99)])
    index = LabelIndex(corpus)
    flat = index.search(queries, 10, filter_pairs=filter_pairs)
    every_label = RaggedIds.from_lists([list(range(len(corpus)))] * len(queries))
    candidates = index.search_candidates(queries, every_label, 10, filter_pairs=filter_pairs)
    for result in (flat, candidates):
        assert_exact_topk(result, corpus, queries, 10, filter_pairs=filter_pairs.tolist())
    assert_same_topk(flat, candidates)


def test_tie_assertions_catch_a_wrong_label():
    """The checks above must fail on a result that is wrong outside a tie (a mutation check of the test itself)."""
    corpus, queries = random_data()
    result = LabelIndex(corpus).search(queries, 7)
    wrong = TopK(ids=result.ids.copy(), scores=result.scores.copy())
    wrong.ids[10, [0, 1]] = wrong.ids[10, [1, 0]]  # query 10's two best labels are far apart: not a tie
    assert abs(result.scores[10, 0] - result.scores[10, 1]) > TIE
    with pytest.raises(AssertionError):
        assert_exact_topk(wrong, corpus, queries, 7)
    with pytest.raises(AssertionError):
        assert_same_topk(result, wrong)


def clustered_data(num_labels=2000, num_queries=300, dim=32, clusters=40, seed=4):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim))
    corpus = centres[rng.integers(0, clusters, num_labels)] + 0.5 * rng.standard_normal((num_labels, dim))
    queries = corpus[rng.integers(0, num_labels, num_queries)] + 0.2 * rng.standard_normal((num_queries, dim))
    return corpus, queries


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_approximate_recall_is_high_and_computed_right(kind):
    corpus, queries = clustered_data()
    index = LabelIndex(corpus, kind=kind)
    recall = index.recall(queries, 10, sample=len(queries))
    exact = reference_top_ids(corpus, queries, 10)
    approximate = index.search(queries, 10).ids
    expected = np.mean([len(set(exact[row]) & set(approximate[row])) / 10 for row in range(len(queries))])
    assert recall == pytest.approx(expected)
    assert recall > 0.9
    assert 0.9 < index.recall(queries, 10, sample=50, seed=1) <= 1.0


def test_approximate_options_apply():
    corpus, _ = clustered_data()
    assert LabelIndex(corpus, kind="ivf").options == {"nlist": 2000 // 39, "nprobe": 16}
    assert LabelIndex(corpus, kind="ivf", nlist=8, nprobe=20).options == {"nlist": 8, "nprobe": 8}
    hnsw = LabelIndex(corpus, kind="hnsw", M=8, ef_search=16)
    assert hnsw.options == {"M": 8, "ef_construction": 200, "ef_search": 16}
    # ef_search below the number of results asked for is raised to it, so k results still come back.
    assert (hnsw.search(corpus[:5], 40).ids >= 0).all()


def test_flat_recall_is_one():
    corpus, queries = clustered_data(num_labels=200, num_queries=20)
    index = LabelIndex(corpus)
    assert index.recall(queries, 10) == 1.0
    assert (index.kind, index.num_labels, index.dim) == ("flat", 200, 32)


def test_normalisation():
    corpus, queries = random_data(duplicates=0)
    original = corpus.copy()
    scaled = LabelIndex(corpus * np.linspace(0.1, 10, len(corpus))[:, None]).search(queries * 7.0, 5)
    plain = LabelIndex(corpus).search(queries, 5)
    np.testing.assert_array_equal(scaled.ids, plain.ids)
    np.testing.assert_allclose(scaled.scores, plain.scores, rtol=1e-5)
    cosine = corpus @ queries[0] / np.linalg.norm(corpus, axis=1) / np.linalg.norm(queries[0])
    np.testing.assert_allclose(plain.scores[0], np.sort(cosine)[::-1][:5], rtol=1e-5)
    np.testing.assert_array_equal(corpus, original)
    raw = LabelIndex(corpus, normalize=False).search(queries, 5)
    assert_exact_topk(raw, corpus, queries, 5, normalize=False)
    # Without normalisation an all-zero row is a valid (zero-scoring) label.
    zero_row = np.vstack([corpus, np.zeros((1, corpus.shape[1]))])
    assert LabelIndex(zero_row, normalize=False).num_labels == len(corpus) + 1


def with_value(array, row, value):
    array = np.array(array, dtype=np.float64)
    array[row, 1] = value
    return array


CORPUS = np.random.default_rng(5).standard_normal((10, 4))
QUERIES = np.random.default_rng(6).standard_normal((3, 4))


@pytest.mark.parametrize(
    ("make_index", "message"),
    [
        (lambda: LabelIndex(with_value(CORPUS, 3, np.nan)), "corpus_embeddings row 3 holds NaN or inf"),
        (lambda: LabelIndex(with_value(CORPUS, 7, np.inf), normalize=False), "corpus_embeddings row 7 holds NaN"),
        (lambda: LabelIndex(np.zeros((0, 4))), r"non-empty 2-D array \[num_labels, dim\], got \(0, 4\)"),
        (lambda: LabelIndex(np.ones(4)), r"non-empty 2-D array .*got \(4,\)"),
        (lambda: LabelIndex(np.vstack([CORPUS, np.zeros(4)])), "row 10 is all zeros and cannot be normalised"),
        (lambda: LabelIndex(np.full((2, 4), 3e38)), "row 0 has a norm that overflows float32"),
        (lambda: LabelIndex(CORPUS, kind="lsh"), r"kind must be one of \('flat', 'hnsw', 'ivf'\), got 'lsh'"),
        (lambda: LabelIndex(CORPUS, kind="flat", M=8), r"unknown option\(s\) \['M'\] for kind 'flat'; it takes none"),
        (lambda: LabelIndex(CORPUS, kind="hnsw", nprobe=2), r"\['nprobe'\] for kind 'hnsw'; it takes \['M', "),
        (lambda: LabelIndex(CORPUS, kind="hnsw", M=0), "option M must be an integer >= 1, got 0"),
        (lambda: LabelIndex(CORPUS, kind="ivf", nlist=11), "nlist=11 exceeds the 10 corpus vectors"),
    ],
)
def test_bad_corpus_or_options(make_index, message):
    with pytest.raises(ValueError, match=message):
        make_index()


INDEX = LabelIndex(CORPUS)
ALL = RaggedIds.from_lists([[0, 1]] * 3)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: INDEX.search(np.ones((3, 5)), 2), r"query_embeddings must be 2-D \[n, 4\], got shape \(3, 5\)"),
        (lambda: INDEX.search(np.ones(4), 2), r"must be 2-D \[n, 4\], got shape \(4,\)"),
        (lambda: INDEX.search(with_value(QUERIES, 2, np.nan), 2), "query_embeddings row 2 holds NaN or inf"),
        (lambda: INDEX.search(np.vstack([QUERIES, np.zeros(4)]), 2), "query_embeddings row 3 is all zeros"),
        (lambda: INDEX.search(QUERIES, 0), "k must be an integer >= 1, got 0"),
        (lambda: INDEX.search(QUERIES, 2.0), "k must be an integer >= 1, got 2.0"),
        (lambda: INDEX.search(QUERIES, 2, filter_pairs=np.array([[0, 1], [3, 0]])), r"filter pair 1 is \(query 3, "),
        (lambda: INDEX.search(QUERIES, 2, filter_pairs=np.array([[0, 10]])), r"label indices in \[0, 10\)"),
        (lambda: INDEX.search(QUERIES, 2, filter_pairs=np.array([[-1, 0]])), r"query rows must be in \[0, 3\)"),
        (lambda: INDEX.search(QUERIES, 2, filter_pairs=np.array([0, 1, 2])), r"integer \[m, 2\] array .*\(3,\)"),
        (lambda: INDEX.search(QUERIES, 2, filter_pairs=np.array([[0.0, 1.0]])), "got float64 with shape"),
        (lambda: INDEX.search_candidates(QUERIES, RaggedIds.from_lists([[0]]), 2), "candidates has 1 rows but"),
        (lambda: INDEX.search_candidates(QUERIES, RaggedIds.from_lists([[0], [1, 10], []]), 2), "query 1 include"),
        (lambda: INDEX.search_candidates(QUERIES, RaggedIds.from_lists([[0], [], [-1]]), 2), r"-1, outside \[0, 10"),
        (lambda: INDEX.search_candidates(np.ones((3, 2)), ALL, 2), r"must be 2-D \[n, 4\]"),
        (lambda: INDEX.search_candidates(with_value(QUERIES, 1, np.inf), ALL, 2), "query_embeddings row 1 holds"),
        (lambda: INDEX.search_candidates(QUERIES, ALL, 0), "k must be an integer >= 1"),
        (lambda: INDEX.search_candidates(QUERIES, ALL, 2, filter_pairs=np.array([[3, 0]])), r"\(query 3, label 0\)"),
        (lambda: INDEX.recall(np.zeros((0, 4)), 2), "recall needs at least one query, got 0"),
        (lambda: INDEX.recall(QUERIES, 2, sample=0), "sample must be an integer >= 1, got 0"),
        (lambda: INDEX.recall(with_value(QUERIES, 0, np.nan), 2), "query_embeddings row 0 holds NaN"),
    ],
)
def test_bad_search_inputs(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_candidates_must_be_ragged_ids():
    with pytest.raises(TypeError, match=r"candidates must be an alc_hf.data.RaggedIds .* got list"):
        INDEX.search_candidates(QUERIES, [[0], [1], [2]], 2)


def test_retrieval_imports_numpy_and_faiss_only():
    allowed = {"__future__", "dataclasses", "math", "numpy", "faiss", "alc_hf.core.query_labels"}
    allowed |= {"alc_hf.core.retrieval"}
    package = Path(__file__).resolve().parents[1] / "alc_hf" / "retrieval"
    for path in package.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                names = {node.module}
            else:
                continue
            assert names <= allowed, f"{path.name} imports {names - allowed}"
