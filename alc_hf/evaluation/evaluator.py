"""A sentence-transformers evaluator that reports coverage at a threshold calibrated on another split."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sentence_transformers.base.evaluation.evaluator import BaseEvaluator

from alc_hf.data import EvaluationView
from alc_hf.evaluation.coverage import check_view, coverage_report, embed_texts, predict_split
from alc_hf.evaluation.report import CoverageReport, target_name
from alc_hf.metrics.coverage import CALIBRATION_METHODS, check_target_precision
from alc_hf.retrieval import LabelIndex

logger = logging.getLogger(__name__)


class CoverageEvaluator(BaseEvaluator):
    """Coverage of top-1 recommendations at a threshold calibrated on one split and applied to another.

    For each target precision the threshold is the smallest whose accepted top-1 predictions on the calibration
    split reach it (:func:`alc_hf.metrics.calibrate_threshold`); it is then applied to the test split, which gives
    the honest coverage ``c@1_p90`` and the precision it really achieves there, ``c@1_p90_precision``. The oracle
    ``c@1_p90_oracle`` chooses the threshold on the test split itself: an upper bound, as often reported in papers.
    It also logs P@k on test (``p@1``, ``p@5``) and on calibration (``calibration_p@1``), AUPC and OPIS.

    Embeddings come from ``model.encode_query`` / ``model.encode_document``, so under several processes the
    trainer shards the encoding; the label corpus is embedded once when both splits share it.

    Args:
        calibration: the split the threshold is chosen on (e.g. ``evaluation_view(builtin_catalog(split="val"))``).
        test: the split it is applied to.
        target_precisions: the precisions to reach; the first one's coverage is the primary metric.
        precision_at_k: the k of the reported P@k.
        coverage_at_k: the k of the reported C@k (1 = C@1).
        calibration_method: ``"empirical"`` or ``"clopper_pearson"`` (a lower confidence bound must reach the target).
        delta: the Clopper–Pearson risk level.
        batch_size: encoding batch size.
        show_progress_bar: progress bars while encoding; by default when logging at INFO or below.
        name: a prefix for every metric name, e.g. ``"catalog"`` gives ``catalog_c@1_p90``.
        index_kind: the :class:`alc_hf.retrieval.LabelIndex` kind for whole-corpus search (``"flat"`` is exact).

    Example::

        from alc_hf.data import builtin_catalog, evaluation_view
        from alc_hf.evaluation import CoverageEvaluator

        evaluator = CoverageEvaluator(
            calibration=evaluation_view(builtin_catalog(split="val")),
            test=evaluation_view(builtin_catalog(split="tst")),
        )
        metrics = evaluator(model)  # or SentenceTransformerTrainer(..., evaluator=evaluator)
        print(evaluator.last_report.table())
    """

    def __init__(
        self,
        calibration: EvaluationView,
        test: EvaluationView,
        target_precisions: Sequence[float] = (0.9, 0.95),
        precision_at_k: Sequence[int] = (1, 5),
        coverage_at_k: Sequence[int] = (1,),
        calibration_method: str = "empirical",
        delta: float = 0.05,
        batch_size: int = 64,
        show_progress_bar: bool | None = None,
        name: str = "",
        index_kind: str = "flat",
    ) -> None:
        super().__init__()
        check_view(calibration, "calibration")
        check_view(test, "test")
        if not target_precisions:
            raise ValueError("target_precisions is empty: give at least one target precision")
        for target in target_precisions:
            check_target_precision(target)
        if calibration_method not in CALIBRATION_METHODS:
            raise ValueError(f"calibration_method must be one of {CALIBRATION_METHODS}, got {calibration_method!r}")
        if 1 not in coverage_at_k or min(*precision_at_k, *coverage_at_k) < 1:
            raise ValueError("coverage_at_k must include 1 and every k must be >= 1")
        self.calibration = calibration
        self.test = test
        self.target_precisions = tuple(float(t) for t in target_precisions)
        self.precision_at_k = tuple(precision_at_k)
        self.coverage_at_k = tuple(coverage_at_k)
        self.calibration_method = calibration_method
        self.delta = delta
        self.batch_size = batch_size
        self.show_progress_bar = (
            logger.getEffectiveLevel() <= logging.INFO if show_progress_bar is None else show_progress_bar
        )
        self.name = name
        self.index_kind = index_kind
        self.primary_metric = f"c@1_{target_name(self.target_precisions[0])}"
        self.last_report: CoverageReport | None = None

    def __call__(
        self, model: Any, output_path: str | None = None, epoch: int = -1, steps: int = -1
    ) -> dict[str, float]:
        report = self.compute_report(model)
        self.last_report = report
        if output_path is not None:
            suffix = f"_{self.name}" if self.name else ""
            report.write_json(Path(output_path) / f"coverage_evaluation{suffix}.json")
        metrics = self.prefix_name_to_metrics(report.metrics(), self.name)
        self.store_metrics_in_model_card_data(model, metrics, epoch, steps)
        return metrics

    def compute_report(self, model: Any) -> CoverageReport:
        """Embed both splits and the label corpus, retrieve, and compute every figure."""
        k = max(*self.precision_at_k, *self.coverage_at_k)
        shared_corpus = self.calibration.corpus is self.test.corpus or self.calibration.corpus == self.test.corpus
        test_index = LabelIndex(self._encode(model.encode_document, self.test.corpus), kind=self.index_kind)
        calibration_index = (
            test_index
            if shared_corpus
            else LabelIndex(self._encode(model.encode_document, self.calibration.corpus), kind=self.index_kind)
        )
        calibration = predict_split(
            self.calibration,
            self._encode(model.encode_query, self.calibration.queries),
            calibration_index,
            k,
            "calibration",
        )
        test = predict_split(self.test, self._encode(model.encode_query, self.test.queries), test_index, k, "test")
        return coverage_report(
            calibration,
            test,
            self.target_precisions,
            self.precision_at_k,
            self.coverage_at_k,
            self.calibration_method,
            self.delta,
        )

    def _encode(self, encode: Any, texts: list[str]) -> np.ndarray:
        return embed_texts(encode, texts, self.batch_size, self.show_progress_bar)

    @property
    def description(self) -> str:
        return "Coverage at a calibrated threshold"

    def get_config_dict(self) -> dict[str, Any]:
        return {
            "target_precisions": list(self.target_precisions),
            "calibration_method": self.calibration_method,
            **({"delta": self.delta} if self.calibration_method == "clopper_pearson" else {}),
        }
