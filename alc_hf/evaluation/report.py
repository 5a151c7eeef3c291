"""The coverage report of a split pair: every figure, as metrics, JSON and a readable table."""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from alc_hf.metrics import (
    CoverageAtThreshold,
    OPISResult,
    ScoreShift,
    ThresholdResult,
    finite_or_none,
    threshold_metrics,
)


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
    (:func:`alc_hf.metrics.score_shift`): when it warns, the calibrated thresholds may not hold on test.

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

    def metrics(self) -> dict[str, float]:
        """Flat figures for logging: P@k on test (and ``calibration_p@1``), C@k at each target, AUPC, OPIS."""
        metrics = {f"p@{k}": value for k, value in self.test.precision_at.items()}
        metrics["calibration_p@1"] = self.calibration.precision_at[1]
        for k, results in self.coverage.items():
            metrics.update(threshold_metrics(results, f"c@{k}"))
        metrics["aupc"] = self.aupc
        metrics["opis"] = self.opis.value
        return metrics

    def to_dict(self) -> dict:
        def threshold_dict(result: ThresholdResult) -> dict:
            return {
                "target_precision": result.calibrated.target_precision,
                "reachable": result.calibrated.reachable,
                "threshold": finite_or_none(result.calibrated.threshold),
                "calibration": _figures(result.calibrated),
                "test": _figures(result.test),
                "oracle_threshold": finite_or_none(result.oracle.threshold),
                "oracle_test": _figures(result.oracle),
            }

        return {
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
            "metrics": {k: finite_or_none(v) for k, v in self.metrics().items()},
            "cost_ms_per_query": self.cost_ms_per_query,
        }

    def write_json(self, path: str | Path) -> Path:
        """Write :meth:`to_dict` atomically: a reader never sees a half-written file."""
        return write_atomically(Path(path), json.dumps(self.to_dict(), indent=2, allow_nan=False).encode())

    def table(self) -> str:
        """A readable plain-text table of the main figures."""
        lines = [
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
            f"Threshold calibrated on {self.calibration.name} ({self.method}), applied to {self.test.name}; "
            f"oracle = threshold chosen on {self.test.name} (upper bound).",
            f"{'metric':<8}{'target':>8}{'threshold':>11}{'coverage':>10}{'precision':>11}"
            f"{'oracle cov.':>13}{'oracle thr.':>13}",
        ]
        for k, results in self.coverage.items():
            for result in results:
                lines.append(
                    f"{'C@' + str(k):<8}{result.calibrated.target_precision:>8.3f}"
                    f"{_format(result.calibrated.threshold):>11}{result.test.coverage:>10.3f}"
                    f"{_format(result.test.precision):>11}{result.oracle.coverage:>13.3f}"
                    f"{_format(result.oracle.threshold):>13}"
                )
        lines += [
            "",
            f"AUPC (test, top-1): {self.aupc:.3f}    OPIS (test, {self.opis.num_labels} labels): "
            f"{_format(self.opis.value)}",
            f"{'WARNING: ' if self.score_shift.warning else ''}Top-1 score shift, {self.calibration.name} -> "
            f"{self.test.name}: {self.score_shift.describe()}.",
        ]
        return "\n".join(lines)


def _format(value: float) -> str:
    if math.isnan(value):
        return "-"
    return "unreached" if math.isinf(value) else f"{value:.3f}"


def _figures(result: CoverageAtThreshold) -> dict:
    figures = result.to_dict()
    return {name: figures[name] for name in ("coverage", "precision", "num_accepted", "num_predictions")}


def write_atomically(path: Path, data: bytes) -> Path:
    """Write ``data`` to a temporary file beside ``path`` and rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def accept_score_table(reports: dict[str, CoverageReport]) -> str:
    """The accept scores side by side: coverage at each calibrated threshold, the precision it reaches on test,
    and AUPC (same retrieval, same calibration split, same test split)."""
    targets = [result.calibrated.target_precision for result in next(iter(reports.values())).coverage[1]]
    header = f"{'accept score':<16}{'P@1':>7}" + "".join(f"{f'C@1@{100 * t:g}':>10}{'precision':>11}" for t in targets)
    lines = [header + f"{'AUPC':>8}{'ms/query':>10}"]
    for accept_score, report in reports.items():
        cells = "".join(f"{r.test.coverage:>10.3f}{_format(r.test.precision):>11}" for r in report.coverage[1])
        cost = "-" if report.cost_ms_per_query is None else f"{report.cost_ms_per_query:.2f}"
        lines.append(f"{accept_score:<16}{report.test.precision_at[1]:>7.3f}{cells}{report.aupc:>8.3f}{cost:>10}")
    return "\n".join(lines)
