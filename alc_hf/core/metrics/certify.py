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
2. **Candidates**: the distinct traffic scores of the region, strict to loose.
3. **Test** of each candidate ``t``: ``N`` traffic predictions score at least ``t``, ``n`` of the labelled ones do,
   ``k`` of those are correct. Given ``n``, those ``n`` are a uniform sample of the ``N``, so the number correct is
   hypergeometric: the p-value of "precision below the target" is ``P(X >= k)`` for ``X ~ Hypergeom(N, K, n)`` with
   ``K`` the largest count of correct predictions below the target (``ceil(target * N) - 1``). Exact for a finite
   traffic, and tighter than the binomial (Clopper–Pearson) bound when the labels are a large share of ``N``.
4. **Fixed sequences** (Learn-then-Test, Angelopoulos et al., arXiv 2110.01052): from each start
   (:func:`sequence_starts`: where an all-correct sample could first certify, the strictest, and, when asked, where
   a quarter, half and three quarters of the region lie above; fixed by the scores and the number of labels, never
   the labels) candidates are tested strict to loose at ``delta / J`` for ``J`` starts, and each sequence stops at
   its first failure. The certified threshold is the loosest any sequence reaches. The chance that it misses the
   target is at most ``delta``: a sequence certifies a threshold that misses only if its first such candidate passes
   a test of level ``delta / J``, and the ``J`` sequences share ``delta`` (a union bound). The strictest start alone
   is the default: on every real traffic measured here precision falls from the top, and one sequence at the whole
   ``delta`` certifies more. Where the very top is a little under the target, its first test fails and it stops, so
   more labels certify less; several starts (:data:`START_SHARES`) are for that traffic.
5. **Census**: when every prediction of the region is labelled, each candidate's precision is known; the certified
   threshold is the loosest reaching the target, exactly (1.0 included), with no test and no error.

The guarantee is the target itself, at ``1 - delta``; a confidence bound taken at the certified threshold would be
chosen by the same labels, so none is reported there.

Rounds: the labels come in rounds of a size fixed in advance, each the next part of one random order of the region,
so the labels of rounds 1..r are a uniform sample of the region; round ``r`` is certified at ``delta / max_rounds``,
so stopping after any round, or keeping the loosest threshold any round certified, keeps the guarantee (a union bound
over the rounds).

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
    "sequence_starts",
]


# The first candidate holds enough labels to certify, all correct, with this probability over the draw.
START_CONFIDENCE = 0.95
# Where the sequences start besides the strictest: the thresholds above which these shares of the region lie. A
# looser start has more labels above it, so its first test tolerates a few wrong ones; the strictest certifies a clean
# top. Chosen on simulated traffic (docs/benchmarks.md, "Where the test sequences start"), not on a benchmark's labels.
START_SHARES = (0.25, 0.5, 0.75)


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


def certification_candidates(scores: Sequence[float] | np.ndarray, region_threshold: float) -> np.ndarray:
    """The thresholds that can be certified, strict to loose: the distinct traffic scores down to
    ``region_threshold``."""
    scores = _scores(scores)
    return np.unique(scores[(scores >= region_threshold) & (scores > -np.inf)])[::-1]


