"""Coverage evaluation: the trainer evaluator, the report (JSON, table, plot) and the building blocks."""

from pathlib import Path

from alc_hf.evaluation.coverage import SplitPredictions, coverage_report, embed_texts, predict_split
from alc_hf.evaluation.evaluator import CoverageEvaluator
from alc_hf.evaluation.plot import plot_report
from alc_hf.evaluation.report import CoverageReport, ThresholdResult, threshold_results

# The `evaluate` module: ``evaluate.load(COVERAGE_METRIC_PATH)`` works offline.
COVERAGE_METRIC_PATH = str(Path(__file__).parent / "coverage_metric")

__all__ = [
    "COVERAGE_METRIC_PATH",
    "CoverageEvaluator",
    "CoverageReport",
    "SplitPredictions",
    "ThresholdResult",
    "coverage_report",
    "embed_texts",
    "plot_report",
    "predict_split",
    "threshold_results",
]
