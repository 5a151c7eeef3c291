"""The metrics in ``alc_hf.core.metrics``: hand-computed cases, randomised comparisons with slow reference loops written
independently of the implementation, and bad input."""

from __future__ import annotations

import itertools
import json
import logging
import math
from fractions import Fraction
from functools import cache

import numpy as np
import pytest

from alc_hf.core.coverage_metric.calibration import clopper_pearson_lower
from alc_hf.core.metrics import (
    calibrate_threshold,
    coverage_at_k,
    coverage_at_threshold,
    drop_filtered_pairs,
    opis,
    precision_at_k,
    precision_coverage_curve,
    precision_from_relevance,
    relevance_matrix,
    score_shift,
)
from alc_hf.data import RaggedIds

NEG_INF = -math.inf


# ----------------------------------------------------------------------------------------------------------------
# Independent reference implementations (pure Python loops)
# ----------------------------------------------------------------------------------------------------------------


def binomial_upper_tail(x: int, n: int, p: float) -> float:
    """P(X >= x) for X ~ Binomial(n, p), summed term by term."""
    return sum(math.comb(n, j) * p**j * (1.0 - p) ** (n - j) for j in range(x, n + 1))


@cache
def reference_cp_lower(x: int, n: int, delta: float) -> float:
    """One-sided Clopper-Pearson lower bound: the p with P(X >= x; n, p) = delta, found by bisection (0 if x = 0)."""
    if x == 0:
        return 0.0
    low, high = 0.0, 1.0
    for _ in range(80):
        mid = (low + high) / 2
        if binomial_upper_tail(x, n, mid) < delta:
            low = mid
        else:
            high = mid
    return (low + high) / 2


def reference_groups(scores, correct):
    """[(score, accepted, correct)] at each distinct finite score, descending, accepting every score >= it."""
    pairs = sorted(
        ((float(s), bool(c)) for s, c in zip(scores, correct, strict=True) if s > NEG_INF), key=lambda p: -p[0]
    )
    groups = []
    accepted = num_correct = 0
    i = 0
    while i < len(pairs):
        value = pairs[i][0]
        while i < len(pairs) and pairs[i][0] == value:
            accepted += 1
            num_correct += pairs[i][1]
            i += 1
        groups.append((value, accepted, num_correct))
    return groups


def reference_calibrate(scores, correct, target: str, method: str, delta: float = 0.05):
    """(threshold, num_accepted, num_correct) of the smallest threshold reaching ``target`` (a decimal string, compared
    exactly), or None when none does."""
    best = None
    for value, accepted, num_correct in reference_groups(scores, correct):
        if method == "empirical":
            ok = Fraction(num_correct, accepted) >= Fraction(target)
        else:
            ok = reference_cp_lower(num_correct, accepted, delta) >= float(target)
        if ok:
            best = (value, accepted, num_correct)  # later groups have smaller thresholds: keep the last
    return best


def reference_coverage(scores, correct, threshold):
    accepted = num_correct = 0
    for s, c in zip(scores, correct, strict=True):
        if s > NEG_INF and s >= threshold:
            accepted += 1
            num_correct += bool(c)
    return accepted, num_correct


def reference_drop(predicted, scores, filter_pairs):
    removed = {(int(q), int(label)) for q, label in filter_pairs}
    out_ids, out_scores = [], []
    for q, (row_ids, row_scores) in enumerate(zip(predicted, scores, strict=True)):
        kept = [(i, s) for i, s in zip(row_ids, row_scores, strict=True) if not (i >= 0 and (q, int(i)) in removed)]
        kept += [(-1, NEG_INF)] * (len(row_ids) - len(kept))
        out_ids.append([i for i, _ in kept])
        out_scores.append([s for _, s in kept])
    return np.array(out_ids, dtype=np.int64), np.array(out_scores, dtype=np.float32)


def reference_precision_at_k(predicted, relevant, k, filter_pairs=()):
    removed = {(int(q), int(label)) for q, label in filter_pairs}
    total = 0.0
    for q, row in enumerate(predicted):
        kept = [int(i) for i in row if not (i >= 0 and (q, int(i)) in removed)]
        hits = sum(1 for i in kept[:k] if i >= 0 and i in set(relevant[q]))
        total += hits / k
    return total / len(predicted)


def reference_percentile(values, q):
    """Linear-interpolation percentile (numpy's default definition), by hand."""
    ordered = sorted(values)
    position = q / 100 * (len(ordered) - 1)
    below = math.floor(position)
    above = min(below + 1, len(ordered) - 1)
    return ordered[below] + (ordered[above] - ordered[below]) * (position - below)


def reference_utility(positives, negatives, t):
    tpr = sum(1 for s in positives if s >= t) / len(positives)
    tnr = sum(1 for s in negatives if s < t) / len(negatives)
    return 0.0 if tpr + tnr == 0 else 2 * tpr * tnr / (tpr + tnr)


def reference_opis(scores, correct, labels, thresholds, min_positives=5):
    """(value, num_labels) straight from the definition."""
    scored = [
        (float(s), bool(c), int(label)) for s, c, label in zip(scores, correct, labels, strict=True) if s > NEG_INF
    ]
    all_pos = [s for s, c, _ in scored if c]
    all_neg = [s for s, c, _ in scored if not c]
    overall = [reference_utility(all_pos, all_neg, t) for t in thresholds]
    deviations = []
    for label in sorted({label for _, _, label in scored}):
        pos = [s for s, c, lab in scored if lab == label and c]
        neg = [s for s, c, lab in scored if lab == label and not c]
        if len(pos) < min_positives or not neg:
            continue
        curve = [reference_utility(pos, neg, t) for t in thresholds]
        deviations.append(sum((u - o) ** 2 for u, o in zip(curve, overall, strict=True)) / len(thresholds))
    return (sum(deviations) / len(deviations) if deviations else math.nan), len(deviations)


def random_scored(rng: np.random.Generator, n: int, neg_inf_share: float = 0.1):
    """Scores rounded to one decimal (many ties), correctness correlated with score, a few -inf (never correct)."""
    scores = np.round(rng.random(n), 1)
    correct = rng.random(n) < 0.2 + 0.75 * scores
    empty = rng.random(n) < neg_inf_share
    scores[empty] = NEG_INF
    correct[empty] = False
    return scores, correct


# ----------------------------------------------------------------------------------------------------------------
# P@k, relevance, filter pairs: hand-computed
# ----------------------------------------------------------------------------------------------------------------

PREDICTED = np.array(
    [
        [5, 2, 7, 1],
        [3, 4, -1, -1],
        [0, 9, 8, 6],
    ]
)
RELEVANT = [[2, 1, 7], [4], []]  # query 2 is open-set: nothing is relevant
FILTER = np.array([[0, 5], [1, 9]])  # (0, 5) removes query 0's top prediction; (1, 9) matches nothing


