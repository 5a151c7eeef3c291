"""The coverage report of a split pair: every figure, as metrics, JSON and a readable table."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from alc_hf.core.files import write_atomically
from alc_hf.core.metrics import (
    OPIS_MIN_POSITIVES,
    CoverageAtThreshold,
    OPISResult,
    PairwiseF1,
    ScoreShift,
    ThresholdCalibration,
    ThresholdResult,
    clopper_pearson_interval,
    finite_or_none,
    threshold_metrics,
)

# A threshold resting on fewer accepted calibration predictions gets a caveat with its precision's 95% interval: at
# 200 accepted and a precision of 0.90 the interval is already about 0.85-0.94; at 60 it is about 0.80-0.96.
FEW_ACCEPTED = 200
# Beside a test precision below the threshold's target.
MISSED_MARK = "!"


@dataclass(frozen=True)
class SplitSummary:
    name: str
    num_queries: int
    num_with_match: int
    precision_at: dict[int, float]


@dataclass
class CoverageReport:
    """Every figure of one evaluation. ``coverage[k]`` holds C@k per target precision (C@1 first).

    ``score_shift`` compares the two splits' top-1 score distributions against the C@1 thresholds
    (:func:`alc_hf.core.metrics.score_shift`): when it warns, the calibrated thresholds may not hold on test.

    The top-1 scores and correctness of both splits are kept for the plot; they are not written to JSON."""

    calibration: SplitSummary
    test: SplitSummary
    method: str
    delta: float | None
    coverage: dict[int, list[ThresholdResult]]
    aupc: float
    opis: OPISResult
    score_shift: ScoreShift
    calibration_top1: tuple[np.ndarray, np.ndarray] = field(repr=False)
    test_top1: tuple[np.ndarray, np.ndarray] = field(repr=False)
    # Milliseconds per test query to reach the accept decision (query embedding, search, and the accept score's
    # own work), when the evaluator measured it.
    cost_ms_per_query: float | None = None
    # What decided acceptance (alc_hf.evaluation.accept.ACCEPT_SCORES), and the model evaluated, when known.
    accept_score: str = "cosine"
    model: str | None = None
    # Pairwise matching on the labelled pairs (alc_hf.core.metrics.pairwise_f1), when the evaluator measured it.
    pairwise: PairwiseF1 | None = None

    def metrics(self) -> dict[str, float]:
        """Flat figures for logging: P@k on test (and ``calibration_p@1``), C@k at each target, AUPC, OPIS."""
        metrics = {f"p@{k}": value for k, value in self.test.precision_at.items()}
        metrics["calibration_p@1"] = self.calibration.precision_at[1]
        for k, results in self.coverage.items():
            metrics.update(threshold_metrics(results, f"c@{k}"))
        metrics["aupc"] = self.aupc
        metrics["opis"] = self.opis.value
        if self.pairwise is not None:
            for name in ("precision", "recall", "f1", "threshold"):
                metrics[f"pairwise_{name}"] = getattr(self.pairwise, name)
        return metrics

    def to_dict(self) -> dict:
        def threshold_dict(result: ThresholdResult) -> dict:
            return {
                "target_precision": result.calibrated.target_precision,
                "reachable": result.calibrated.reachable,
                "threshold": finite_or_none(result.calibrated.threshold),
                "calibration": _figures(result.calibrated),
                "calibration_precision_interval_95": _interval(result.calibrated),
                "test": _figures(result.test),
                "oracle_threshold": finite_or_none(result.oracle.threshold),
                "oracle_test": _figures(result.oracle),
            }

        return {
            "model": self.model,
            "accept_score": self.accept_score,
            "calibration_method": self.method,
            "delta": self.delta,
            "splits": {
                split.name: {
                    "num_queries": split.num_queries,
                    "num_with_match": split.num_with_match,
                    "precision_at": {str(k): v for k, v in split.precision_at.items()},
                }
                for split in (self.calibration, self.test)
            },
            "coverage_at": {str(k): [threshold_dict(r) for r in results] for k, results in self.coverage.items()},
            "test_aupc": self.aupc,
            "test_opis": {
                "value": finite_or_none(self.opis.value),
                "num_labels": self.opis.num_labels,
                "threshold_range": [self.opis.threshold_low, self.opis.threshold_high],
            },
            "score_shift": self.score_shift.to_dict(),
            "pairwise": None if self.pairwise is None else self.pairwise.to_dict(),
            "metrics": {k: finite_or_none(v) for k, v in self.metrics().items()},
            "cost_ms_per_query": self.cost_ms_per_query,
        }

    def write_json(self, path: str | Path) -> Path:
        """Write :meth:`to_dict` atomically: a reader never sees a half-written file."""
        return write_atomically(Path(path), json.dumps(self.to_dict(), indent=2, allow_nan=False).encode())

    def table(self) -> str:
        """A readable plain-text table of the main figures, then what they do not say by themselves
        (:meth:`caveats`)."""
        calibration, test = self.calibration.name, self.test.name
        lines = [
            f"Accept score: {self.accept_score}" + (f"; model: {self.model}" if self.model else ""),
            f"{'split':<12}{'queries':>9}{'with match':>12}"
            + "".join(f"{'P@' + str(k):>8}" for k in self.test.precision_at),
        ]
        for split in (self.calibration, self.test):
            lines.append(
                f"{split.name:<12}{split.num_queries:>9}{split.num_with_match:>12}"
                + "".join(f"{v:>8.3f}" for v in split.precision_at.values())
            )
        lines += [
            "",
            f"Threshold calibrated on {calibration} ({self.method}), applied to {test}: the coverage and the precision "
            f"it really reaches there ({MISSED_MARK} below the target). Oracle: the threshold chosen on {test} itself, "
            "the most coverage at which it reaches the target (not deployable).",
            f"{'metric':<8}{'target':>8}{'threshold':>11}{'coverage':>10}{'precision':>11}"
            f"{'oracle cov.':>13}{'oracle thr.':>13}",
        ]
        for k, results in self.coverage.items():
            for result in results:
                mark = MISSED_MARK if _missed(result) else ""
                lines.append(
                    f"{'C@' + str(k):<8}{result.calibrated.target_precision:>8.3f}"
                    f"{_format(result.calibrated.threshold):>11}{result.test.coverage:>10.3f}"
                    f"{_format(result.test.precision) + mark:>11}{result.oracle.coverage:>13.3f}"
                    f"{_format(result.oracle.threshold):>13}"
                )
        if self.opis.num_labels:
            opis = f"{self.opis.value:.3f}"
        else:
            opis = f"- (no label has {OPIS_MIN_POSITIVES} or more matching and 1 or more non-matching scored pairs)"
        lines += [
            "",
            f"AUPC (test, top-1): {self.aupc:.3f}    OPIS (test, {self.opis.num_labels} labels): {opis}",
            f"{'WARNING: ' if self.score_shift.warning else ''}Top-1 score shift, {calibration} -> "
            f"{test}: {self.score_shift.describe()}.",
        ]
        if self.pairwise is not None:
            pairs = self.pairwise
            lines.append(
                f"Pairwise, the {pairs.num_pairs} labelled {test} pairs ({pairs.num_matches} matches) at the F1-best "
                f"threshold on {calibration} ({_format(pairs.threshold)}): precision {_format(pairs.precision)}, "
                f"recall {_format(pairs.recall)}, F1 {_format(pairs.f1)} (oracle F1 {pairs.oracle_f1:.3f})."
            )
        return "\n".join(lines + [f"NOTE: {caveat}" for caveat in self.caveats()])

    def caveats(self) -> list[str]:
        """What the coverage table does not say by itself, a sentence per target: a target no threshold reaches on
        the calibration split, a threshold resting on fewer than :data:`FEW_ACCEPTED` accepted calibration
        predictions (with the 95% interval of their precision: where the precision on new traffic may lie), a
        threshold whose test precision misses its target."""
        calibration, test = self.calibration.name, self.test.name
        caveats = []
        for k, results in self.coverage.items():
            for result in results:
                calibrated, target = result.calibrated, f"C@{k} at {result.calibrated.target_precision:.3f}"
                if not calibrated.reachable:
                    caveats.append(
                        f"{target}: no threshold reaches the target on the {calibrated.num_predictions} {calibration} "
                        "predictions, so nothing is accepted."
                    )
                    continue
                if calibrated.num_accepted < FEW_ACCEPTED:
                    low, high = _interval(calibrated)
                    caveats.append(
                        f"{target}: the threshold rests on {calibrated.num_accepted} accepted {calibration} "
                        f"predictions (fewer than {FEW_ACCEPTED}); their precision {calibrated.precision:.3f} has the "
                        f"95% interval [{low:.3f}, {high:.3f}], so on new traffic the precision may lie anywhere in "
                        f"it. Label more {calibration} data to narrow it."
                    )
                if _missed(result):
                    caveats.append(
                        f"{target}: the threshold reaches {result.test.precision:.3f} on {test}, below its target: it "
                        f"does not hold there; the oracle coverage is then no bound on it."
                    )
        return caveats


def _format(value: float) -> str:
    if math.isnan(value):
        return "-"
    return "unreached" if math.isinf(value) else f"{value:.3f}"


def _missed(result: ThresholdResult) -> bool:
    """The calibrated threshold accepts test predictions at a precision below its target."""
    return result.test.num_accepted > 0 and result.test.precision < result.calibrated.target_precision - 1e-9


def _interval(calibrated: ThresholdCalibration) -> list[float] | None:
    """The 95% Clopper–Pearson interval of the precision of the accepted calibration predictions (None: none)."""
    if not calibrated.num_accepted:
        return None
    num_correct = round(calibrated.precision * calibrated.num_accepted)
    return list(clopper_pearson_interval(num_correct, calibrated.num_accepted))


def _figures(result: CoverageAtThreshold) -> dict:
    figures = result.to_dict()
    return {name: figures[name] for name in ("coverage", "precision", "num_accepted", "num_predictions")}


def accept_score_caveats(reports: dict[str, CoverageReport]) -> list[str]:
    """Every report's :meth:`~CoverageReport.caveats`, each line naming its accept score."""
    return [f"NOTE ({name}): {caveat}" for name, report in reports.items() for caveat in report.caveats()]


