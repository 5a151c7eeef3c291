"""Coverage and ranking metrics in plain NumPy: P@k, calibrated thresholds, coverage, C@k, the precision–coverage
curve and OPIS. No torch and no ``evaluate`` import needed."""

from alc_hf.metrics.coverage import (
    CoverageAtThreshold,
    PrecisionCoverageCurve,
    ThresholdCalibration,
    calibrate_threshold,
    coverage_at_k,
    coverage_at_threshold,
    precision_coverage_curve,
)
from alc_hf.metrics.opis import OPISResult, opis
from alc_hf.metrics.ranking import drop_filtered_pairs, precision_at_k, precision_from_relevance, relevance_matrix

__all__ = [
    "CoverageAtThreshold",
    "OPISResult",
    "PrecisionCoverageCurve",
    "ThresholdCalibration",
    "calibrate_threshold",
    "coverage_at_k",
    "coverage_at_threshold",
    "drop_filtered_pairs",
    "opis",
    "precision_at_k",
    "precision_coverage_curve",
    "precision_from_relevance",
    "relevance_matrix",
]