@pytest.mark.parametrize(
    ("k", "filter_pairs", "expected"),
    [
        # no filter, k=1: 5 / 3 / 0 are all wrong -> 0
        (1, None, 0.0),
        # no filter, k=2: q0 [5,2] 1 hit -> 1/2, q1 [3,4] -> 1/2, q2 open-set -> 0; mean 1/3
        (2, None, 1 / 3),
        # no filter, k=3: q0 [5,2,7] -> 2/3, q1 [3,4,-1] -> 1/3 (padding wrong), q2 -> 0; mean 1/3
        (3, None, 1 / 3),
        # filtered, k=1: q0 becomes [2,7,1,-1] -> 2 is relevant -> 1; q1 -> 3 wrong; q2 -> 0; mean 1/3
        (1, FILTER, 1 / 3),
        # filtered, k=2: q0 [2,7] -> 1 (7 shifted in), q1 [3,4] -> 1/2, q2 -> 0; mean 1/2
        (2, FILTER, 0.5),
        # filtered, k=4: q0 [2,7,1,-1] -> 3/4, q1 [3,4,-1,-1] -> 1/4, q2 -> 0; mean 1/3
        (4, FILTER, 1 / 3),
    ],
)
def test_precision_at_k_hand_computed(k, filter_pairs, expected):
    assert precision_at_k(PREDICTED, RELEVANT, k, filter_pairs) == pytest.approx(expected, abs=1e-12)
    ragged = RaggedIds.from_lists(RELEVANT)
    assert precision_at_k(PREDICTED, ragged, k, filter_pairs) == pytest.approx(expected, abs=1e-12)


def test_precision_at_k_open_set_only_and_all_padding_is_zero():
    # every query open-set -> 0; every prediction padding -> 0 even with relevant labels
    assert precision_at_k(np.array([[1, 2], [3, 4]]), [[], []], 2) == 0.0
    assert precision_at_k(np.array([[-1, -1], [-1, -1]]), [[0], [1]], 1) == 0.0


def test_relevance_matrix_and_precision_from_relevance_hand_computed():
    relevance = relevance_matrix(PREDICTED, RELEVANT)
    expected = np.array(
        [
            [False, True, True, True],
            [False, True, False, False],
            [False, False, False, False],
        ]
    )
    np.testing.assert_array_equal(relevance, expected)
    np.testing.assert_array_equal(relevance_matrix(PREDICTED, RaggedIds.from_lists(RELEVANT)), expected)
    # P@3 from relevance: (2/3 + 1/3 + 0) / 3
    assert precision_from_relevance(relevance, 3) == pytest.approx(1 / 3)


def test_drop_filtered_pairs_hand_computed():
    ids = np.array([[4, 1, 3, -1], [2, 0, 5, 6]])
    scores = np.array([[0.9, 0.8, 0.7, NEG_INF], [0.6, 0.5, 0.4, 0.3]])
    # row 0 loses label 1 -> [4, 3, -1, -1]; row 1 loses 2 and 6 -> [0, 5, -1, -1]; (0, 9) matches nothing
    new_ids, new_scores = drop_filtered_pairs(ids, scores, np.array([[0, 1], [1, 2], [1, 6], [0, 9]]))
    np.testing.assert_array_equal(new_ids, [[4, 3, -1, -1], [0, 5, -1, -1]])
    np.testing.assert_array_equal(
        new_scores, np.array([[0.9, 0.7, NEG_INF, NEG_INF], [0.5, 0.4, NEG_INF, NEG_INF]], dtype=np.float32)
    )
    # the inputs are not modified, and no / empty filter returns equal copies
    np.testing.assert_array_equal(ids, [[4, 1, 3, -1], [2, 0, 5, 6]])
    for nothing in (None, np.zeros((0, 2), dtype=np.int64)):
        same_ids, same_scores = drop_filtered_pairs(ids, scores, nothing)
        np.testing.assert_array_equal(same_ids, ids)
        np.testing.assert_array_equal(same_scores, scores.astype(np.float32))
        assert same_ids is not ids


# Pair keys are ``row * num_ids + label``: a negative label would collide with the previous row's largest label, so
# negative ids are refused rather than allowed to touch another query.
def test_negative_ids_in_filter_pairs_or_relevant_are_refused():
    ids = np.array([[3, 1], [0, 2]])
    with pytest.raises(ValueError, match="filter pair 0 has a negative query or label index"):
        drop_filtered_pairs(ids, np.zeros((2, 2)), np.array([[1, -1]]))
    with pytest.raises(ValueError, match="query 1 has a negative relevant label id"):
        relevance_matrix(ids, [[], [-1]])


# ----------------------------------------------------------------------------------------------------------------
# P@k, relevance, filter pairs: randomised against reference loops
# ----------------------------------------------------------------------------------------------------------------


def random_predictions(rng: np.random.Generator, n: int = 25, big_k: int = 6, num_labels: int = 12):
    predicted = np.full((n, big_k), -1, dtype=np.int64)
    for q in range(n):
        length = int(rng.integers(0, big_k + 1))  # some rows padded, some empty
        predicted[q, :length] = rng.permutation(num_labels)[:length]
    relevant = [sorted(rng.choice(num_labels, size=int(rng.integers(0, 4)), replace=False).tolist()) for _ in range(n)]
    # filter pairs: some on predicted labels, some elsewhere, some duplicated, some on rows/labels out of range
    pairs = [(int(rng.integers(0, n)), int(rng.integers(0, num_labels + 3))) for _ in range(3 * n)]
    pairs += [(q, int(predicted[q, 0])) for q in range(0, n, 3) if predicted[q, 0] >= 0]
    pairs += pairs[:5] + [(n + 2, 1)]
    filter_pairs = np.array(pairs, dtype=np.int64)
    return predicted, relevant, filter_pairs


@pytest.mark.parametrize("seed", range(6))
def test_precision_at_k_and_relevance_match_reference(seed):
    rng = np.random.default_rng(seed)
    predicted, relevant, filter_pairs = random_predictions(rng)
    ragged = RaggedIds.from_lists(relevant)

    expected_relevance = np.array(
        [[i >= 0 and int(i) in set(relevant[q]) for i in row] for q, row in enumerate(predicted)], dtype=bool
    )
    np.testing.assert_array_equal(relevance_matrix(predicted, relevant), expected_relevance)
    np.testing.assert_array_equal(relevance_matrix(predicted, ragged), expected_relevance)

    for k in range(1, predicted.shape[1] + 1):
        for pairs in (None, filter_pairs):
            expected = reference_precision_at_k(predicted, relevant, k, () if pairs is None else pairs)
            assert precision_at_k(predicted, relevant, k, pairs) == pytest.approx(expected, abs=1e-12)
            assert precision_at_k(predicted, ragged, k, pairs) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("seed", range(6))
