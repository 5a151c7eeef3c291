"""A coverage report written to disk: the JSON of every figure beside its picture."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from alc_hf.evaluation.accept import ACCEPT_SCORES
from alc_hf.evaluation.plot import plot_report
from alc_hf.evaluation.report import CoverageReport


def write_report(
    report: CoverageReport, output_dir: str | Path, stem: str = "coverage", model_name: str | None = None
) -> tuple[Path, Path]:
    """``{stem}.json`` (every figure) and ``{stem}.png`` (the plot) in ``output_dir``; both name ``model_name`` as
    the model evaluated, when given."""
    output_dir = Path(output_dir)
    if model_name is not None:
        report = replace(report, model=model_name)
    return report.write_json(output_dir / f"{stem}.json"), plot_report(report, output_dir / f"{stem}.png")


def write_reports(
    reports: dict[str, CoverageReport],
    output_dir: str | Path,
    stem: str = "coverage",
    model_name: str | None = None,
) -> list[Path]:
    """:func:`write_report` for each accept score: the first as ``{stem}.json`` / ``.png``, the others as
    ``{stem}_{accept score}.json`` / ``.png``. The reports of other accept scores an earlier evaluation left under
    the same stem are removed: the folder then holds this evaluation's reports alone."""
    written = []
    for number, (accept_score, report) in enumerate(reports.items()):
        written += write_report(report, output_dir, stem if number == 0 else f"{stem}_{accept_score}", model_name)
    for accept_score in set(ACCEPT_SCORES) - set(list(reports)[1:]):
        for suffix in (".json", ".png"):
            (Path(output_dir) / f"{stem}_{accept_score}{suffix}").unlink(missing_ok=True)
    return written
