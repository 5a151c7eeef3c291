"""The calibration and test views of a named data source."""

from __future__ import annotations

from pathlib import Path

from alc_hf.data import EvaluationView, evaluation_view
from alc_hf.data.sources import DEFAULT_VIEW, load_evaluation_splits


def evaluation_views(
    source: str = "catalog", data_dir: str | Path | None = None, view: str | None = None, seed: int = 0
) -> tuple[EvaluationView, EvaluationView]:
    """``(calibration, test)`` views of a source (see :func:`alc_hf.data.sources.load_evaluation_splits`).

    ``view`` is ``"corpus"`` (rank against every label) or ``"labelled"`` (rank only against each query's labelled
    candidates, the WDC block view); by default ``"labelled"`` for WDC tables and ``"corpus"`` otherwise. WDC's corpus
    view is its catalog view (:func:`alc_hf.data.sources.wdc_catalog_split`)."""
    view = view or DEFAULT_VIEW[source]
    calibration, test = load_evaluation_splits(source, data_dir, seed=seed, catalog_view=view == "corpus")
    return evaluation_view(calibration, candidates=view), evaluation_view(test, candidates=view)