def test_drop_filtered_pairs_matches_reference(seed):
    rng = np.random.default_rng(seed)
    predicted, _, filter_pairs = random_predictions(rng)
    scores = np.where(predicted >= 0, np.round(rng.random(predicted.shape), 2), NEG_INF)
    scores = -np.sort(-scores, axis=1)  # descending, as top-k scores are
    expected_ids, expected_scores = reference_drop(predicted, scores, filter_pairs)
    new_ids, new_scores = drop_filtered_pairs(predicted, scores, filter_pairs)
    np.testing.assert_array_equal(new_ids, expected_ids)
    np.testing.assert_array_equal(new_scores, expected_scores)
    assert new_scores.dtype == np.float32
    # order preserved: remaining finite scores still descending, padding only at the end
    for row_ids, row_scores in zip(new_ids, new_scores, strict=True):
        valid = row_ids >= 0
        assert not (valid[1:] & ~valid[:-1]).any()
        assert (np.diff(row_scores[valid]) <= 0).all()


# ----------------------------------------------------------------------------------------------------------------
# Precision-coverage curve, calibration, coverage: hand-computed
# ----------------------------------------------------------------------------------------------------------------


def test_precision_coverage_curve_and_area_hand_computed():
    scores = [0.4, 0.7, 0.9, NEG_INF, 0.7]
    correct = [1, 0, 1, 0, 1]
    # descending: 0.9 T | 0.7 F, 0.7 T | 0.4 T ; -inf never accepted, still one of 5 predictions
    curve = precision_coverage_curve(scores, correct)
    np.testing.assert_array_equal(curve.thresholds, [0.9, 0.7, 0.4])
    np.testing.assert_array_equal(curve.num_accepted, [1, 3, 4])
    np.testing.assert_array_equal(curve.num_correct, [1, 2, 3])
    np.testing.assert_allclose(curve.precision, [1.0, 2 / 3, 3 / 4])
    np.testing.assert_allclose(curve.coverage, [1 / 5, 3 / 5, 4 / 5])
    assert curve.num_predictions == 5
    # area: group sizes 1, 2, 1 weighed by their precision, over 5 predictions: (1*1 + 2*2/3 + 1*3/4) / 5
    assert curve.area() == pytest.approx((1 + 4 / 3 + 3 / 4) / 5)


def test_precision_coverage_curve_all_no_prediction():
    curve = precision_coverage_curve([NEG_INF, NEG_INF], [0, 0])
    assert curve.thresholds.size == curve.num_accepted.size == curve.precision.size == 0
    assert curve.num_predictions == 2
    assert curve.area() == 0.0


def test_precision_coverage_curve_area_all_correct_is_one():
    assert precision_coverage_curve([0.3, 0.3, 0.9, 0.1], [1, 1, 1, 1]).area() == pytest.approx(1.0)


# descending: 0.9 T, 0.8 F, 0.7 T, 0.6 T, 0.5 F, 0.4 F (given shuffled)
# precision at each threshold: 1/1, 1/2, 2/3, 3/4, 3/5, 3/6 -- not monotone
NON_MONOTONE_SCORES = [0.6, 0.9, 0.4, 0.8, 0.5, 0.7]
NON_MONOTONE_CORRECT = [True, True, False, False, False, True]


@pytest.mark.parametrize(
    ("target", "threshold", "num_accepted", "precision"),
    [
        (0.8, 0.9, 1, 1.0),  # only the top prediction
        (0.7, 0.6, 4, 0.75),  # 0.8 and 0.7 fail (1/2, 2/3) but 0.6 reaches 3/4: the smallest is picked
        (0.75, 0.6, 4, 0.75),  # exactly 3/4
        (0.6, 0.5, 5, 0.6),  # exactly 3/5
        (0.5, 0.4, 6, 0.5),  # 3/6: everything
        (1.0, 0.9, 1, 1.0),
    ],
)
def test_calibrate_empirical_non_monotone_picks_smallest_threshold(target, threshold, num_accepted, precision):
    result = calibrate_threshold(NON_MONOTONE_SCORES, NON_MONOTONE_CORRECT, target)
    assert result.threshold == threshold
    assert result.num_accepted == num_accepted
    assert result.num_predictions == 6
    assert result.coverage == pytest.approx(num_accepted / 6)
    assert result.precision == pytest.approx(precision)
    assert result.reachable
    assert result.method == "empirical" and result.delta is None and result.target_precision == target


def test_calibrate_ties_are_accepted_or_rejected_together():
    # The 0.7 tie group holds one correct prediction listed first; accepting it alone would give 4/4.
    # groups: 0.9 -> 2/2, 0.8 -> 3/3, 0.7 -> 4/6, 0.6 -> 5/7
    scores = [0.7, 0.9, 0.9, 0.8, 0.7, 0.7, 0.6]
    correct = [1, 1, 1, 1, 0, 0, 1]
    # target 0.75: the 0.7 group would drop precision to 2/3 -> excluded whole; 0.6 (5/7 ~ 0.714) fails too
    result = calibrate_threshold(scores, correct, 0.75)
    assert (result.threshold, result.num_accepted, result.precision) == (0.8, 3, 1.0)
    assert result.coverage == pytest.approx(3 / 7)
    # target 0.7: 0.6 reaches 5/7, which accepts the whole 0.7 group too
    result = calibrate_threshold(scores, correct, 0.7)
    assert (result.threshold, result.num_accepted) == (0.6, 7)
    assert result.precision == pytest.approx(5 / 7)
    # a tie group that keeps precision at the target is accepted whole: 0.9 T | 0.5 T, 0.5 F, 0.5 T -> 3/4
    result = calibrate_threshold([0.5, 0.9, 0.5, 0.5], [1, 1, 0, 1], 0.75)
    assert (result.threshold, result.num_accepted, result.coverage) == (0.5, 4, 1.0)


