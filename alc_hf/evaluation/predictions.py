"""From embeddings to a coverage report: retrieve each split's top-k, mark what is correct, calibrate on one split
and apply to the other."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from alc_hf.core.metrics import (
    OPISResult,
    ScoreShiftWarning,
    opis,
    precision_coverage_curve,
    precision_from_relevance,
    relevance_matrix,
    score_shift,
    threshold_results,
)
from alc_hf.core.retrieval import LabelIndex
from alc_hf.data.views import EvaluationView
from alc_hf.evaluation.report import CoverageReport, SplitSummary


@dataclass(frozen=True)
class SplitPredictions:
    """A split's top-k predictions: ``ids`` / ``scores`` ``[n, k]`` (-1 / -inf where a query has fewer) and
    whether each is ``correct``."""

    name: str
    ids: np.ndarray
    scores: np.ndarray
    correct: np.ndarray
    num_with_match: int

    @property
    def num_queries(self) -> int:
        return self.ids.shape[0]

    def precision_at(self, k: int) -> float:
        return precision_from_relevance(self.correct, k)

    def summary(self, precision_at_k: Sequence[int]) -> SplitSummary:
        precisions = {k: self.precision_at(k) for k in precision_at_k}
        return SplitSummary(self.name, self.num_queries, self.num_with_match, precisions)


def first_places(predictions: SplitPredictions, k: int) -> SplitPredictions:
    """The predictions' first ``k`` places."""
    return replace(
        predictions, ids=predictions.ids[:, :k], scores=predictions.scores[:, :k], correct=predictions.correct[:, :k]
    )


def labelled_pairs(predictions: SplitPredictions) -> tuple[np.ndarray, np.ndarray]:
    """``(scores, labels)`` of every predicted (query, label) pair: in a labelled view that retrieves every
    candidate, each labelled pair of the split once."""
    present = predictions.ids >= 0
    return predictions.scores[present], predictions.correct[present]


def check_view(view: EvaluationView, name: str) -> None:
    """Errors for a view that cannot be evaluated: no query, or relevant labels that are not in the corpus."""
    if len(view.queries) == 0:
        raise ValueError(f"the {name} split has no query")
    if len(view.relevant) != len(view.queries):
        raise ValueError(
            f"the {name} split has {len(view.queries)} queries but relevant labels for {len(view.relevant)}"
        )
    bad = view.relevant.first_outside(len(view.corpus))
    if bad is not None:
        raise ValueError(
            f"the {name} split's query {bad[0]} has a relevant label index outside the corpus [0, {len(view.corpus)})"
        )


def predict_split(
    view: EvaluationView, query_embeddings: np.ndarray, index: LabelIndex, k: int, name: str
) -> SplitPredictions:
    """Top-k of every query: over the whole corpus, or only over the query's candidates when the view has them;
    filter pairs removed in both cases."""
    check_view(view, name)
    if view.candidates is None:
        top = index.search(query_embeddings, k, filter_pairs=view.filter_pairs)
    else:
        top = index.search_candidates(query_embeddings, view.candidates, k, filter_pairs=view.filter_pairs)
    return SplitPredictions(
        name=name,
        ids=top.ids,
        scores=top.scores,
        correct=relevance_matrix(top.ids, view.relevant),
        num_with_match=int((view.relevant.lengths() > 0).sum()),
    )


def coverage_report(
    calibration: SplitPredictions,
    test: SplitPredictions,
    target_precisions: Sequence[float] = (0.9, 0.95),
    precision_at_k: Sequence[int] = (1, 5),
    coverage_at_k: Sequence[int] = (1,),
    method: str = "empirical",
    delta: float = 0.05,
    label_groups: np.ndarray | None = None,
    accept_score: str = "cosine",
) -> CoverageReport:
    """Every figure of :class:`CoverageReport` from the two splits' predictions.

    OPIS compares the classes of the scored test pairs: by default each label is its own class; ``label_groups``
    (one integer per corpus label) groups labels instead, e.g. by brand where no label has the five or more
    positive pairs OPIS needs (WDC test: one match per offer). ``accept_score`` names what the scores are.

    The two splits' top-1 scores are compared against the C@1 thresholds (:func:`alc_hf.core.metrics.score_shift`); a
    shift large enough to threaten the thresholds is a :class:`~alc_hf.core.metrics.ScoreShiftWarning` here and a
    flag in
    the report.
    """
    if 1 not in coverage_at_k:
        raise ValueError(
            f"coverage_at_k must include 1 (the report, its plot and its shift check read C@1), got {coverage_at_k}"
        )
    width = min(calibration.ids.shape[1], test.ids.shape[1])
    if max(*precision_at_k, *coverage_at_k) > width:
        raise ValueError(f"P@k and C@k need k <= {width}, the number of predictions per query")
    coverage = {
        k: threshold_results(
            calibration.scores[:, :k],
            calibration.correct[:, :k],
            test.scores[:, :k],
            test.correct[:, :k],
            target_precisions,
            method,
            delta,
            scored_by=f"accept score {accept_score}, C@{k}",
        )
        for k in coverage_at_k
    }
    # Pairs with a score: every prediction, or only the re-scored places of an accept score that scores few.
    scored = test.scores > -np.inf
    classes = test.ids[scored]
    if label_groups is not None:
        label_groups = np.asarray(label_groups).reshape(-1)
        if classes.size and classes.max() >= label_groups.size:
            raise ValueError(
                f"label_groups has {label_groups.size} entries but test predictions reach label {classes.max()}"
            )
        classes = label_groups[classes]
    shift = score_shift(
        calibration.scores[:, 0], test.scores[:, 0], [result.calibrated.threshold for result in coverage[1]]
    )
    if shift.warning:
        warnings.warn(
            f"{calibration.name} -> {test.name} (accept score {accept_score}): {shift.describe()}",
            ScoreShiftWarning,
            stacklevel=2,
        )
    return CoverageReport(
        calibration=calibration.summary(precision_at_k),
        test=test.summary(precision_at_k),
        method=method,
        delta=delta if method == "clopper_pearson" else None,
        coverage=coverage,
        aupc=precision_coverage_curve(test.scores[:, 0], test.correct[:, 0]).area(),
        opis=_opis_or_nan(test.scores[scored], test.correct[scored], classes),
        score_shift=shift,
        calibration_top1=(calibration.scores[:, 0], calibration.correct[:, 0]),
        test_top1=(test.scores[:, 0], test.correct[:, 0]),
        accept_score=accept_score,
    )


def _opis_or_nan(scores: np.ndarray, correct: np.ndarray, labels: np.ndarray) -> OPISResult:
    if correct.all() or not correct.any():
        # OPIS compares matches with non-matches: without one of them there is nothing to compare.
        return OPISResult(float("nan"), 0, float("nan"), float("nan"))
    return opis(scores, correct, labels)