def accept_score_table(reports: dict[str, CoverageReport]) -> str:
    """The accept scores side by side: coverage at each calibrated threshold, the precision it reaches on test,
    AUPC and, where measured, pairwise F1 (same retrieval, same calibration split, same test split)."""
    targets = [result.calibrated.target_precision for result in next(iter(reports.values())).coverage[1]]
    header = f"{'accept score':<16}{'P@1':>7}" + "".join(f"{f'C@1@{100 * t:g}':>10}{'precision':>11}" for t in targets)
    pairwise = any(report.pairwise is not None for report in reports.values())
    lines = [header + f"{'AUPC':>8}" + (f"{'pair F1':>9}" if pairwise else "") + f"{'ms/query':>10}"]
    for accept_score, report in reports.items():
        cells = "".join(f"{r.test.coverage:>10.3f}{_format(r.test.precision):>11}" for r in report.coverage[1])
        f1 = "" if not pairwise else f"{'-' if report.pairwise is None else _format(report.pairwise.f1):>9}"
        cost = "-" if report.cost_ms_per_query is None else f"{report.cost_ms_per_query:.2f}"
        lines.append(f"{accept_score:<16}{report.test.precision_at[1]:>7.3f}{cells}{report.aupc:>8.3f}{f1}{cost:>10}")
    return "\n".join(lines)