@pytest.mark.parametrize(
    ("num_correct", "n", "target", "reaches_all"),
    [
        (9, 10, 0.9, True),
        (7, 10, 0.7, True),  # 0.7 * 10 == 7.000000000000001 in floating point
        (3, 5, 0.6, True),
        (1, 3, 1 / 3, True),
        (29, 100, 0.29, True),  # 0.29 * 100 == 28.999999999999996
        (57, 100, 0.57, True),  # 0.57 * 100 == 56.99999999999999
        (89, 100, 0.9, False),
        (6, 10, 0.7, False),
    ],
)
def test_calibrate_exact_boundary(num_correct, n, target, reaches_all):
    # n distinct scores; the wrong predictions have the lowest scores, so the lowest threshold has num_correct / n and
    # every higher one has precision >= it (1.0 down to num_correct / n).
    scores = np.linspace(1.0, 0.1, n)
    correct = np.arange(n) < num_correct
    result = calibrate_threshold(scores, correct, target)
    if reaches_all:
        assert result.threshold == scores[-1] and result.num_accepted == n and result.coverage == 1.0
    else:
        assert result.num_accepted < n
        assert result.precision >= target


def test_calibrate_target_one_needs_all_correct():
    # 0.9 T, 0.8 T, 0.7 F, 0.6 T: 1, 1, 2/3, 3/4 -> 0.8
    result = calibrate_threshold([0.9, 0.8, 0.7, 0.6], [1, 1, 0, 1], 1.0)
    assert (result.threshold, result.num_accepted, result.coverage, result.precision) == (0.8, 2, 0.5, 1.0)


def test_calibrate_accepts_bool_int_and_float_flags_and_any_shape():
    scores = np.array([[0.9, 0.8], [0.7, 0.6]])
    flags = np.array([[1, 1], [0, 1]])
    results = {
        (r.threshold, r.num_accepted)
        for r in (
            calibrate_threshold(scores, flags, 0.75),
            calibrate_threshold(scores, flags.astype(bool), 0.75),
            calibrate_threshold(scores, flags.astype(float), 0.75),
            calibrate_threshold(scores.ravel(), flags.ravel(), 0.75),
        )
    }
    assert results == {(0.6, 4)}


@pytest.mark.parametrize(
    ("num_correct", "n"),
    [(1, 1), (5, 5), (20, 20), (0, 7), (3, 10), (9, 10), (45, 50), (1, 40), (99, 100)],
)
@pytest.mark.parametrize("delta", [0.05, 0.2])
def test_clopper_pearson_lower_matches_bisection(num_correct, n, delta):
    got = float(clopper_pearson_lower(np.array([num_correct]), np.array([n]), delta)[0])
    assert got == pytest.approx(reference_cp_lower(num_correct, n, delta), abs=1e-9)
    if num_correct == n:
        assert got == pytest.approx(delta ** (1 / n), abs=1e-12)
    if num_correct == 0:
        assert got == 0.0


def test_calibrate_clopper_pearson_hand_computed():
    # 20 correct predictions then 1 wrong, distinct scores. With k all-correct accepted, the lower bound is
    # 0.05 ** (1 / k); it reaches 0.85 from k = 19 (ln 0.05 / ln 0.85 = 18.43). At k = 21 (20 of 21 correct) the
    # bound (bisection) is below 0.85, so the smallest reaching threshold is the 20th score.
    scores = np.linspace(1.0, 0.0, 21)
    correct = np.arange(21) < 20
    assert reference_cp_lower(20, 21, 0.05) < 0.85
    assert 0.05 ** (1 / 19) >= 0.85 > 0.05 ** (1 / 18)
    result = calibrate_threshold(scores, correct, 0.85, method="clopper_pearson")
    assert result.threshold == scores[19] and result.num_accepted == 20 and result.precision == 1.0
    assert result.method == "clopper_pearson" and result.delta == 0.05
    # the empirical calibration is less strict: 20/21 >= 0.85
    assert calibrate_threshold(scores, correct, 0.85).num_accepted == 21
    # target 0.95 is unreachable at delta 0.05 (0.05 ** (1/20) = 0.861) but delta = 0.5 loosens the bound:
    # 0.5 ** (1 / k) >= 0.95 from k = 14 (ln 0.5 / ln 0.95 = 13.5), and 20 of 21 stays below (checked here)
    assert not calibrate_threshold(scores, correct, 0.95, method="clopper_pearson").reachable
    assert reference_cp_lower(20, 21, 0.5) < 0.95
    result = calibrate_threshold(scores, correct, 0.95, method="clopper_pearson", delta=0.5)
    assert result.num_accepted == 20


@pytest.mark.parametrize(
    ("scores", "correct", "target", "method"),
    [
        ([0.9, 0.8], [0, 0], 0.5, "empirical"),  # nothing correct
        ([0.9, 0.8, 0.7], [0, 1, 1], 1.0, "empirical"),  # best precision is 2/3 at the bottom, 0 at the top
        ([0.9, 0.8, 0.7], [1, 1, 1], 1.0, "clopper_pearson"),  # a lower bound never reaches 1
        ([0.9, 0.8, 0.7], [1, 1, 1], 0.5, "clopper_pearson"),  # 0.05 ** (1/3) = 0.368 < 0.5
        ([NEG_INF, NEG_INF], [0, 0], 0.1, "empirical"),  # no prediction at all
    ],
)
def test_calibrate_unreachable_target(scores, correct, target, method, caplog):
    with caplog.at_level(logging.WARNING, logger="alc_hf.core.coverage_metric.calibration"):
        result = calibrate_threshold(scores, correct, target, method=method)
    assert result.threshold == math.inf
    assert result.coverage == 0.0
    assert math.isnan(result.precision)
    assert result.num_accepted == 0
    assert result.num_predictions == len(scores)
    assert not result.reachable
    assert result.to_dict()["precision"] is None
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "no threshold reaches" in warnings[0].getMessage()
    # the threshold accepts nothing on any split
    assert coverage_at_threshold([1e30, 0.5], [1, 0], result.threshold).num_accepted == 0


def test_calibrate_reachable_logs_no_warning(caplog):
    with caplog.at_level(logging.WARNING):
        calibrate_threshold([0.9, 0.8], [1, 0], 0.5)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_coverage_at_threshold_hand_computed():
    scores = [0.9, 0.5, 0.5, 0.2, NEG_INF]
    correct = [1, 0, 1, 0, 0]
    # at 0.5 the tie is accepted: 3 of 5, 2 of them correct
    result = coverage_at_threshold(scores, correct, 0.5)
    assert (result.num_accepted, result.num_predictions, result.threshold) == (3, 5, 0.5)
    assert result.coverage == pytest.approx(3 / 5) and result.precision == pytest.approx(2 / 3)
    # just above 0.5: only 0.9
    result = coverage_at_threshold(scores, correct, np.nextafter(0.5, 1.0))
    assert (result.num_accepted, result.precision) == (1, 1.0)
    # a very low threshold accepts everything but -inf, which still counts in the denominator
    result = coverage_at_threshold(scores, correct, -1e300)
    assert result.num_accepted == 4 and result.coverage == pytest.approx(4 / 5) and result.precision == 0.5
    # nothing accepted: precision NaN (None in to_dict)
    result = coverage_at_threshold(scores, correct, 1.0)
    assert result.num_accepted == 0 and result.coverage == 0.0 and math.isnan(result.precision)
    assert result.to_dict() == {
        "threshold": 1.0,
        "coverage": 0.0,
        "precision": None,
        "num_accepted": 0,
        "num_predictions": 5,
    }