def sequence_starts(
    accepted: np.ndarray,
    num_labelled: int,
    target_precision: float,
    delta: float,
    start_shares: Sequence[float] = (),
) -> tuple[np.ndarray, float]:
    """Where the fixed sequences start (positions into the candidates, whose region predictions at or above each are
    ``accepted``), and the level each test is run at: ``delta`` shared equally by the sequences (a union bound).

    One sequence starts above each of ``start_shares`` of the region, and one where an all-correct sample holds,
    with probability :data:`START_CONFIDENCE` over the draw, the labels that certify the target at that level (the
    strictest start: it certifies when the very top is clean). A start where fewer labels than that are expected
    (``num_labelled * share``) is dropped, since it could not certify; the level is shared by the starts kept. They
    depend on the scores and the number of labels only, never on the labels."""
    region_size = int(accepted[-1])
    if not all(0.0 < share <= 1.0 for share in start_shares):
        raise ValueError(f"start_shares must be in (0, 1], got {list(start_shares)}")
    shares = sorted(set(start_shares))
    while True:
        level = delta / (len(shares) + 1)
        needed = labels_to_certify(target_precision, level)
        kept = [share for share in shares if share * num_labelled >= needed]
        if kept == shares:
            break
        shares = kept
    # The chance that the draw puts `needed` labels at or above a candidate grows as the threshold loosens: the
    # strictest start is the first where it reaches START_CONFIDENCE (the loosest always qualifies when n >= needed).
    enough = (
        hypergeom.sf(min(needed, num_labelled) - 1, region_size, accepted, num_labelled) >= START_CONFIDENCE - 1e-12
    )
    strictest = int(np.argmax(enough)) if enough.any() else accepted.size - 1
    starts = [strictest] + [int(np.searchsorted(accepted, math.ceil(share * region_size - 1e-9))) for share in shares]
    return np.unique(starts), level


