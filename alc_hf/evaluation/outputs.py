"""A coverage report written to disk: the JSON of every figure beside its picture."""

from __future__ import annotations

from pathlib import Path

from alc_hf.evaluation.plot import plot_report
from alc_hf.evaluation.report import CoverageReport


def write_report(report: CoverageReport, output_dir: str | Path, stem: str = "coverage") -> tuple[Path, Path]:
    """``{stem}.json`` (every figure) and ``{stem}.png`` (the plot) in ``output_dir``."""
    output_dir = Path(output_dir)
    return report.write_json(output_dir / f"{stem}.json"), plot_report(report, output_dir / f"{stem}.png")


def write_reports(reports: dict[str, CoverageReport], output_dir: str | Path, stem: str = "coverage") -> list[Path]:
    """:func:`write_report` for each accept score: the first as ``{stem}.json`` / ``.png``, the others as
    ``{stem}_{accept score}.json`` / ``.png``."""
    written = []
    for number, (accept_score, report) in enumerate(reports.items()):
        written += write_report(report, output_dir, stem if number == 0 else f"{stem}_{accept_score}")
    return written
