"""Coverage evaluation: the trainer evaluator, accept scores, the report (JSON, table, plot) and the building
blocks. Parts are imported on first use."""

from pathlib import Path

from alc_hf._lazy import lazy_exports

# The `evaluate` module: ``evaluate.load(COVERAGE_METRIC_PATH)`` works offline.
COVERAGE_METRIC_PATH = str(Path(__file__).parent / "coverage_metric")

__getattr__, __all__ = lazy_exports(
    __name__,
    {
        "alc_hf.evaluation.predictions": ("SplitPredictions", "coverage_report", "predict_split"),
        "alc_hf.models": ("embed_texts",),
        "alc_hf.evaluation.evaluator": ("CoverageEvaluator",),
        "alc_hf.evaluation.plot": ("plot_report",),
        "alc_hf.evaluation.report": ("CoverageReport", "accept_score_table"),
        "alc_hf.evaluation.outputs": ("write_report", "write_reports"),
    },
)
__all__ += ["COVERAGE_METRIC_PATH"]