# A -inf score (no prediction) is never accepted, even at a threshold of -inf, but stays in the denominator.
def test_coverage_at_threshold_minus_inf_threshold_never_accepts_no_prediction():
    result = coverage_at_threshold([0.9, 0.5, 0.5, 0.2, NEG_INF], [1, 0, 1, 0, 0], NEG_INF)
    assert result.num_accepted == 4
    assert result.coverage == pytest.approx(4 / 5)
    assert result.precision == pytest.approx(1 / 2)


def test_coverage_at_k_hand_computed():
    # calibration [n=3, k=2] with one -inf padding; flattened and sorted:
    # 0.9 T (1/1), 0.8 T (2/2), 0.7 T (3/3), 0.6 F (3/4), 0.3 T (4/5); denominator 6
    calibration_scores = np.array([[0.9, 0.8], [0.7, NEG_INF], [0.6, 0.3]])
    calibration_correct = np.array([[1, 1], [1, 0], [0, 1]])
    test_scores = np.array([[0.95, 0.7], [0.5, 0.4], [NEG_INF, NEG_INF]])
    test_correct = np.array([[1, 0], [1, 0], [0, 0]])

    # target 0.9: 0.6 (3/4) and 0.3 (4/5) fail -> 0.7; on test 0.95 and 0.7 are accepted: 2 of 6, 1 correct
    calibration, test = coverage_at_k(calibration_scores, calibration_correct, test_scores, test_correct, 0.9)
    assert (calibration.threshold, calibration.num_accepted, calibration.num_predictions) == (0.7, 3, 6)
    assert calibration.coverage == pytest.approx(0.5) and calibration.precision == 1.0
    assert (test.threshold, test.num_accepted, test.num_predictions) == (0.7, 2, 6)
    assert test.coverage == pytest.approx(2 / 6) and test.precision == pytest.approx(0.5)

    # target 0.8: 0.3 reaches 4/5 -> coverage 5/6; on test 4 of 6 accepted, 2 correct
    calibration, test = coverage_at_k(calibration_scores, calibration_correct, test_scores, test_correct, 0.8)
    assert (calibration.threshold, calibration.num_accepted) == (0.3, 5)
    assert calibration.coverage == pytest.approx(5 / 6) and calibration.precision == pytest.approx(0.8)
    assert test.num_accepted == 4 and test.coverage == pytest.approx(4 / 6) and test.precision == pytest.approx(0.5)

    # k = 1 (1-D) is C@1: top-1 column only -> 0.9 T, 0.7 T, 0.6 F; target 0.9 -> 0.7; test 0.95, 0.5, -inf -> 1/3
    calibration, test = coverage_at_k(
        calibration_scores[:, 0], calibration_correct[:, 0], test_scores[:, 0], test_correct[:, 0], 0.9
    )
    assert (calibration.threshold, calibration.num_accepted, calibration.num_predictions) == (0.7, 2, 3)
    assert test.num_accepted == 1 and test.coverage == pytest.approx(1 / 3) and test.precision == 1.0

    # unreachable: the test side accepts nothing
    calibration, test = coverage_at_k(
        calibration_scores, calibration_correct, test_scores, test_correct, 1.0, "clopper_pearson"
    )
    assert not calibration.reachable and test.num_accepted == 0 and test.coverage == 0.0


# ----------------------------------------------------------------------------------------------------------------
# Calibration and coverage: randomised against reference loops
# ----------------------------------------------------------------------------------------------------------------

TARGETS = ["0.3", "0.5", "0.6", "0.75", "0.8", "0.9", "0.95", "1.0"]


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("method", ["empirical", "clopper_pearson"])
def test_calibrate_matches_reference(seed, method):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 80))
    scores, correct = random_scored(rng, n)
    if seed % 2:
        scores, correct = scores.reshape(-1, 1), correct.astype(int).reshape(-1, 1)  # [n, 1] and 0/1 flags
    flat_scores, flat_correct = scores.ravel(), correct.ravel()
    delta = [0.05, 0.1, 0.3][seed % 3]
    for target in TARGETS:
        expected = reference_calibrate(flat_scores, flat_correct, target, method, delta)
        result = calibrate_threshold(scores, correct, float(target), method=method, delta=delta)
        assert result.num_predictions == n
        if expected is None:
            assert not result.reachable and result.num_accepted == 0 and result.coverage == 0.0
            assert math.isnan(result.precision)
            continue
        threshold, accepted, num_correct = expected
        assert result.threshold == threshold, target
        assert result.num_accepted == accepted
        assert result.coverage == pytest.approx(accepted / n)
        assert result.precision == pytest.approx(num_correct / accepted)
        # applying the threshold to the same split reproduces the calibration figures
        again = coverage_at_threshold(scores, correct, result.threshold)
        assert (again.num_accepted, again.coverage) == (result.num_accepted, result.coverage)
        assert again.precision == pytest.approx(result.precision)


@pytest.mark.parametrize("seed", range(6))
def test_coverage_at_threshold_and_curve_match_reference(seed):
    rng = np.random.default_rng(100 + seed)
    n = int(rng.integers(1, 60))
    scores, correct = random_scored(rng, n, neg_inf_share=0.2)
    for threshold in [-1e9, -0.05, 0.0, 0.1, 0.3, 0.35, 0.5, 0.7, 0.9, 1.0, 1.1, math.inf]:
        accepted, num_correct = reference_coverage(scores, correct, threshold)
        result = coverage_at_threshold(scores, correct, threshold)
        assert (result.num_accepted, result.num_predictions) == (accepted, n)
        assert result.coverage == pytest.approx(accepted / n)
        if accepted:
            assert result.precision == pytest.approx(num_correct / accepted)
        else:
            assert math.isnan(result.precision)

    groups = reference_groups(scores, correct)
    curve = precision_coverage_curve(scores, correct)
    np.testing.assert_array_equal(curve.thresholds, [g[0] for g in groups])
    np.testing.assert_array_equal(curve.num_accepted, [g[1] for g in groups])
    np.testing.assert_array_equal(curve.num_correct, [g[2] for g in groups])
    np.testing.assert_allclose(curve.coverage, [g[1] / n for g in groups])
    np.testing.assert_allclose(curve.precision, [g[2] / g[1] for g in groups])
    # area: each accepted prediction weighs 1/n times the precision of the operating point that first accepts it
    expected_area, previous = 0.0, 0
    for _, accepted, num_correct in groups:
        expected_area += (accepted - previous) * (num_correct / accepted) / n
        previous = accepted
    assert curve.area() == pytest.approx(expected_area)


