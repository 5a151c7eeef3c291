"""Coverage and ranking metrics in plain NumPy: P@k, calibrated thresholds, coverage, C@k, the precision–coverage
curve, OPIS, the score-shift check of a calibrated threshold, and a threshold certified on labelled traffic. No
torch, sentence-transformers or datasets is imported (a test checks it in a fresh process).

The calibration and coverage functions live in the ``evaluate`` module's folder
(``alc_hf/core/coverage_metric/calibration.py``), so that folder can be copied to the Hub as it is; they are
served from here."""

from alc_hf.core.coverage_metric.calibration import (
    CALIBRATION_METHODS,
    SHIFT_ALPHA,
    SHIFT_STATISTIC,
    SHIFT_TOLERANCE,
    CoverageAtThreshold,
    PrecisionCoverageCurve,
    ScoreShift,
    ScoreShiftWarning,
    ThresholdCalibration,
    ThresholdResult,
    calibrate_threshold,
    check_scores,
    check_target_precision,
    clopper_pearson_interval,
    coverage_at_k,
    coverage_at_threshold,
    finite_or_none,
    precision_coverage_curve,
    score_shift,
    target_name,
    threshold_metrics,
    threshold_results,
)
from alc_hf.core.metrics.certify import (
    Certification,
    certification_candidates,
    certify_threshold,
    draw_order,
    labelling_region,
    labels_to_certify,
    sequence_starts,
)
from alc_hf.core.metrics.opis import OPIS_MIN_POSITIVES, OPISResult, opis
from alc_hf.core.metrics.pairwise import PairwiseF1, best_f1_threshold, pairwise_f1, pairwise_figures
from alc_hf.core.metrics.ranking import drop_filtered_pairs, precision_at_k, precision_from_relevance, relevance_matrix

__all__ = [
    "CALIBRATION_METHODS",
    "Certification",
    "best_f1_threshold",
    "certification_candidates",
    "certify_threshold",
    "draw_order",
    "labelling_region",
    "labels_to_certify",
    "sequence_starts",
    "CoverageAtThreshold",
    "OPIS_MIN_POSITIVES",
    "PairwiseF1",
    "OPISResult",
    "PrecisionCoverageCurve",
    "SHIFT_ALPHA",
    "SHIFT_STATISTIC",
    "SHIFT_TOLERANCE",
    "ScoreShift",
    "ScoreShiftWarning",
    "ThresholdCalibration",
    "ThresholdResult",
    "calibrate_threshold",
    "check_scores",
    "clopper_pearson_interval",
    "check_target_precision",
    "coverage_at_k",
    "coverage_at_threshold",
    "drop_filtered_pairs",
    "finite_or_none",
    "opis",
    "pairwise_f1",
    "pairwise_figures",
    "precision_at_k",
    "precision_coverage_curve",
    "precision_from_relevance",
    "relevance_matrix",
    "score_shift",
    "target_name",
    "threshold_metrics",
    "threshold_results",
]
