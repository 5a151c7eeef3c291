"""A threshold certified on your own traffic: label a few top-1 predictions, get a precision guaranteed there.

A threshold calibrated on a validation split keeps its precision only where production looks like that split.
Certification needs no such assumption: it labels a uniform random sample of the traffic's own top-1 predictions
and returns the threshold with the most coverage whose precision **on that traffic** is at least the target, with
probability at least ``1 - delta`` over the draw of the sample.

The procedure (design-based: the traffic, its scores and the truth of each prediction are fixed; the only
randomness is which predictions are drawn, so no model of the scores is assumed):

1. **Region.** Only thresholds down to ``region_threshold`` are considered, the score above which ``max_coverage``
   of the traffic lies; predictions scoring at least it form the region. Labels are drawn uniformly at random,
   without replacement, from the region alone: none is spent where no threshold will go.
2. **Candidates** (fixed by unlabelled information only: the traffic's scores and the number of labels): the
   distinct traffic scores of the region, strict to loose, from the first whose accepted set holds, with
   probability 0.95 over the draw, enough labels for an all-correct sample to certify the target (29 at 0.90 and
   ``delta = 0.05``).
3. **Test** of each candidate ``t``: ``N`` traffic predictions score at least ``t``, ``n`` of the labelled ones do,
   ``k`` of those are correct. Given ``n``, those ``n`` are a uniform sample of the ``N``, so the number correct is
   hypergeometric: the p-value of "precision below the target" is ``P(X >= k)`` for ``X ~ Hypergeom(N, K, n)`` with
   ``K`` the largest count of correct predictions below the target (``ceil(target * N) - 1``). Exact for a finite
   traffic, and tighter than the binomial (Clopper–Pearson) bound when the labels are a large share of ``N``.
4. **Fixed-sequence testing** (Learn-then-Test, Angelopoulos et al., arXiv 2110.01052): candidates are tested strict
   to loose, each at level ``delta``, and the sequence stops at the first that is not certified. The certified
   threshold is the loosest before the stop. The chance that it misses the target is at most ``delta``: a wrong
   certification needs the first candidate that misses the target to be certified, a test of level ``delta``.

Rounds: the labels come in rounds of a size fixed in advance, each the next part of one random order of the region,
so the labels of rounds 1..r are a uniform sample of the region; round ``r`` is certified at ``delta / max_rounds``,
so stopping after any round keeps the guarantee (a union bound over the rounds).

MAPIE 1.6's ``BinaryClassificationController`` also runs Learn-then-Test, but on an i.i.d. labelled calibration set
scored by a scikit-learn classifier, with binomial p-values: it has no region to sample from nor the finite
traffic whose precision is certified here. The procedure is a few lines of SciPy, so it lives here, NumPy and SciPy
only, like the rest of :mod:`alc_hf.core.metrics`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy.stats import hypergeom

from alc_hf.core.coverage_metric.calibration import check_no_nan_or_inf, check_target_precision

__all__ = [
    "Certification",
    "certification_candidates",
    "certify_threshold",
    "draw_order",
    "labelling_region",
    "labels_to_certify",
]


# The first candidate holds enough labels to certify, all correct, with this probability over the draw.
START_CONFIDENCE = 0.95
# Candidates tested per call of the hypergeometric tail (see _first_failure).
_BLOCK = 64


def _scores(scores: Sequence[float] | np.ndarray) -> np.ndarray:
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if scores.size == 0:
        raise ValueError("the traffic holds no prediction")
    check_no_nan_or_inf(scores, "traffic scores")
    return scores


def _check_delta(delta: float) -> None:
    if not 0.0 < delta < 1.0:
        raise ValueError(f"delta must be in (0, 1), got {delta}")


def labels_to_certify(target_precision: float, delta: float) -> int:
    """How many labelled predictions, all correct, certify ``target_precision`` at confidence ``1 - delta`` on a
    large traffic: the smallest ``m`` with ``target ** m <= delta`` (29 at 0.90 and 0.05, 59 at 0.95)."""
    target_precision = check_target_precision(target_precision)
    _check_delta(delta)
    if target_precision == 1.0:
        raise ValueError("a precision of 1 cannot be certified from a sample: every prediction would need a label")
    return math.ceil(math.log(delta) / math.log(target_precision) - 1e-9)


def labelling_region(scores: Sequence[float] | np.ndarray, max_coverage: float = 1.0) -> float:
    """The loosest threshold considered: the score of the ``ceil(max_coverage * n)``-th best of the ``n`` traffic
    predictions that have one (``-inf``: no prediction, never accepted). Predictions scoring at least it are the
    region labels are drawn from."""
    scores = _scores(scores)
    if not 0.0 < max_coverage <= 1.0:
        raise ValueError(f"max_coverage must be in (0, 1], got {max_coverage}")
    scored = np.sort(scores[scores > -np.inf])[::-1]
    if scored.size == 0:
        raise ValueError("no traffic query has a prediction: there is nothing to accept")
    return float(scored[min(scored.size, math.ceil(max_coverage * scored.size - 1e-9)) - 1])


def draw_order(scores: Sequence[float] | np.ndarray, region_threshold: float, seed: int = 0) -> np.ndarray:
    """The traffic positions of the region (scores at least ``region_threshold``) in a uniformly random order: the
    first ``b`` are a uniform sample of ``b`` without replacement, and each round of labels takes the next part."""
    scores = _scores(scores)
    region = np.flatnonzero((scores >= region_threshold) & (scores > -np.inf))
    return np.random.default_rng(seed).permutation(region)


def certification_candidates(
    scores: Sequence[float] | np.ndarray,
    region_threshold: float,
    num_labelled: int,
    target_precision: float,
    delta: float,
) -> np.ndarray:
    """The thresholds tested, strict to loose: the distinct traffic scores down to ``region_threshold``, from the
    first whose accepted set holds, with probability at least :data:`START_CONFIDENCE` over the draw, the
    :func:`labels_to_certify` labels an all-correct sample needs: a stricter one would most often certify nothing,
    and its failure would stop the sequence. They depend on the scores and the number of labels only, never on the
    labels."""
    scores = _scores(scores)
    in_region = scores[(scores >= region_threshold) & (scores > -np.inf)]
    if num_labelled < 1 or num_labelled > in_region.size:
        raise ValueError(f"num_labelled must be in [1, {in_region.size}] (the region's size), got {num_labelled}")
    distinct = np.unique(in_region)[::-1]
    accepted = np.searchsorted(-np.sort(in_region)[::-1], -distinct, side="right")  # region predictions >= each
    needed = min(labels_to_certify(target_precision, delta), num_labelled)
    # How many of the labels fall at or above a candidate is hypergeometric (the draw is uniform over the region),
    # and the chance of enough grows as the threshold loosens: a bisection finds the first. The loosest always
    # qualifies: every label falls at or above it.
    low, high = 0, distinct.size - 1
    while low < high:
        middle = (low + high) // 2
        if hypergeom.sf(needed - 1, in_region.size, accepted[middle], num_labelled) >= START_CONFIDENCE - 1e-12:
            high = middle
        else:
            low = middle + 1
    return distinct[low:]


@dataclass(frozen=True)
class Certification:
    """What :func:`certify_threshold` certified. ``threshold`` is ``inf`` (accept nothing) when no candidate was
    certified; ``coverage`` and ``num_accepted`` are then 0 and the bound is None.

    ``precision_lower_bound``: the exact ``1 - delta`` lower confidence bound of the precision of all traffic
    predictions above the threshold. ``labelled_precision``: the share correct among the labelled ones there.
    ``next_undecided``: the candidate after the certified one could still reach the target (its ``1 - delta``
    upper bound is at least the target): more labels may certify a looser threshold. False when every candidate was
    certified, or when the next one is below the target with confidence ``1 - delta``.

    ``stopped_*``: where the sequence stopped, the first candidate not certified (None and 0 when every one was):
    its threshold, the labelled predictions at or above it, how many of them are correct, and the exact ``1 -
    delta`` lower bound they give the precision there, under the target: why nothing looser is certified."""

    target_precision: float
    delta: float
    threshold: float
    coverage: float
    num_accepted: int
    num_predictions: int
    precision_lower_bound: float | None
    labelled_precision: float | None
    num_labelled: int
    num_labelled_accepted: int
    num_candidates: int
    num_certified: int
    next_undecided: bool
    region_threshold: float
    stopped_threshold: float | None = None
    stopped_num_labelled: int = 0
    stopped_num_correct: int = 0
    stopped_precision_lower_bound: float | None = None

    @property
    def certified(self) -> bool:
        return math.isfinite(self.threshold)

    def to_dict(self) -> dict:
        """The figures as JSON takes them (an infinite threshold as None)."""
        return {key: (None if isinstance(v, float) and not math.isfinite(v) else v) for key, v in asdict(self).items()}


def _largest_count_below(target_precision: float, num: np.ndarray) -> np.ndarray:
    """The most correct predictions among ``num`` whose precision is still below the target."""
    return np.ceil(target_precision * num - 1e-9).astype(np.int64) - 1


def _first_failure(
    num_correct: np.ndarray, num_accepted: np.ndarray, below: np.ndarray, num_labelled: np.ndarray, delta: float
) -> int:
    """The position of the first candidate whose test does not reject "precision below the target" at ``delta``
    (the number of candidates when every one does). Tested in blocks: the sequence stops at the first failure, so
    the candidates after it need no p-value."""
    for start in range(0, num_correct.size, _BLOCK):
        block = slice(start, start + _BLOCK)
        p_values = hypergeom.sf(num_correct[block] - 1, num_accepted[block], below[block], num_labelled[block])
        failures = np.flatnonzero(p_values > delta)
        if failures.size:
            return start + int(failures[0])
    return num_correct.size


def precision_lower_bound(num_correct: int, num_labelled: int, population: int, delta: float) -> float:
    """The exact ``1 - delta`` lower confidence bound of the precision of ``population`` predictions of which a
    uniform sample of ``num_labelled`` holds ``num_correct`` correct ones: the smallest ``K / population`` that the
    one-sided hypergeometric test does not reject."""
    counts = np.arange(population + 1)
    p_values = hypergeom.sf(num_correct - 1, population, counts, num_labelled)
    return float(np.flatnonzero(p_values > delta)[0] / population)


def certify_threshold(
    scores: Sequence[float] | np.ndarray,
    labelled: Sequence[int] | np.ndarray,
    correct: Sequence[bool] | np.ndarray,
    target_precision: float,
    region_threshold: float,
    delta: float = 0.05,
) -> Certification:
    """The loosest candidate threshold certified, by fixed-sequence testing, to give at least ``target_precision``
    on the traffic ``scores`` (one top-1 score per traffic query, ``-inf`` for none), from the labels ``correct`` of
    the traffic positions ``labelled``: a uniform sample, without replacement, of the region above
    ``region_threshold`` (:func:`draw_order`). See the module's account of the procedure and its guarantee.

    Raises:
        ValueError: a bad target or ``delta``, a labelled position that is repeated, outside the traffic or outside
            the region (the guarantee needs a uniform sample of the region), or labels that are not 0/1.
    """
    scores = _scores(scores)
    target_precision = check_target_precision(target_precision)
    _check_delta(delta)
    labelled = np.asarray(labelled, dtype=np.int64).reshape(-1)
    correct = np.asarray(correct).reshape(-1)
    if labelled.shape != correct.shape:
        raise ValueError(f"{labelled.size} labelled positions but {correct.size} labels")
    if correct.dtype != bool:
        if not np.isin(correct, (0, 1)).all():
            raise ValueError("labels must be booleans or 0/1")
        correct = correct.astype(bool)
    if labelled.size == 0:
        raise ValueError("no labelled prediction: label a sample first")
    if labelled.min() < 0 or labelled.max() >= scores.size:
        raise ValueError(f"labelled positions must be in [0, {scores.size}), the traffic's size")
    if np.unique(labelled).size != labelled.size:
        raise ValueError("a traffic position is labelled twice: the sample is drawn without replacement")
    outside = np.flatnonzero(~(scores[labelled] >= region_threshold) | (scores[labelled] == -np.inf))
    if outside.size:
        raise ValueError(
            f"traffic position {labelled[outside[0]]} scores {scores[labelled[outside[0]]]}, below the region's "
            f"threshold {region_threshold}: the labels must be a uniform sample of the region"
        )

    candidates = certification_candidates(scores, region_threshold, labelled.size, target_precision, delta)
    traffic_sorted = np.sort(scores)
    labelled_order = np.argsort(-scores[labelled], kind="stable")
    labelled_scores, labelled_correct = scores[labelled][labelled_order], correct[labelled_order]
    # Per candidate: traffic predictions, labelled ones and correct labelled ones at or above it.
    num_accepted = scores.size - np.searchsorted(traffic_sorted, candidates, side="left")
    num_labelled = np.searchsorted(-labelled_scores, -candidates, side="right")
    cumulative_correct = np.concatenate([[0], np.cumsum(labelled_correct)])
    num_correct = cumulative_correct[num_labelled]
    below = _largest_count_below(target_precision, num_accepted)
    num_certified = _first_failure(num_correct, num_accepted, below, num_labelled, delta)
    next_undecided = num_certified < candidates.size and bool(
        # Could the first candidate not certified still reach the target? P(X <= k) at the smallest count reaching it.
        hypergeom.cdf(
            num_correct[num_certified],
            num_accepted[num_certified],
            below[num_certified] + 1,
            num_labelled[num_certified],
        )
        > delta
    )
    common = {
        "target_precision": target_precision,
        "delta": delta,
        "num_predictions": scores.size,
        "num_labelled": labelled.size,
        "num_candidates": candidates.size,
        "num_certified": num_certified,
        "next_undecided": next_undecided,
        "region_threshold": float(region_threshold),
    }
    if num_certified < candidates.size:
        stop = num_certified
        common.update(
            stopped_threshold=float(candidates[stop]),
            stopped_num_labelled=int(num_labelled[stop]),
            stopped_num_correct=int(num_correct[stop]),
            stopped_precision_lower_bound=precision_lower_bound(
                int(num_correct[stop]), int(num_labelled[stop]), int(num_accepted[stop]), delta
            ),
        )
    if num_certified == 0:
        return Certification(
            threshold=math.inf,
            coverage=0.0,
            num_accepted=0,
            precision_lower_bound=None,
            labelled_precision=None,
            num_labelled_accepted=0,
            **common,
        )
    best = num_certified - 1  # the loosest certified
    return Certification(
        threshold=float(candidates[best]),
        coverage=float(num_accepted[best] / scores.size),
        num_accepted=int(num_accepted[best]),
        precision_lower_bound=precision_lower_bound(
            int(num_correct[best]), int(num_labelled[best]), int(num_accepted[best]), delta
        ),
        labelled_precision=float(num_correct[best] / num_labelled[best]),
        num_labelled_accepted=int(num_labelled[best]),
        **common,
    )