# ----------------------------------------------------------------------------------------------------------------
# OPIS
# ----------------------------------------------------------------------------------------------------------------


def test_opis_hand_computed():
    # label 0: positive 0.9, negative 0.1; label 1: positive 0.4, negative 0.7
    scores = [0.9, 0.1, 0.4, 0.7]
    correct = [1, 0, 1, 0]
    labels = [0, 0, 1, 1]
    # threshold 0.5: label 0 TPR 1 TNR 1 -> U 1; label 1 TPR 0 TNR 0 -> U 0; overall TPR 1/2 TNR 1/2 -> U 1/2
    # OPIS = ((1 - 1/2)^2 + (0 - 1/2)^2) / 2 = 1/4
    result = opis(scores, correct, labels, min_positives=1, threshold_range=(0.5, 0.5), num_thresholds=2)
    assert result.value == pytest.approx(0.25)
    assert (result.num_labels, result.threshold_low, result.threshold_high) == (2, 0.5, 0.5)
    # threshold 0.4 (ties accepted): label 0 -> U 1; label 1 TPR 1 TNR 0 -> U 0; overall TPR 1, TNR 1/2 -> U 2/3
    # OPIS = ((1/3)^2 + (2/3)^2) / 2 = 5/18
    result = opis(scores, correct, labels, min_positives=1, threshold_range=(0.4, 0.4), num_thresholds=3)
    assert result.value == pytest.approx(5 / 18)
    # thresholds 0.4 and 0.5 together: per label the mean over thresholds of the squared deviation,
    # label 0 ((1/2)^2 + (1/3)^2) / 2, label 1 ((1/2)^2 + (2/3)^2) / 2, then the mean over the two labels
    result = opis(scores, correct, labels, min_positives=1, threshold_range=(0.4, 0.5), num_thresholds=2)
    assert result.value == pytest.approx(((1 / 4 + 1 / 9) / 2 + (1 / 4 + 4 / 9) / 2) / 2)


def test_opis_identical_labels_score_zero():
    # two labels with the same score distribution have the overall utility curve: OPIS 0
    base_scores = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3]
    base_correct = [1, 1, 0, 1, 1, 0, 1]
    result = opis(base_scores * 2, base_correct * 2, [3] * 7 + [8] * 7)
    assert result.value == pytest.approx(0.0, abs=1e-15) and result.num_labels == 2


@pytest.mark.parametrize("seed", range(6))
def test_opis_matches_reference(seed):
    rng = np.random.default_rng(200 + seed)
    parts_scores, parts_correct, parts_labels = [], [], []
    for label in rng.permutation(7) * 10 - 20:  # arbitrary (also negative) label values, not sorted
        size = int(rng.integers(3, 25))
        scores, correct = random_scored(rng, size)
        kind = int(rng.integers(0, 5))
        if kind == 0:
            correct[:] = scores > NEG_INF  # no negative at all (after dropping -inf)
        elif kind == 1:
            correct[:] = False
            correct[: int(rng.integers(0, 5))] = True  # fewer than 5 positives (maybe)
            correct &= scores > NEG_INF
        parts_scores.append(scores)
        parts_correct.append(correct)
        parts_labels.append(np.full(size, label))
    order = rng.permutation(sum(len(s) for s in parts_scores))
    scores = np.concatenate(parts_scores)[order]
    correct = np.concatenate(parts_correct)[order]
    labels = np.concatenate(parts_labels)[order]
    correct[0], correct[1] = True, False  # both kinds present
    scores[0], scores[1] = 0.5, 0.5

    for min_positives in (1, 5):
        # default range: the 5th and 95th percentiles of the positive scores
        result = opis(scores, correct, labels, min_positives=min_positives, num_thresholds=21)
        positives = [s for s, c in zip(scores, correct, strict=True) if c and s > NEG_INF]
        assert result.threshold_low == pytest.approx(reference_percentile(positives, 5), abs=1e-12)
        assert result.threshold_high == pytest.approx(reference_percentile(positives, 95), abs=1e-12)
        thresholds = np.linspace(result.threshold_low, result.threshold_high, 21)
        expected, num_labels = reference_opis(scores, correct, labels, thresholds, min_positives)
        assert result.num_labels == num_labels
        if num_labels:
            assert result.value == pytest.approx(expected, rel=1e-10, abs=1e-15)
        else:
            assert math.isnan(result.value)

        # explicit range, thresholds landing on score values (ties)
        result = opis(
            scores, correct, labels, min_positives=min_positives, threshold_range=(0.0, 1.0), num_thresholds=11
        )
        assert (result.threshold_low, result.threshold_high) == (0.0, 1.0)
        expected, num_labels = reference_opis(scores, correct, labels, np.linspace(0.0, 1.0, 11), min_positives)
        assert result.num_labels == num_labels
        if num_labels:
            assert result.value == pytest.approx(expected, rel=1e-10, abs=1e-15)
        else:
            assert math.isnan(result.value)


def test_opis_skips_labels_and_is_nan_when_none_qualifies():
    scores = [0.9, 0.8, 0.7, 0.2, 0.6, 0.5, 0.4, 0.3, 0.35, NEG_INF]
    correct = [1, 1, 1, 0, 1, 1, 1, 1, 1, 0]
    labels = [0, 0, 0, 0, 1, 1, 1, 1, 1, 1]
    # label 0: 3 positives; label 1: 5 positives but its only negative is -inf (dropped) -> both skipped
    result = opis(scores, correct, labels)
    assert result.num_labels == 0 and math.isnan(result.value)
    # with min_positives 3 label 0 qualifies, label 1 still has no negative
    result = opis(scores, correct, labels, min_positives=3)
    assert result.num_labels == 1 and math.isfinite(result.value)


# ----------------------------------------------------------------------------------------------------------------
# Bad input
# ----------------------------------------------------------------------------------------------------------------

GOOD_SCORES = [0.9, 0.5, 0.1]
GOOD_CORRECT = [1, 0, 1]


