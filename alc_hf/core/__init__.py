"""The floor every other part stands on: the standard library, NumPy, SciPy and faiss only (no torch,
sentence-transformers, datasets or transformers; a test checks it in a fresh interpreter).

- :mod:`~alc_hf.core.query_labels`: the query–label form every reader returns (:class:`QueryLabelData`,
  :class:`RaggedIds`);
- :mod:`~alc_hf.core.program`: the user errors and how the programs report them, and the checks of option values;
- :mod:`~alc_hf.core.files`: files written whole;
- :mod:`~alc_hf.core.clustering`: the clustering maths of clustered hard batches;
- :mod:`~alc_hf.core.retrieval`: top-k search with faiss;
- :mod:`~alc_hf.core.metrics`: coverage, ranking, OPIS, pairwise F1, certification;
- ``coverage_metric/``: the ``evaluate`` module, self-contained (it imports nothing of alc_hf) and the one copy of
  the calibration maths, which :mod:`~alc_hf.core.metrics` serves.
"""

from pathlib import Path

# The `evaluate` module: ``evaluate.load(COVERAGE_METRIC_PATH)`` works offline.
COVERAGE_METRIC_PATH = str(Path(__file__).parent / "coverage_metric")

__all__ = ["COVERAGE_METRIC_PATH"]
