"""Coverage at a calibrated threshold: the share of predictions that can be accepted automatically.

A prediction is accepted when its score is at least the threshold; equal scores are therefore accepted or rejected
together. A score of ``-inf`` means "no prediction" (e.g. a query whose candidates were all filtered out): it is
never accepted but still counts in the denominator of coverage.

NumPy and SciPy only, and nothing of alc_hf: this file sits in the ``evaluate`` module's folder so that the folder
can be copied to the Hugging Face Hub as it is; :mod:`alc_hf.core.metrics` serves the same functions to the package.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy.stats import beta, ks_2samp

logger = logging.getLogger(__name__)

CALIBRATION_METHODS = ("empirical", "clopper_pearson")


def check_scores(scores: np.ndarray, correct: np.ndarray, name: str = "scores") -> tuple[np.ndarray, np.ndarray]:
    """Validate a (scores, correct) pair and return them as flat float64 / bool arrays."""
    scores = np.asarray(scores, dtype=np.float64)
    correct = np.asarray(correct)
    if scores.shape != correct.shape:
        raise ValueError(f"{name} has shape {scores.shape} but its correctness flags have {correct.shape}")
    scores, correct = scores.reshape(-1), correct.reshape(-1)
    if scores.size == 0:
        raise ValueError(f"{name} is empty: there is nothing to evaluate")
    if correct.dtype != bool:
        if not np.isin(correct, (0, 1)).all():
            raise ValueError(f"the correctness flags of {name} must be booleans or 0/1")
        correct = correct.astype(bool)
    check_no_nan_or_inf(scores, name)
    wrong_empty = np.flatnonzero((scores == -np.inf) & correct)
    if wrong_empty.size:
        raise ValueError(f"{name}[{wrong_empty[0]}] is -inf (no prediction) but is marked correct")
    return scores, correct


def check_no_nan_or_inf(scores: np.ndarray, name: str) -> None:
    """A ValueError naming the first NaN or ``+inf`` score of the flat array ``scores`` (``-inf`` is allowed)."""
    bad = np.flatnonzero(np.isnan(scores) | (scores == np.inf))
    if bad.size:
        raise ValueError(f"{name}[{bad[0]}] is {scores[bad[0]]}: scores must be finite (-inf marks no prediction)")


def finite_or_none(value: float | None) -> float | None:
    """``value``, or None where it is None, NaN or infinite (JSON has no such numbers)."""
    return value if value is not None and math.isfinite(value) else None


def check_target_precision(target_precision: float) -> float:
    if not 0.0 < target_precision <= 1.0:
        raise ValueError(f"target precision must be in (0, 1], got {target_precision}")
    return float(target_precision)


@dataclass(frozen=True)
class PrecisionCoverageCurve:
    """Every operating point: at ``thresholds[i]`` (descending), ``num_accepted[i]`` predictions are accepted,
    ``coverage[i]`` of all, with ``precision[i]`` of them correct."""

    thresholds: np.ndarray
    coverage: np.ndarray
    precision: np.ndarray
    num_accepted: np.ndarray
    num_correct: np.ndarray
    num_predictions: int

    def area(self) -> float:
        """AUPC: mean precision along the curve, each accepted prediction weighing ``1 / num_predictions``
        (predictions that are never accepted, ``-inf``, weigh 0)."""
        group_sizes = np.diff(self.num_accepted, prepend=0)
        return float((group_sizes * self.precision).sum() / self.num_predictions)


def precision_coverage_curve(scores: np.ndarray, correct: np.ndarray) -> PrecisionCoverageCurve:
    """The precision–coverage curve of ``scores`` (any shape) with correctness flags ``correct``."""
    scores, correct = check_scores(scores, correct)
    order = np.argsort(-scores, kind="stable")
    sorted_scores, sorted_correct = scores[order], correct[order]
    accepted = sorted_scores > -np.inf
    sorted_scores, sorted_correct = sorted_scores[accepted], sorted_correct[accepted]
    # The last index of every run of equal scores: thresholds sit between distinct values only.
    group_ends = np.flatnonzero(np.append(sorted_scores[1:] != sorted_scores[:-1], True)) if sorted_scores.size else []
    num_accepted = np.asarray(group_ends, dtype=np.int64) + 1
    num_correct = np.cumsum(sorted_correct, dtype=np.int64)[group_ends] if sorted_scores.size else np.zeros(0, np.int64)
    return PrecisionCoverageCurve(
        thresholds=sorted_scores[group_ends] if sorted_scores.size else np.zeros(0),
        coverage=num_accepted / scores.size,
        precision=num_correct / np.maximum(num_accepted, 1),
        num_accepted=num_accepted,
        num_correct=np.asarray(num_correct, dtype=np.int64),
        num_predictions=scores.size,
    )


@dataclass(frozen=True)
class CoverageAtThreshold:
    """What a threshold does to a split. ``precision`` is NaN when nothing is accepted."""

    threshold: float
    coverage: float
    precision: float
    num_accepted: int
    num_predictions: int

    def to_dict(self) -> dict[str, float | int | None]:
        """The figures as JSON takes them: NaN and infinite values as None."""
        return {k: finite_or_none(v) if isinstance(v, float) else v for k, v in asdict(self).items()}


@dataclass(frozen=True)
class ThresholdCalibration(CoverageAtThreshold):
    """A threshold chosen on a calibration split for ``target_precision``; the inherited figures are the
    calibration split's own. ``threshold`` is ``inf`` (accept nothing) when the target cannot be reached."""

    target_precision: float = 1.0
    method: str = "empirical"
    delta: float | None = None

    @property
    def reachable(self) -> bool:
        return math.isfinite(self.threshold)