def scored_entry_points(scores, correct):
    """Every function that validates a (scores, correct) pair, called on it."""
    return [
        lambda: calibrate_threshold(scores, correct, 0.5),
        lambda: calibrate_threshold(scores, correct, 0.5, method="clopper_pearson"),
        lambda: coverage_at_threshold(scores, correct, 0.5),
        lambda: precision_coverage_curve(scores, correct),
        lambda: coverage_at_k(scores, correct, GOOD_SCORES, GOOD_CORRECT, 0.5),
        lambda: coverage_at_k(GOOD_SCORES, GOOD_CORRECT, scores, correct, 0.5),
        lambda: opis(scores, correct, np.zeros(np.size(scores), dtype=int)),
    ]


@pytest.mark.parametrize(
    ("scores", "correct", "match"),
    [
        ([0.9, 0.5], [1, 0, 1], r"shape"),
        ([0.9, math.nan, 0.1], GOOD_CORRECT, r"\[1\] is nan: scores must be finite"),
        ([0.9, 0.5, math.inf], GOOD_CORRECT, r"\[2\] is inf: scores must be finite"),
        ([NEG_INF, 0.5, 0.1], GOOD_CORRECT, r"\[0\] is -inf \(no prediction\) but is marked correct"),
        ([], [], r"empty"),
        (GOOD_SCORES, [1, 2, 0], r"booleans or 0/1"),
        (GOOD_SCORES, [1.0, 0.5, 0.0], r"booleans or 0/1"),
        (GOOD_SCORES, [1, -1, 0], r"booleans or 0/1"),
    ],
)
def test_bad_scores_raise(scores, correct, match):
    for call in scored_entry_points(scores, correct):
        with pytest.raises(ValueError, match=match):
            call()


@pytest.mark.parametrize("target", [0.0, -0.1, 1.0000001, 1.5, math.nan])
def test_bad_target_precision_raises(target):
    for method in ("empirical", "clopper_pearson"):
        with pytest.raises(ValueError, match=r"target precision must be in \(0, 1\]"):
            calibrate_threshold(GOOD_SCORES, GOOD_CORRECT, target, method=method)
    with pytest.raises(ValueError, match=r"target precision"):
        coverage_at_k(GOOD_SCORES, GOOD_CORRECT, GOOD_SCORES, GOOD_CORRECT, target)


def test_bad_method_and_delta_raise():
    with pytest.raises(ValueError, match=r"method must be one of .*'bisection'"):
        calibrate_threshold(GOOD_SCORES, GOOD_CORRECT, 0.5, method="bisection")
    for delta in (0.0, 1.0, -0.05, 1.5):
        with pytest.raises(ValueError, match=r"delta must be in \(0, 1\)"):
            calibrate_threshold(GOOD_SCORES, GOOD_CORRECT, 0.5, method="clopper_pearson", delta=delta)


def test_coverage_bad_threshold_and_shape_raise():
    with pytest.raises(ValueError, match=r"threshold is NaN"):
        coverage_at_threshold(GOOD_SCORES, GOOD_CORRECT, math.nan)
    cube = np.zeros((2, 2, 2))
    with pytest.raises(ValueError, match=r"calibration_scores must be \[n\] or \[n, k\]"):
        coverage_at_k(cube, cube.astype(bool), GOOD_SCORES, GOOD_CORRECT, 0.5)
    with pytest.raises(ValueError, match=r"test_scores must be \[n\] or \[n, k\]"):
        coverage_at_k(GOOD_SCORES, GOOD_CORRECT, cube, cube.astype(bool), 0.5)


@pytest.mark.parametrize("k", [0, -1, 5])
def test_precision_at_k_bad_k_raises(k):
    with pytest.raises(ValueError, match=r"k must be between 1 and the 4 predictions per query"):
        precision_at_k(PREDICTED, RELEVANT, k)


@pytest.mark.parametrize(
    ("predicted", "match"),
    [
        (np.array([1, 2, 3]), r"2-D integer array"),
        (np.zeros((2, 2, 2), dtype=int), r"2-D integer array"),
        (np.array([[1.0, 2.0]]), r"2-D integer array"),
        (np.zeros((0, 3), dtype=int), r"no query"),
        (np.array([[1, -2], [0, 1]]), r"below -1"),
    ],
)
def test_bad_predicted_ids_raise(predicted, match):
    relevant = [[0]] * len(predicted)
    scores = np.zeros(np.shape(predicted))
    for call in (
        lambda: precision_at_k(predicted, relevant, 1),
        lambda: relevance_matrix(predicted, relevant),
        lambda: drop_filtered_pairs(predicted, scores, np.array([[0, 1]])),
    ):
        with pytest.raises(ValueError, match=match):
            call()


@pytest.mark.parametrize(
    "filter_pairs", [np.array([0, 1]), np.array([[0, 1, 2]]), np.zeros((1, 2, 2), dtype=int), [[0], [1]]]
)
def test_bad_filter_pairs_raise(filter_pairs):
    with pytest.raises(ValueError, match=r"filter_pairs must be \[m, 2\]"):
        precision_at_k(PREDICTED, RELEVANT, 1, filter_pairs)
    with pytest.raises(ValueError, match=r"filter_pairs must be \[m, 2\]"):
        drop_filtered_pairs(PREDICTED, np.zeros(PREDICTED.shape), filter_pairs)


def test_ranking_mismatched_lengths_raise():
    with pytest.raises(ValueError, match=r"relevant has 2 rows but there are 3 queries"):
        precision_at_k(PREDICTED, RELEVANT[:2], 1)
    with pytest.raises(ValueError, match=r"relevant has 2 rows but there are 3 queries"):
        relevance_matrix(PREDICTED, RaggedIds.from_lists(RELEVANT[:2]))
    with pytest.raises(ValueError, match=r"scores has shape \(3, 3\) but predicted_ids has \(3, 4\)"):
        drop_filtered_pairs(PREDICTED, np.zeros((3, 3)), None)


def test_opis_bad_input_raises():
    with pytest.raises(ValueError, match=r"both positive and negative"):
        opis([0.9, 0.5, 0.1], [1, 1, 1], [0, 0, 1])  # no negative
    with pytest.raises(ValueError, match=r"both positive and negative"):
        opis([0.9, 0.5, NEG_INF], [1, 1, 0], [0, 0, 1])  # the only negative is "no prediction"
    with pytest.raises(ValueError, match=r"both positive and negative"):
        opis([0.9, 0.5], [0, 0], [0, 1])  # no positive
    with pytest.raises(ValueError, match=r"labels has 2 entries but there are 3 scored pairs"):
        opis(GOOD_SCORES, GOOD_CORRECT, [0, 1])
    with pytest.raises(ValueError, match=r"min_positives must be >= 1"):
        opis(GOOD_SCORES, GOOD_CORRECT, [0, 0, 0], min_positives=0)
    with pytest.raises(ValueError, match=r"num_thresholds >= 2"):
        opis(GOOD_SCORES, GOOD_CORRECT, [0, 0, 0], num_thresholds=1)


