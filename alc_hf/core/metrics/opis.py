"""OPIS: how consistent one threshold is across labels (Zhang et al., ICLR 2024, the TCM paper)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from alc_hf.core.coverage_metric.calibration import check_scores

# A label takes part in OPIS with at least this many positive pairs (and one negative), by default.
OPIS_MIN_POSITIVES = 5


@dataclass(frozen=True)
class OPISResult:
    """``value`` is NaN when no label has enough positive and negative pairs (``num_labels == 0``)."""

    value: float
    num_labels: int
    threshold_low: float
    threshold_high: float


def _utility(positive_scores: np.ndarray, negative_scores: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Harmonic mean of the true-positive rate and the true-negative rate at each threshold (accept ``>= t``)."""
    positive_scores, negative_scores = np.sort(positive_scores), np.sort(negative_scores)
    true_positive_rate = 1.0 - np.searchsorted(positive_scores, thresholds, side="left") / positive_scores.size
    true_negative_rate = np.searchsorted(negative_scores, thresholds, side="left") / negative_scores.size
    total = true_positive_rate + true_negative_rate
    return np.divide(2 * true_positive_rate * true_negative_rate, total, out=np.zeros_like(total), where=total > 0)


def opis(
    scores: np.ndarray,
    correct: np.ndarray,
    labels: np.ndarray,
    *,
    min_positives: int = OPIS_MIN_POSITIVES,
    num_thresholds: int = 101,
    threshold_range: tuple[float, float] | None = None,
) -> OPISResult:
    """OPIS over scored (query, label) pairs: lower is more consistent.

    For each label with at least ``min_positives`` positive pairs and one negative pair, its utility curve
    U_label(t) (harmonic mean of its true-positive and true-negative rates at threshold t) is compared with the
    utility curve of all pairs together: OPIS = mean over labels of mean over thresholds of (U_label - U)².
    Thresholds are ``num_thresholds`` evenly spaced points of ``threshold_range``; by default the range between the
    5th and 95th percentiles of the positive pairs' scores, the thresholds a deployment would consider.

    Args:
        scores: score of each pair (e.g. every retrieved or candidate (query, label) pair of a test split).
        correct: whether each pair is a true match.
        labels: the label (class) each pair belongs to, any integers.
    """
    scores, correct = check_scores(scores, correct)
    labels = np.asarray(labels).reshape(-1)
    if labels.shape != scores.shape:
        raise ValueError(f"labels has {labels.size} entries but there are {scores.size} scored pairs")
    if min_positives < 1 or num_thresholds < 2:
        raise ValueError("min_positives must be >= 1 and num_thresholds >= 2")
    scored = scores > -np.inf
    scores, correct, labels = scores[scored], correct[scored], labels[scored]
    if not correct.any() or correct.all():
        raise ValueError("OPIS needs both positive and negative pairs")
    if threshold_range is None:
        low, high = np.percentile(scores[correct], [5, 95])
    else:
        low, high = threshold_range
        if not (np.isfinite(low) and np.isfinite(high) and low <= high):
            raise ValueError(f"threshold_range must be finite (low, high) with low <= high, got {threshold_range}")
    thresholds = np.linspace(low, high, num_thresholds)
    overall = _utility(scores[correct], scores[~correct], thresholds)

    order = np.argsort(labels, kind="stable")
    sorted_labels = labels[order]
    starts = np.flatnonzero(np.append(True, sorted_labels[1:] != sorted_labels[:-1]))
    deviations = []
    for group in np.split(order, starts[1:]):
        group_correct = correct[group]
        num_positive = int(group_correct.sum())
        if num_positive < min_positives or num_positive == group.size:
            continue
        group_scores = scores[group]
        utility = _utility(group_scores[group_correct], group_scores[~group_correct], thresholds)
        deviations.append(float(np.mean((utility - overall) ** 2)))
    value = float(np.mean(deviations)) if deviations else math.nan
    return OPISResult(value, len(deviations), float(low), float(high))
