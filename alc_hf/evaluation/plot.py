"""The picture of a coverage report: precision against coverage, and where correct and wrong top-1 scores fall."""

from __future__ import annotations

import io
import itertools
from pathlib import Path

import numpy as np

from alc_hf.core.files import write_atomically
from alc_hf.core.metrics import precision_coverage_curve
from alc_hf.evaluation.report import CoverageReport


def plot_report(report: CoverageReport, path: str | Path) -> Path:
    """Write a PNG, titled with the model (when the report names it) and the accept score, with two panels: the
    precision–coverage curves of top-1 predictions on both splits, with the calibrated thresholds marked on test;
    and histograms of test top-1 scores, correct against wrong, with the calibration split's outline beside them. A
    line below says whether the top-1 scores shifted between the splits (in red when the calibrated thresholds may
    not hold: :attr:`CoverageReport.score_shift`)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib import pyplot as plt

    figure, (curve_axes, histogram_axes) = plt.subplots(1, 2, figsize=(12, 4.8))
    try:
        for split, (scores, correct), style in (
            (report.calibration, report.calibration_top1, "--"),
            (report.test, report.test_top1, "-"),
        ):
            curve = precision_coverage_curve(scores, correct)
            curve_axes.plot(curve.coverage, curve.precision, style, label=f"{split.name} ({split.num_queries} queries)")
        for result in report.coverage[1]:
            target = result.calibrated.target_precision
            curve_axes.axhline(target, color="grey", linewidth=0.6, linestyle=":")
            if result.test.num_accepted:
                curve_axes.plot(
                    result.test.coverage,
                    result.test.precision,
                    "o",
                    label=f"threshold for {target:.0%}: coverage {result.test.coverage:.3f}",
                )
        curve_axes.set(
            xlabel="coverage (share of queries accepted)",
            ylabel="precision of accepted top-1",
            xlim=(0, 1),
            ylim=(0, 1.02),
            title="Precision against coverage",
        )
        curve_axes.legend(loc="lower left", fontsize=8)

        scores, correct = report.test_top1
        scored = scores > -np.inf
        calibration_scores = report.calibration_top1[0]
        calibration_scores = calibration_scores[calibration_scores > -np.inf]
        both = np.concatenate([scores[scored], calibration_scores])
        bins = np.linspace(both.min(), both.max(), 41) if both.size else 10
        histogram_axes.hist(scores[scored & correct], bins=bins, alpha=0.6, label="correct top-1")
        histogram_axes.hist(scores[scored & ~correct], bins=bins, alpha=0.6, label="wrong top-1")
        if calibration_scores.size:
            # The calibration split's scores at the test split's scale: where the two differ, the threshold moves.
            histogram_axes.hist(
                calibration_scores,
                bins=bins,
                weights=np.full(calibration_scores.size, scored.sum() / calibration_scores.size),
                histtype="step",
                color="black",
                label=f"all top-1 on {report.calibration.name} (rescaled)",
            )
        for result, style in zip(report.coverage[1], itertools.cycle(("--", ":", "-."))):
            if result.calibrated.reachable:
                histogram_axes.axvline(
                    result.calibrated.threshold,
                    color="black",
                    linewidth=0.8,
                    linestyle=style,
                    label=f"threshold for {result.calibrated.target_precision:.0%}: {result.calibrated.threshold:.3f}",
                )
        histogram_axes.set(xlabel="top-1 score", ylabel="test queries", title="Top-1 scores on test")
        histogram_axes.legend(fontsize=8)
        shift = report.score_shift
        figure.text(
            0.5,
            0.01,
            ("WARNING: the calibrated thresholds may not hold on test. " if shift.warning else "")
            + f"Top-1 score shift: KS {shift.statistic:.3f}, p = {shift.p_value:.2g}; largest change of the share "
            f"above a threshold {shift.largest_share_gap:.3f}",
            ha="center",
            va="bottom",
            fontsize=9,
            color="red" if shift.warning else "dimgrey",
            fontweight="bold" if shift.warning else "normal",
        )
        figure.suptitle(
            f"{report.model or 'model'}: accept score {report.accept_score}, threshold calibrated on "
            f"{report.calibration.name} and applied to {report.test.name}",
            fontsize=10,
        )
        figure.tight_layout(rect=(0, 0.05, 1, 1))
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=110)
    finally:
        plt.close(figure)
    return write_atomically(Path(path), buffer.getvalue())