# ----------------------------------------------------------------------------------------------------------------
# score_shift: the two-sample check that a calibrated threshold still applies
# ----------------------------------------------------------------------------------------------------------------


def ks_statistic_by_hand(a: list[float], b: list[float]) -> Fraction:
    """sup_x |F_a(x) - F_b(x)| over every observed x, with the empirical CDFs counted one value at a time."""
    best = Fraction(0)
    for x in a + b:
        below_a = sum(1 for v in a if v <= x)
        below_b = sum(1 for v in b if v <= x)
        best = max(best, abs(Fraction(below_a, len(a)) - Fraction(below_b, len(b))))
    return best


def share_above_by_hand(scores: list[float], threshold: float) -> float:
    return sum(1 for s in scores if s >= threshold and s != NEG_INF) / len(scores)


@pytest.mark.parametrize("seed", range(4))
def test_score_shift_statistic_and_p_value_match_a_permutation_count(seed):
    rng = np.random.default_rng(seed)
    pooled = rng.permutation(np.round(rng.uniform(0.3, 1.0, 11), 6)).tolist()
    assert len(set(pooled)) == 11, "distinct values: the exact test assumes no ties"
    calibration, test = pooled[:5], pooled[5:]
    shift = score_shift(np.array(calibration), np.array(test), [0.6, 0.8])
    observed = ks_statistic_by_hand(calibration, test)
    assert shift.statistic == pytest.approx(float(observed), abs=1e-12)
    # The exact two-sided p-value: of all ways to deal the 11 values into splits of 5 and 6, the share whose
    # statistic is at least the observed one.
    deals = [
        ks_statistic_by_hand([pooled[i] for i in chosen], [v for i, v in enumerate(pooled) if i not in chosen])
        for chosen in itertools.combinations(range(11), 5)
    ]
    assert shift.p_value == pytest.approx(sum(d >= observed for d in deals) / len(deals), rel=1e-9)
    for index, threshold in enumerate((0.6, 0.8)):
        assert shift.calibration_share_above[index] == share_above_by_hand(calibration, threshold)
        assert shift.test_share_above[index] == share_above_by_hand(test, threshold)


def test_score_shift_counts_no_prediction_as_the_lowest_score():
    calibration = [NEG_INF, 0.2, 0.5, 0.5, 0.9]
    test = [NEG_INF, NEG_INF, NEG_INF, 0.5, 0.7, 0.95]
    shift = score_shift(np.array(calibration), np.array(test), [0.5, math.inf])
    assert shift.statistic == pytest.approx(float(ks_statistic_by_hand(calibration, test)), abs=1e-12)
    # -inf is below every threshold (never accepted); an unreachable threshold (inf) accepts nothing.
    assert shift.calibration_share_above == (3 / 5, 0.0)
    assert shift.test_share_above == (3 / 6, 0.0)
    written = json.loads(json.dumps(shift.to_dict(), allow_nan=False))
    assert written["thresholds"] == [0.5, None]


def test_scores_from_one_distribution_raise_no_shift_warning():
    rng = np.random.default_rng(0)
    calibration, test = rng.normal(0.7, 0.1, 5000), rng.normal(0.7, 0.1, 5000)
    shift = score_shift(calibration, test, np.quantile(calibration, [0.5, 0.8]))
    assert shift.p_value > 0.01 and shift.largest_share_gap < 0.02
    assert not shift.warning
    assert "may not" not in shift.describe()


def test_shifted_test_scores_raise_the_shift_warning():
    rng = np.random.default_rng(0)
    calibration = rng.normal(0.7, 0.1, 5000)
    test = rng.normal(0.7, 0.1, 5000) + 0.05
    thresholds = np.quantile(calibration, [0.5, 0.8])
    shift = score_shift(calibration, test, thresholds)
    assert shift.p_value < 1e-10
    # Half a standard deviation up: about 19 more points of test queries clear the median threshold.
    assert shift.test_share_above[0] - shift.calibration_share_above[0] == pytest.approx(0.19, abs=0.03)
    assert shift.warning
    assert "the calibrated thresholds may not give their precision on test" in shift.describe()
    assert shift.to_dict()["score_shift_warning"] is True


def test_the_shift_warning_needs_both_significance_and_size():
    rng = np.random.default_rng(1)
    # Significant but small: 200,000 queries see a shift of 0.005, which moves the share by about 2 points.
    calibration = rng.normal(0.7, 0.1, 200_000)
    shift = score_shift(calibration, rng.normal(0.7, 0.1, 200_000) + 0.005, [np.median(calibration)])
    assert shift.p_value < 0.01 and shift.largest_share_gap < 0.05 and not shift.warning
    # Large but not significant: on 20 queries a share moves by more than 5 points by chance.
    calibration = np.linspace(0.5, 0.9, 20)
    test = calibration + 0.021  # every score up a little: two more of 20 clear 0.7
    shift = score_shift(calibration, test, [0.7])
    assert shift.largest_share_gap > 0.05 and shift.p_value > 0.01 and not shift.warning


def test_a_shifted_population_is_flagged_even_when_the_shares_above_the_thresholds_hold():
    # WDC's case: most of the test distribution moves while the thin top tail above a high threshold barely does.
    rng = np.random.default_rng(2)
    calibration, test = rng.normal(0.5, 0.1, 2000), rng.normal(0.55, 0.1, 2000)
    shift = score_shift(calibration, test, [0.95])
    assert shift.largest_share_gap < 0.01 and shift.statistic > 0.15 and shift.p_value < 1e-10
    assert shift.warning
    assert not score_shift(calibration, test, [0.95], statistic_tolerance=0.3).warning  # the share rule alone
    assert not score_shift(calibration, test, []).warning  # nothing to watch
    assert shift.to_dict()["statistic_tolerance"] == 0.1


@pytest.mark.parametrize(
    "arguments,message",
    [
        (([], [0.5], [0.5]), "calibration_scores is empty"),
        (([0.5], [0.5, math.nan], [0.5]), r"test_scores\[1\] is nan"),
        (([0.5, math.inf], [0.5], [0.5]), r"calibration_scores\[1\] is inf"),
        (([0.5], [0.5], [0.5], 0.0), r"alpha must be in \(0, 1\)"),
        (([0.5], [0.5], [0.5], 0.01, 1.0), r"tolerance must be in \[0, 1\)"),
        (([0.5], [0.5], [0.5], 0.01, 0.05, 0.0), r"statistic_tolerance must be in \(0, 1\]"),
    ],
)
def test_score_shift_bad_input_raises(arguments, message):
    with pytest.raises(ValueError, match=message):
        score_shift(*arguments)
