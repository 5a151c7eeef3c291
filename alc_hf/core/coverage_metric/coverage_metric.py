"""`evaluate` module: coverage of top-1 predictions at a threshold calibrated for a target precision.

A thin wrapper over ``calibration.py`` beside it (the functions :mod:`alc_hf.core.metrics` serves, so the same numbers
as ``CoverageEvaluator``). Self-contained: this folder imports nothing of alc_hf and can be copied to the Hub as it
is (its metric card is ``README.md`` beside it, its Space ``app.py``). Load it offline with
``evaluate.load(alc_hf.evaluation.COVERAGE_METRIC_PATH)``.
"""

import datasets
import evaluate

from .calibration import threshold_metrics, threshold_results

_DESCRIPTION = """
Coverage is the share of queries whose top-1 prediction can be accepted automatically at a required precision.
For each target precision, the threshold is the smallest score whose accepted calibration predictions (score >=
threshold) reach that precision; it is then applied to the evaluated predictions. Equal scores are accepted or
rejected together; a score of -inf means "no prediction" and is never accepted.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `float`): the top-1 score of each evaluated query (-inf for no prediction).
    references (`list` of `int`): 1 when that top-1 prediction is correct, else 0 (0 for a query with no match).
    calibration_predictions (`list` of `float`, optional): top-1 scores of the calibration split.
    calibration_references (`list` of `int`, optional): their correctness. Without a calibration split, the
        threshold is chosen on the evaluated predictions themselves and only the oracle figures are returned.
    target_precisions (`list` of `float`, defaults to `[0.9, 0.95]`): precisions in (0, 1].
    method (`str`, defaults to `"empirical"`): or `"clopper_pearson"` (a lower confidence bound must reach the
        target).
    delta (`float`, defaults to 0.05): the Clopper-Pearson risk level.
Returns:
    For each target, e.g. 0.9: `c@1_p90` (coverage at the calibrated threshold), `c@1_p90_precision` (the precision
    it achieves; NaN when nothing is accepted), `c@1_p90_threshold` (inf when the target is unreachable on the
    calibration split), `c@1_p90_oracle` and `c@1_p90_oracle_threshold` (threshold chosen on the evaluated
    predictions: the most coverage that reaches the target there; not deployable).
Examples:
    >>> coverage = evaluate.load(alc_hf.evaluation.COVERAGE_METRIC_PATH)
    >>> coverage.compute(predictions=[0.9, 0.8, 0.3], references=[1, 1, 0],
    ...                  calibration_predictions=[0.95, 0.7, 0.5], calibration_references=[1, 1, 0],
    ...                  target_precisions=[0.9])["c@1_p90"]
    0.6666666666666666
"""

_CITATION = """
@misc{alc_hf,
  title = {alc_hf: coverage-oriented training and evaluation of product embedding models},
  year = {2026}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Coverage(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("float64"), "references": datasets.Value("int32")}
            ),
        )

    def _compute(
        self,
        predictions,
        references,
        calibration_predictions=None,
        calibration_references=None,
        target_precisions=(0.9, 0.95),
        method="empirical",
        delta=0.05,
    ):
        if (calibration_predictions is None) != (calibration_references is None):
            raise ValueError("give both calibration_predictions and calibration_references, or neither")
        oracle_only = calibration_predictions is None
        if oracle_only:
            calibration_predictions, calibration_references = predictions, references
        results = threshold_results(
            calibration_predictions, calibration_references, predictions, references, target_precisions, method, delta
        )
        metrics = threshold_metrics(results, "c@1")
        if oracle_only:
            metrics = {name: value for name, value in metrics.items() if "_oracle" in name}
        return metrics
