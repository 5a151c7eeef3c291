"""Pairwise matching figures: precision, recall and F1 over labelled (query, label) pairs, as published matchers
(DeepMatcher, Ditto, R-SupCon) report them on the DeepMatcher and WDC test pairs.

A pair is predicted a match when its score is at least a threshold chosen on the calibration pairs (the F1-best
there, as those papers choose it on valid), then applied to the test pairs. NumPy only.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from alc_hf.core.coverage_metric.calibration import check_scores, finite_or_none

__all__ = ["PairwiseF1", "best_f1_threshold", "pairwise_f1", "pairwise_figures"]


def _curve(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """At each distinct score (descending) as threshold: the thresholds, true positives and predicted positives."""
    order = np.argsort(-scores, kind="stable")
    sorted_scores, sorted_labels = scores[order], labels[order]
    ends = np.flatnonzero(np.append(sorted_scores[1:] != sorted_scores[:-1], True))  # ties are cut together
    return sorted_scores[ends], np.cumsum(sorted_labels)[ends], ends + 1


def best_f1_threshold(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """``(threshold, F1)``: the threshold whose "match" predictions (score at least it) have the best F1 on these
    pairs, the strictest of equally good ones; ``(inf, 0)`` when no pair is a match."""
    scores, labels = check_scores(scores, labels, "pair scores")
    num_matches = int(labels.sum())
    if num_matches == 0:
        return math.inf, 0.0
    thresholds, true_positives, predicted = _curve(scores, labels)
    f1 = 2 * true_positives / (predicted + num_matches)
    best = int(np.argmax(f1))  # the first maximum: the strictest threshold
    return float(thresholds[best]), float(f1[best])


def pairwise_figures(scores: np.ndarray, labels: np.ndarray, threshold: float) -> tuple[float, float, float]:
    """``(precision, recall, F1)`` of predicting "match" for the pairs scoring at least ``threshold``; precision is
    NaN when nothing is predicted a match, recall NaN when no pair is one."""
    scores, labels = check_scores(scores, labels, "pair scores")
    predicted = scores >= threshold
    true_positives = int((predicted & labels).sum())
    precision = true_positives / int(predicted.sum()) if predicted.any() else math.nan
    recall = true_positives / int(labels.sum()) if labels.any() else math.nan
    denominator = int(predicted.sum()) + int(labels.sum())
    return precision, recall, 2 * true_positives / denominator if denominator else math.nan


@dataclass(frozen=True)
class PairwiseF1:
    """Pairwise matching on the test pairs at the threshold chosen on the calibration pairs (``threshold``, the
    F1-best there, ``calibration_f1``). ``oracle_f1`` is the best F1 a threshold chosen on test itself reaches: not
    an honest figure."""

    threshold: float
    precision: float
    recall: float
    f1: float
    num_pairs: int
    num_matches: int
    calibration_f1: float
    oracle_f1: float

    def to_dict(self) -> dict[str, float | int | None]:
        return {key: finite_or_none(v) if isinstance(v, float) else v for key, v in asdict(self).items()}


def pairwise_f1(
    calibration_scores: np.ndarray,
    calibration_labels: np.ndarray,
    test_scores: np.ndarray,
    test_labels: np.ndarray,
) -> PairwiseF1:
    """Choose the F1-best threshold on the calibration pairs and measure precision, recall and F1 with it on the
    test pairs (each a flat array of pair scores and 0/1 match labels)."""
    threshold, calibration_f1 = best_f1_threshold(calibration_scores, calibration_labels)
    test_scores, test_labels = check_scores(test_scores, test_labels, "test pair scores")
    precision, recall, f1 = pairwise_figures(test_scores, test_labels, threshold)
    return PairwiseF1(
        threshold=threshold,
        precision=precision,
        recall=recall,
        f1=f1,
        num_pairs=int(test_scores.size),
        num_matches=int(test_labels.sum()),
        calibration_f1=calibration_f1,
        oracle_f1=best_f1_threshold(test_scores, test_labels)[1],
    )
