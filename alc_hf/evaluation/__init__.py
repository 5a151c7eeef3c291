"""Coverage evaluation: the trainer evaluator, accept scores, the report (JSON, table, plot), and the person's side
of a certified threshold (the plan, the sheet, the card section). Parts are imported on first use."""

from typing import TYPE_CHECKING

from alc_hf._lazy import lazy_exports
from alc_hf.core import COVERAGE_METRIC_PATH

__getattr__, __all__ = lazy_exports(
    __name__,
    {
        "alc_hf.evaluation.predictions": ("SplitPredictions", "coverage_report", "predict_split"),
        "alc_hf.evaluation.evaluator": ("CoverageEvaluator",),
        "alc_hf.evaluation.plot": ("plot_report",),
        "alc_hf.evaluation.report": ("CoverageReport", "accept_score_table"),
        "alc_hf.evaluation.outputs": ("write_report", "write_reports"),
    },
)
__all__ += ["COVERAGE_METRIC_PATH"]

if TYPE_CHECKING:
    from alc_hf.evaluation.evaluator import CoverageEvaluator
    from alc_hf.evaluation.outputs import write_report, write_reports
    from alc_hf.evaluation.plot import plot_report
    from alc_hf.evaluation.predictions import SplitPredictions, coverage_report, predict_split
    from alc_hf.evaluation.report import CoverageReport, accept_score_table