def clopper_pearson_interval(num_correct: int, num_accepted: int, confidence: float = 0.95) -> tuple[float, float]:
    """The two-sided Clopper–Pearson interval of a precision measured as ``num_correct`` of ``num_accepted``: where
    the precision on more data like it lies, with probability at least ``confidence``."""
    if not 0 <= num_correct <= num_accepted or num_accepted < 1:
        raise ValueError(
            f"need 0 <= num_correct <= num_accepted and num_accepted >= 1, got {num_correct}/{num_accepted}"
        )
    tail = (1.0 - confidence) / 2
    low = beta.ppf(tail, num_correct, num_accepted - num_correct + 1) if num_correct > 0 else 0.0
    high = beta.ppf(1.0 - tail, num_correct + 1, num_accepted - num_correct) if num_correct < num_accepted else 1.0
    return float(low), float(high)


def clopper_pearson_lower(num_correct: np.ndarray, num_accepted: np.ndarray, delta: float) -> np.ndarray:
    """One-sided ``1 - delta`` Clopper–Pearson lower confidence bound of a binomial proportion."""
    num_correct = np.asarray(num_correct, dtype=np.float64)
    num_accepted = np.asarray(num_accepted, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        lower = beta.ppf(delta, num_correct, num_accepted - num_correct + 1)
    return np.where(num_correct > 0, lower, 0.0)


def calibrate_threshold(
    scores: np.ndarray,
    correct: np.ndarray,
    target_precision: float,
    method: str = "empirical",
    delta: float = 0.05,
    predictions: str = "calibration predictions",
) -> ThresholdCalibration:
    """The smallest threshold whose accepted predictions reach ``target_precision`` on this (calibration) split.

    ``method="empirical"`` requires the accepted predictions' precision to be at least the target;
    ``"clopper_pearson"`` requires its one-sided Clopper–Pearson lower bound at confidence ``1 - delta`` to be,
    which guarantees the target with probability ``1 - delta`` for exchangeable test data (at a fixed threshold).
    When no threshold reaches the target, the result accepts nothing (``threshold = inf``, coverage 0) and a
    warning says so.

    Args:
        scores: top-1 score per query (or any flat set of prediction scores), ``-inf`` for no prediction.
        correct: whether each prediction is correct (bool or 0/1).
        target_precision: the precision required, in (0, 1].
        method: ``"empirical"`` or ``"clopper_pearson"``.
        delta: the Clopper–Pearson risk level, in (0, 1).
        predictions: what the scores are, for the warning (e.g. ``"test predictions of accept score cosine"``).
    """
    target_precision = check_target_precision(target_precision)
    if method not in CALIBRATION_METHODS:
        raise ValueError(f"method must be one of {CALIBRATION_METHODS}, got {method!r}")
    if method == "clopper_pearson" and not 0.0 < delta < 1.0:
        raise ValueError(f"delta must be in (0, 1), got {delta}")
    curve = precision_coverage_curve(scores, correct)
    if method == "empirical":
        # Integer comparison with a tolerance so that e.g. 9 of 10 reaches 0.9 despite rounding.
        reaches = curve.num_correct >= target_precision * curve.num_accepted - 1e-9
    else:
        reaches = clopper_pearson_lower(curve.num_correct, curve.num_accepted, delta) >= target_precision
    options = {
        "target_precision": target_precision,
        "method": method,
        "delta": delta if method == "clopper_pearson" else None,
    }
    if not reaches.any():
        logger.warning(
            "no threshold reaches precision %.3f (%s) on the %d %s: accepting nothing",
            target_precision,
            method,
            curve.num_predictions,
            predictions,
        )
        return ThresholdCalibration(math.inf, 0.0, math.nan, 0, curve.num_predictions, **options)
    best = int(np.flatnonzero(reaches)[-1])
    return ThresholdCalibration(
        threshold=float(curve.thresholds[best]),
        coverage=float(curve.coverage[best]),
        precision=float(curve.precision[best]),
        num_accepted=int(curve.num_accepted[best]),
        num_predictions=curve.num_predictions,
        **options,
    )


def coverage_at_threshold(scores: np.ndarray, correct: np.ndarray, threshold: float) -> CoverageAtThreshold:
    """Accept every prediction scoring at least ``threshold``: the share accepted, their precision (NaN when none
    is accepted) and how many."""
    scores, correct = check_scores(scores, correct)
    if math.isnan(threshold):
        raise ValueError("threshold is NaN")
    # -inf marks no prediction: never accepted, even at a threshold of -inf.
    accepted = (scores >= threshold) & (scores > -np.inf)
    num_accepted = int(accepted.sum())
    return CoverageAtThreshold(
        threshold=float(threshold),
        coverage=num_accepted / scores.size,
        precision=float(correct[accepted].mean()) if num_accepted else math.nan,
        num_accepted=num_accepted,
        num_predictions=scores.size,
    )


def coverage_at_k(
    calibration_scores: np.ndarray,
    calibration_correct: np.ndarray,
    test_scores: np.ndarray,
    test_correct: np.ndarray,
    target_precision: float,
    method: str = "empirical",
    delta: float = 0.05,
) -> tuple[ThresholdCalibration, CoverageAtThreshold]:
    """C@k: the share of all top-k recommendations (``[n, k]`` scores, k per query, ``-inf`` where a query has
    fewer) accepted at the threshold calibrated for the precision of accepted top-k recommendations.

    Returns the calibration and what its threshold does on the test split. With ``k = 1`` this is C@1.
    """
    for name, array in (("calibration_scores", calibration_scores), ("test_scores", test_scores)):
        if np.ndim(array) not in (1, 2):
            raise ValueError(f"{name} must be [n] or [n, k], got shape {np.shape(array)}")
    calibration = calibrate_threshold(calibration_scores, calibration_correct, target_precision, method, delta)
    return calibration, coverage_at_threshold(test_scores, test_correct, calibration.threshold)


def target_name(target_precision: float) -> str:
    """``0.9 -> "p90"``, ``0.925 -> "p92.5"``: the suffix of coverage metric names."""
    return f"p{100 * target_precision:g}"


@dataclass(frozen=True)
class ThresholdResult:
    """One target precision: the threshold calibrated on the calibration split, what it does on test, and the
    oracle (the threshold chosen on test itself, the largest coverage whose test precision reaches the target: not
    an honest figure, and not a bound on ``test.coverage`` when the calibrated threshold misses its target)."""

    calibrated: ThresholdCalibration
    test: CoverageAtThreshold
    oracle: ThresholdCalibration


def threshold_results(
    calibration_scores: np.ndarray,
    calibration_correct: np.ndarray,
    test_scores: np.ndarray,
    test_correct: np.ndarray,
    target_precisions: Sequence[float],
    method: str = "empirical",
    delta: float = 0.05,
    scored_by: str | None = None,
) -> list[ThresholdResult]:
    """Calibrate a threshold per target on the calibration predictions and apply it to the test predictions;
    ``scored_by`` (e.g. ``"accept score cosine, C@1"``) names the scores in the warnings."""
    of = f" ({scored_by})" if scored_by else ""
    results = []
    for target in target_precisions:
        calibrated = calibrate_threshold(
            calibration_scores, calibration_correct, target, method, delta, f"calibration predictions{of}"
        )
        oracle = calibrate_threshold(
            test_scores, test_correct, target, method, delta, f"test predictions{of}, for the oracle threshold"
        )
        results.append(
            ThresholdResult(
                calibrated=calibrated,
                test=coverage_at_threshold(test_scores, test_correct, calibrated.threshold),
                oracle=oracle,
            )
        )
    return results


def threshold_metrics(results: Sequence[ThresholdResult], prefix: str) -> dict[str, float]:
    """Flat metrics: ``{prefix}_p90`` (test coverage at the calibrated threshold), ``_precision`` (the precision it
    achieves on test), ``_threshold``, ``_oracle`` and ``_oracle_threshold``."""
    metrics = {}
    for result in results:
        name = f"{prefix}_{target_name(result.calibrated.target_precision)}"
        metrics[name] = result.test.coverage
        metrics[f"{name}_precision"] = result.test.precision
        metrics[f"{name}_threshold"] = result.calibrated.threshold
        metrics[f"{name}_oracle"] = result.oracle.coverage
        metrics[f"{name}_oracle_threshold"] = result.oracle.threshold
    return metrics


# The score-shift rule (see :func:`score_shift`): both must hold.
SHIFT_ALPHA = 0.01
SHIFT_TOLERANCE = 0.05
# A KS statistic this large is a shift in the population itself, whatever the shares above the thresholds do.
SHIFT_STATISTIC = 0.1


class ScoreShiftWarning(UserWarning):
    """The test split's top-1 scores are distributed unlike the calibration split's: a threshold calibrated on one
    may not give its precision on the other. A category of its own, so it can be filtered or turned into an error."""


@dataclass(frozen=True)
class ScoreShift:
    """How far the test split's top-1 scores moved from the calibration split's, and whether that threatens the
    calibrated thresholds. ``calibration_share_above[i]`` / ``test_share_above[i]`` are the shares of all queries
    scoring at least ``thresholds[i]`` (a ``-inf`` score, no prediction, is never above)."""

    statistic: float
    p_value: float
    thresholds: tuple[float, ...]
    calibration_share_above: tuple[float, ...]
    test_share_above: tuple[float, ...]
    alpha: float
    tolerance: float
    statistic_tolerance: float = SHIFT_STATISTIC

    @property
    def largest_share_gap(self) -> float:
        """The largest absolute difference of the shares above a threshold (0 without thresholds)."""
        gaps = [abs(t - c) for c, t in zip(self.calibration_share_above, self.test_share_above, strict=True)]
        return max(gaps, default=0.0)

    @property
    def warning(self) -> bool:
        """True when the shift is significant (p-value below ``alpha``) and large enough to matter (the share above
        some calibrated threshold moved by more than ``tolerance``, or the KS statistic reaches
        ``statistic_tolerance``) and there is a threshold to watch."""
        large = self.largest_share_gap > self.tolerance or self.statistic >= self.statistic_tolerance
        return bool(self.thresholds) and self.p_value < self.alpha and large

    def describe(self) -> str:
        """One sentence: the test, the shares, and what it means for the thresholds."""
        shares = ", ".join(
            f"{_threshold_text(t)}: {c:.3f} -> {s:.3f}"
            for t, c, s in zip(self.thresholds, self.calibration_share_above, self.test_share_above, strict=True)
        )
        text = f"KS statistic {self.statistic:.3f} (p = {self.p_value:.2g}); share of queries above each threshold, "
        text += f"calibration -> test: {shares or 'no threshold'}"
        if self.warning:
            text += (
                f". The top-1 scores shifted (p < {self.alpha:g}, and a share moved by more than "
                f"{100 * self.tolerance:g} points or the KS statistic reached {self.statistic_tolerance:g}): "
                "the calibrated thresholds may not give their precision on test"
            )
        return text

    def to_dict(self) -> dict[str, float | bool | list[float | None]]:
        """The figures as JSON takes them (an unreachable threshold, ``inf``, as None)."""
        return {
            "ks_statistic": self.statistic,
            "p_value": self.p_value,
            "alpha": self.alpha,
            "tolerance": self.tolerance,
            "statistic_tolerance": self.statistic_tolerance,
            "thresholds": [finite_or_none(t) for t in self.thresholds],
            "calibration_share_above": list(self.calibration_share_above),
            "test_share_above": list(self.test_share_above),
            "score_shift_warning": self.warning,
        }


def _threshold_text(threshold: float) -> str:
    return f"{threshold:.3f}" if math.isfinite(threshold) else "unreached"


def score_shift(
    calibration_scores: np.ndarray,
    test_scores: np.ndarray,
    thresholds: Sequence[float],
    alpha: float = SHIFT_ALPHA,
    tolerance: float = SHIFT_TOLERANCE,
    statistic_tolerance: float = SHIFT_STATISTIC,
) -> ScoreShift:
    """Compare the calibration and test top-1 score distributions, without labels, to tell whether the thresholds
    calibrated on one can be trusted on the other.

    A calibrated threshold keeps its precision on test only if the test queries look like the calibration queries
    (exchangeability). Labels are not needed to see one symptom of a break: the top-1 scores move. The two-sample
    Kolmogorov–Smirnov test (``scipy.stats.ks_2samp``, two-sided) compares the two samples of top-1 scores; a
    ``-inf`` (no prediction) counts as the lowest score, so queries left without a prediction shift the
    distribution too.

    The rule, warning when there is a threshold to watch and both hold:

    - ``p_value < alpha`` (0.01): the difference is not chance. Alone this is not enough: with thousands of queries
      KS flags shifts far too small to matter;
    - the share of queries scoring at least some calibrated threshold differs between the splits by more than
      ``tolerance`` (5 points): the shift moves what the threshold does, i.e. the coverage it would give on test
      is not the coverage it was chosen with. Alone this is not enough either: on a few hundred queries a share
      moves by 5 points by chance. **Or** the KS statistic reaches ``statistic_tolerance`` (0.1): the two CDFs are
      10 points apart somewhere, so the test queries are another population. On WDC (half the test products
      unseen) the shares above the 90% threshold moved by only 1–5 points while the precision that threshold
      reached fell from 0.90 to 0.68; the statistic was 0.19 in every run, against 0.03–0.05 on Walmart-Amazon,
      where the thresholds held.

    A flagged shift does not prove the precision is missed (scores can move while the ranking stays right); it
    says the calibration split does not represent test, so recalibrate on data like test or check a labelled
    sample. Nothing is flagged without a threshold to watch.

    Args:
        calibration_scores: top-1 score of every calibration query (``-inf`` for no prediction).
        test_scores: top-1 score of every test query.
        thresholds: the calibrated thresholds (``inf`` for an unreachable target: nothing is above it).
        alpha: the KS significance level, in (0, 1).
        tolerance: the share difference that matters, in [0, 1).
        statistic_tolerance: the KS statistic that matters on its own, in (0, 1].
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if not 0.0 <= tolerance < 1.0:
        raise ValueError(f"tolerance must be in [0, 1), got {tolerance}")
    if not 0.0 < statistic_tolerance <= 1.0:
        raise ValueError(f"statistic_tolerance must be in (0, 1], got {statistic_tolerance}")
    shares = {}
    for name, scores in (("calibration_scores", calibration_scores), ("test_scores", test_scores)):
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        if scores.size == 0:
            raise ValueError(f"{name} is empty: there is nothing to compare")
        check_no_nan_or_inf(scores, name)
        shares[name] = (scores, tuple(float(np.mean((scores >= t) & (scores > -np.inf))) for t in thresholds))
    (calibration, calibration_shares), (test, test_shares) = shares.values()
    result = ks_2samp(calibration, test)
    return ScoreShift(
        statistic=float(result.statistic),
        p_value=float(result.pvalue),
        thresholds=tuple(float(t) for t in thresholds),
        calibration_share_above=calibration_shares,
        test_share_above=test_shares,
        alpha=alpha,
        tolerance=tolerance,
        statistic_tolerance=statistic_tolerance,
    )