@dataclass(frozen=True)
class Certification:
    """What :func:`certify_threshold` certified. ``threshold`` is the exact score (``inf``, accept nothing, when
    nothing was certified; ``coverage`` and ``num_accepted`` are then 0): the top-1 is accepted when its score is at
    least it, and ``num_accepted`` traffic predictions are.

    The guarantee is the target: on the traffic, the precision above ``threshold`` is at least
    ``target_precision`` with probability at least ``1 - delta`` over the draw of the labels. No sharper bound is
    given at the certified threshold, since the labels chose it; ``labelled_precision`` (the share correct among the
    labelled predictions there) only describes the sample. With ``census`` (every prediction of the region labelled)
    nothing is random: ``labelled_precision`` is the precision there, and the threshold the loosest reaching the
    target.

    ``num_sequences`` fixed sequences were tested (:func:`sequence_starts`), each test at ``test_level`` (none, and
    None, for a census); ``num_certified`` of the ``num_candidates`` candidates were certified by one of them.
    ``next_undecided``: the candidate after the certified one could still reach the target (its ``1 - test_level``
    upper bound is at least the target): more labels may certify a looser threshold.

    ``stopped_*``: why nothing looser is certified (None and 0 when the loosest candidate is): the next looser
    candidate after the certified one (when nothing is certified, the loosest start), the labelled predictions at or
    above it, how many are correct, and the ``1 - test_level`` lower bound they give the precision there, under the
    target (for a census, the precision there)."""

    target_precision: float
    delta: float
    threshold: float
    coverage: float
    num_accepted: int
    num_predictions: int
    labelled_precision: float | None
    num_labelled: int
    num_labelled_accepted: int
    num_candidates: int
    num_certified: int
    next_undecided: bool
    region_threshold: float
    region_size: int
    census: bool
    num_sequences: int
    test_level: float | None
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
    *,
    region_size: int,
    start_shares: Sequence[float] = (),
) -> Certification:
    """The loosest candidate threshold certified to give at least ``target_precision`` on the traffic ``scores``
    (one top-1 score per traffic query, ``-inf`` for none), from the labels ``correct`` of the traffic positions
    ``labelled``: a uniform sample, without replacement, of the ``region_size`` predictions scoring at least
    ``region_threshold`` (:func:`draw_order`). A census (every prediction of the region labelled) gives the exact
    loosest threshold reaching the target, 1.0 included. ``start_shares``: where test sequences start besides the
    strictest (:func:`sequence_starts`). Empty, the default: the strictest alone, which certifies more wherever
    precision falls from the top; :data:`START_SHARES` for a top a little under the target. See the module's account
    of the procedure and its guarantee.

    Raises:
        ValueError: a bad target or ``delta``, a region whose size is not ``region_size`` (the scores are not those
            the labels were drawn for), a labelled position that is repeated, outside the traffic or outside the
            region (the guarantee needs a uniform sample of the region), labels that are not 0/1, or a target of 1
            without a census.
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
    in_region = int(((scores >= region_threshold) & (scores > -np.inf)).sum())
    if in_region != region_size:
        raise ValueError(
            f"the region was planned with {region_size} predictions, but {in_region} of these scores are at least its "
            f"threshold {region_threshold!r}: certify with the scores the labels were drawn for"
        )
    outside = np.flatnonzero(~(scores[labelled] >= region_threshold) | (scores[labelled] == -np.inf))
    if outside.size:
        raise ValueError(
            f"traffic position {labelled[outside[0]]} scores {scores[labelled[outside[0]]]}, below the region's "
            f"threshold {region_threshold}: the labels must be a uniform sample of the region"
        )
    census = labelled.size == region_size
    if target_precision == 1.0 and not census:
        raise ValueError(
            f"a precision of 1 is certified only by a census: label all {region_size} predictions of the region "
            f"({labelled.size} are labelled)"
        )

    candidates = certification_candidates(scores, region_threshold)
    labelled_order = np.argsort(-scores[labelled], kind="stable")
    labelled_scores, labelled_correct = scores[labelled][labelled_order], correct[labelled_order]
    # Per candidate: traffic predictions, labelled ones and correct labelled ones at or above it.
    num_accepted = scores.size - np.searchsorted(np.sort(scores), candidates, side="left")
    num_labelled = np.searchsorted(-labelled_scores, -candidates, side="right")
    num_correct = np.concatenate([[0], np.cumsum(labelled_correct)])[num_labelled]
    below = _largest_count_below(target_precision, num_accepted)
    if census:
        # Every prediction above each candidate is labelled: its precision is known, nothing is tested, and the
        # loosest reaching the target is the answer (the strictest explains a census that certifies nothing).
        starts, level = np.zeros(0, dtype=np.int64), None
        certified = np.flatnonzero(num_correct > below)
        best = int(certified[-1]) if certified.size else -1
        stop = best + 1 if best >= 0 else 0
    else:
        starts, level = sequence_starts(num_accepted, labelled.size, target_precision, delta, start_shares)
        failures = np.flatnonzero(hypergeom.sf(num_correct - 1, num_accepted, below, num_labelled) > level)
        # Each sequence certifies from its start down to the candidate before its first failure.
        ends = np.append(failures, candidates.size)[np.searchsorted(failures, starts)]
        certified = np.unique(np.concatenate([np.arange(start, end) for start, end in zip(starts, ends, strict=True)]))
        best = int(certified[-1]) if certified.size else -1
        stop = best + 1 if best >= 0 else int(starts[-1])
    common = {
        "target_precision": target_precision,
        "delta": delta,
        "num_predictions": scores.size,
        "num_labelled": labelled.size,
        "num_candidates": candidates.size,
        "num_certified": int(certified.size),
        "region_threshold": float(region_threshold),
        "region_size": region_size,
        "census": census,
        "num_sequences": int(starts.size),
        "test_level": level,
        "next_undecided": False,
    }
    if stop < candidates.size:
        stopped_bound = (
            float(num_correct[stop] / num_accepted[stop])
            if census
            else precision_lower_bound(int(num_correct[stop]), int(num_labelled[stop]), int(num_accepted[stop]), level)
        )
        common.update(
            stopped_threshold=float(candidates[stop]),
            stopped_num_labelled=int(num_labelled[stop]),
            stopped_num_correct=int(num_correct[stop]),
            stopped_precision_lower_bound=stopped_bound,
            # Could it still reach the target? P(X <= k) at the smallest count of correct ones that reaches it.
            next_undecided=not census
            and bool(hypergeom.cdf(num_correct[stop], num_accepted[stop], below[stop] + 1, num_labelled[stop]) > level),
        )
    if best < 0:
        return Certification(
            threshold=math.inf, coverage=0.0, num_accepted=0, labelled_precision=None, num_labelled_accepted=0, **common
        )
    return Certification(
        threshold=float(candidates[best]),
        coverage=float(num_accepted[best] / scores.size),
        num_accepted=int(num_accepted[best]),
        labelled_precision=float(num_correct[best] / num_labelled[best]),
        num_labelled_accepted=int(num_labelled[best]),
        **common,
    )
