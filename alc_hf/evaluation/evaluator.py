"""A sentence-transformers evaluator that reports coverage at a threshold calibrated on another split."""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from sentence_transformers.base.evaluation.evaluator import BaseEvaluator
from sentence_transformers.util import get_rank

from alc_hf.core.metrics import CALIBRATION_METHODS, check_target_precision, pairwise_f1, target_name
from alc_hf.core.retrieval import LabelIndex
from alc_hf.data.views import EvaluationView
from alc_hf.evaluation.accept import (
    ACCEPT_SCORES,
    PAIR_HEAD_SCORES,
    VERIFIER_SCORES,
    accept_score_predictions,
    fit_combined_score,
    pair_head_logits,
    verifier_logits,
    verifier_predictions,
    with_scores,
)
from alc_hf.evaluation.predictions import (
    SplitPredictions,
    check_view,
    coverage_report,
    first_places,
    labelled_pairs,
    predict_split,
)
from alc_hf.evaluation.report import CoverageReport
from alc_hf.losses import PairHead
from alc_hf.models import embed_texts

logger = logging.getLogger(__name__)


class CoverageEvaluator(BaseEvaluator):
    """Coverage of top-1 recommendations at a threshold calibrated on one split and applied to another.

    For each target precision the threshold is the smallest whose accepted top-1 predictions on the calibration
    split reach it (:func:`alc_hf.core.metrics.calibrate_threshold`); it is then applied to the test split, which gives
    the honest coverage ``c@1_p90`` and the precision it really achieves there, ``c@1_p90_precision``. The oracle
    ``c@1_p90_oracle`` chooses the threshold on the test split itself, as papers often report: the most coverage at
    which test reaches the target (not deployable, and below ``c@1_p90`` when the calibrated threshold misses).
    It also logs P@k on test (``p@1``, ``p@5``) and on calibration (``calibration_p@1``), AUPC and OPIS.

    Embeddings come from ``model.encode_query`` / ``model.encode_document``, so under several processes the
    trainer shards the encoding; the label corpus is embedded once when both splits share it.

    With an ALC ``pair_head``, the same predictions are also accepted by the head's probability (``pair_head``) and
    by a logistic regression on the cosine and the head's logit fitted on the calibration split (``combined``); with
    a cross-encoder ``verifier``, by its probability for the top-1 (``verifier``), after it re-ranks the top
    ``rerank_depth`` (``verifier_rerank``), or by a logistic regression on the cosine and the verifier's logit for
    the top-1 fitted on the calibration split (``verifier_combined``): all with the same protocol
    (:mod:`alc_hf.evaluation.accept`). The first of ``accept_scores`` gives the unprefixed metrics and the primary
    metric; the others are logged with their name as a prefix (``pair_head_c@1_p90``, after the evaluator's
    ``name``), and the model card shows them in one table beside the primary figures.

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
        index_kind: the :class:`alc_hf.core.retrieval.LabelIndex` kind for whole-corpus search (``"flat"`` is exact).
        pair_head: the ALC pair head trained with the model, or where it was saved (a model folder or Hub id that
            holds ``pair_head/``, loaded with ``PairHead.from_pretrained``), or None.
        verifier: a cross-encoder that scores (query, label) texts (``alc_hf.training.verifier.load_verifier(...)``), or
            None.
        rerank_depth: how many of the bi-encoder's top predictions ``verifier_rerank`` re-ranks.
        accept_scores: which of ``"cosine"``, ``"pair_head"``, ``"combined"``, ``"verifier"``,
            ``"verifier_rerank"``, ``"verifier_combined"`` to report, the primary first (default: cosine, and those
            the given pair head and verifier allow). Each report carries the cost of its decision in milliseconds per
            test query.
        pairwise: also score every labelled (query, candidate) pair of both splits and report pairwise precision,
            recall and F1 on test at the F1-best threshold on calibration (``report.pairwise``, metrics
            ``pairwise_f1`` ...), as published matchers report them; by default when both views are labelled (block)
            views. Retrieval then reads every candidate, and the verifier scores every pair once more, untimed.

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
        pair_head: PairHead | str | Path | None = None,
        verifier: Any = None,
        rerank_depth: int = 5,
        accept_scores: Sequence[str] | None = None,
        pairwise: bool | None = None,
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
        if isinstance(pair_head, (str, Path)):
            pair_head = PairHead.from_pretrained(pair_head)
        if accept_scores is None:
            accept_scores = ("cosine",)
            accept_scores += PAIR_HEAD_SCORES if pair_head is not None else ()
            accept_scores += VERIFIER_SCORES if verifier is not None else ()
        accept_scores = tuple(accept_scores)
        unknown = sorted(set(accept_scores) - set(ACCEPT_SCORES))
        if not accept_scores or unknown or len(set(accept_scores)) != len(accept_scores):
            raise ValueError(f"accept_scores must be distinct names from {ACCEPT_SCORES}, got {accept_scores}")
        if pair_head is None and set(accept_scores) & set(PAIR_HEAD_SCORES):
            raise ValueError(f"accept_scores {accept_scores} need the ALC pair head: pass pair_head=...")
        if verifier is None and set(accept_scores) & set(VERIFIER_SCORES):
            raise ValueError(f"accept_scores {accept_scores} need a cross-encoder: pass verifier=...")
        if rerank_depth < 1:
            raise ValueError(f"rerank_depth must be >= 1, got {rerank_depth}")
        if set(accept_scores) & set(VERIFIER_SCORES) and max(coverage_at_k) > 1:
            raise ValueError("the verifier accept scores report C@1 only: leave coverage_at_k at (1,)")
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
        self.pair_head = pair_head
        self.verifier = verifier
        self.rerank_depth = rerank_depth
        self.accept_scores = accept_scores
        labelled = calibration.candidates is not None and test.candidates is not None
        if pairwise and not labelled:
            raise ValueError("pairwise figures need labelled views (each query with its labelled candidates)")
        self.pairwise = labelled if pairwise is None else pairwise
        self.primary_metric = f"c@1_{target_name(self.target_precisions[0])}"
        self.last_report: CoverageReport | None = None
        self.last_reports: dict[str, CoverageReport] = {}
        self._card_entries: dict[str, CoverageEvaluator] = {}

    def __call__(
        self, model: Any, output_path: str | None = None, epoch: int = -1, steps: int = -1
    ) -> dict[str, float]:
        reports = self.compute_reports(model)
        self.last_reports = reports
        self.last_report = reports[self.accept_scores[0]]
        metrics = {}
        for accept_score, report in reports.items():
            # Each further accept score is its own entry of the model card, named like a dataset, so the card puts
            # it in one table beside the primary figures (and those measured before training).
            entry = self if not metrics else self._card_entry(accept_score)
            if output_path is not None:
                report.write_json(
                    Path(output_path) / f"coverage_evaluation{'_' if entry.name else ''}{entry.name}.json"
                )
            entry_metrics = entry.prefix_name_to_metrics(report.metrics(), entry.name)
            entry.store_metrics_in_model_card_data(model, entry_metrics, epoch, steps)
            metrics.update(entry_metrics)
        return metrics

    def _card_entry(self, accept_score: str) -> CoverageEvaluator:
        """A copy of this evaluator named for ``accept_score``: the model card's key for that score's figures."""
        if accept_score not in self._card_entries:
            entry = copy.copy(self)
            entry.name = f"{self.name}_{accept_score}" if self.name else accept_score
            entry.accept_scores = (accept_score,)
            # The original's primary_metric already carries its own name prefix by now: start again unprefixed.
            entry.primary_metric = f"c@1_{target_name(self.target_precisions[0])}"
            self._card_entries[accept_score] = entry
        return self._card_entries[accept_score]

    def compute_report(self, model: Any) -> CoverageReport:
        """The report of the first accept score (see :meth:`compute_reports`)."""
        return self.compute_reports(model)[self.accept_scores[0]]

    def compute_reports(self, model: Any) -> dict[str, CoverageReport]:
        """Embed both splits and the label corpus, retrieve, and compute every figure for each accept score."""
        routes, test_seconds, pairs = self._predict(model)
        k = max(*self.precision_at_k, *self.coverage_at_k)
        per_query = 1000 / len(self.test.queries)
        reports = {
            accept_score: replace(
                coverage_report(
                    *(first_places(split, k) for split in routes[accept_score]),
                    self.target_precisions,
                    self.precision_at_k,
                    self.coverage_at_k,
                    self.calibration_method,
                    self.delta,
                    accept_score=accept_score,
                ),
                cost_ms_per_query=per_query
                * (test_seconds["cosine"] + (test_seconds[accept_score] if accept_score != "cosine" else 0.0)),
                pairwise=pairwise_f1(*pairs[accept_score][0], *pairs[accept_score][1]) if pairs else None,
            )
            for accept_score in self.accept_scores
        }
        for accept_score, report in reports.items():
            if report.score_shift.warning:
                logger.warning(
                    "%s (accept score %s): %s", self.description, accept_score, report.score_shift.describe()
                )
        return reports

    def compute_predictions(self, model: Any) -> dict[str, tuple[SplitPredictions, SplitPredictions]]:
        """Each accept score's ``(calibration, test)`` predictions, ranked by that score: what the reports are
        computed from (``alc-hf certify`` draws the predictions a person labels from them)."""
        return self._predict(model)[0]

    def _predict(
        self, model: Any
    ) -> tuple[dict[str, tuple[SplitPredictions, SplitPredictions]], dict[str, float], dict[str, tuple]]:
        """The predictions of every accept score, the seconds each took on the test split, and with ``pairwise``
        each accept score's ``((scores, labels), (scores, labels))`` of every labelled pair of both splits."""
        k = max(*self.precision_at_k, *self.coverage_at_k)
        if self.pairwise:  # every candidate is retrieved, so every labelled pair gets each score
            k = max(k, *(int(view.candidates.lengths().max(initial=1)) for view in (self.calibration, self.test)))
        if self._shared_corpus:
            embedded = self._encode_corpus(model, [self.calibration, self.test], "labels")
            corpus = {"calibration": embedded, "test": embedded}
            index = dict.fromkeys(corpus, LabelIndex(embedded, kind=self.index_kind))
        else:
            corpus = {"calibration": self._encode_corpus(model, [self.calibration], "calibration labels")}
            corpus["test"] = self._encode_corpus(model, [self.test], "test labels")
            index = {role: LabelIndex(embedded, kind=self.index_kind) for role, embedded in corpus.items()}
        # Each decision's cost is timed once the catalog is embedded (done once, offline). The loop ends on the test
        # split, so test_seconds keeps the test split's times; the accept scores' times add to retrieval's.
        test_seconds: dict[str, float] = {}
        query_embeddings, logits, every_pair = {}, {}, {}
        predictions: dict[str, dict[str, SplitPredictions]] = {name: {} for name in ("cosine", *VERIFIER_SCORES)}
        # The same view as both splits (the traffic of alc-hf certify) is predicted once.
        roles = (("calibration", self.calibration), ("test", self.test))
        for role, view in roles[1:] if self.calibration is self.test else roles:
            started = time.perf_counter()
            what = "queries" if self.calibration is self.test else f"{role} queries"
            query_embeddings[role] = self._encode(model.encode_query, view.queries, what)
            top = predict_split(view, query_embeddings[role], index[role], k, role)
            predictions["cosine"][role] = top
            test_seconds["cosine"] = time.perf_counter() - started
            if set(self.accept_scores) & set(PAIR_HEAD_SCORES):
                started = time.perf_counter()
                logits[role] = pair_head_logits(self.pair_head, query_embeddings[role], corpus[role], top.ids)
                test_seconds.update(dict.fromkeys(PAIR_HEAD_SCORES, time.perf_counter() - started))
            # verifier_combined reads the verifier's top-1 probability: the same work, the same cost.
            verified_top = {"verifier", "verifier_combined"} & set(self.accept_scores)
            for accept_score, depth, needed in (
                ("verifier", 1, verified_top),
                ("verifier_rerank", self.rerank_depth, {"verifier_rerank"} & set(self.accept_scores)),
            ):
                if needed:
                    started = time.perf_counter()
                    predictions[accept_score][role] = verifier_predictions(
                        top, view, self.verifier, depth, self.batch_size
                    )
                    test_seconds.update(dict.fromkeys(needed, time.perf_counter() - started))
            if self.pairwise and set(self.accept_scores) & set(VERIFIER_SCORES):
                # Every labelled pair read by the verifier, in the cosine's order: untimed, the accept decision reads
                # the top only.
                every_pair[role] = verifier_predictions(top, view, self.verifier, k, self.batch_size, rerank=False)
        if self.calibration is self.test:
            for split in [*predictions.values(), logits, every_pair]:
                if "test" in split:
                    split["calibration"] = split["test"]
        routes = {name: (split["calibration"], split["test"]) for name, split in predictions.items() if split}
        if logits:
            routes.update(accept_score_predictions(*routes["cosine"], logits["calibration"], logits["test"]))
        if "verifier_combined" in self.accept_scores:
            combined = fit_combined_score(routes["cosine"][0], verifier_logits(routes["verifier"][0]))

            def combined_with_verifier(verified: tuple[SplitPredictions, SplitPredictions]) -> tuple:
                """Both splits' cosine predictions accepted by the score combined with the verifier's logits."""
                return tuple(
                    with_scores(top, combined(top, verifier_logits(scored)))
                    for top, scored in zip(routes["cosine"], verified, strict=True)
                )

            routes["verifier_combined"] = combined_with_verifier(routes["verifier"])
        pairs = {}
        if self.pairwise:
            for name in self.accept_scores:
                splits = routes[name]
                if name in VERIFIER_SCORES:
                    splits = (every_pair["calibration"], every_pair["test"])
                if name == "verifier_combined":
                    splits = combined_with_verifier(splits)
                pairs[name] = tuple(labelled_pairs(split) for split in splits)
        return routes, test_seconds, pairs

    def workload(self) -> str:
        """What one evaluation embeds and scores, for a person waiting for it."""
        corpora = [[self.calibration, self.test]] if self._shared_corpus else [[self.calibration], [self.test]]
        num_labels = sum(len(self._labels_to_embed(views)) for views in corpora)
        return (
            f"{len(self.calibration.queries):,} calibration and {len(self.test.queries):,} test queries, "
            f"{num_labels:,} labels; accept scores {', '.join(self.accept_scores)}"
        )

    @property
    def _shared_corpus(self) -> bool:
        return self.calibration.corpus is self.test.corpus or self.calibration.corpus == self.test.corpus

    @staticmethod
    def _labels_to_embed(views: list[EvaluationView]) -> np.ndarray:
        """The corpus rows the ``views`` can rank: all of it, or only the candidates when every view ranks only its
        own (a block view)."""
        if any(view.candidates is None for view in views):
            return np.arange(len(views[0].corpus))
        needed = np.unique(np.concatenate([view.candidates.ids for view in views]))
        return needed if needed.size else np.arange(1)  # nothing is scored, but the index needs the dimension

    def _encode_corpus(self, model: Any, views: list[EvaluationView], what: str) -> np.ndarray:
        """The embeddings of the label corpus the ``views`` share; in a block view only the candidates are
        embedded, and the other rows hold a unit placeholder no search reads."""
        corpus = views[0].corpus
        needed = self._labels_to_embed(views)
        if needed.size == len(corpus):
            return self._encode(model.encode_document, corpus, what)
        embedded = self._encode(model.encode_document, [corpus[i] for i in needed], f"{what} (the candidates)")
        placeholder = np.zeros(embedded.shape[1], dtype=np.float32)
        placeholder[0] = 1.0
        full = np.tile(placeholder, (len(corpus), 1))
        full[needed] = embedded
        return full

    def _encode(self, encode: Any, texts: list[str], what: str) -> np.ndarray:
        """Embed ``texts``; with progress bars, a line first says what the bar counts (once, on the first
        process: under several processes each embeds its shard)."""
        if self.show_progress_bar and get_rank() == 0:
            print(f"Embedding {len(texts):,} {what} ...", flush=True)
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
