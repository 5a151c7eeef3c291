"""Accept scores: what decides "accept automatically or send to a person" for each retrieved label.

Retrieval ranks labels by cosine; the accept decision can use another score of the same (query, label) pair, with
the same protocol: a threshold calibrated on the calibration split for the target precision, applied to test.

* ``cosine``: the retrieval score itself.
* ``pair_head``: the ALC pair head's probability for the pair, from the two embeddings (a cheap verifier).
* ``combined``: a logistic regression on the cosine and the pair head's logit, fitted on the calibration split's
  top-1 predictions only (the test split never informs it).
* ``verifier``: a cross-encoder's probability for the top-1 pair, read from the two texts together
  (:mod:`alc_hf.training.verifier`); ``verifier_rerank``: the top-``depth`` re-ranked by that probability, the new top-1
  accepted by it (P@1 can change); ``verifier_combined``: a logistic regression on the cosine and the verifier's
  logit for the top-1, fitted like ``combined`` on the calibration split's top-1 predictions only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
import torch
from scipy.special import expit, logit

from alc_hf.data.views import EvaluationView
from alc_hf.evaluation.predictions import SplitPredictions
from alc_hf.losses import PairHead

ACCEPT_SCORES = ("cosine", "pair_head", "combined", "verifier", "verifier_rerank", "verifier_combined")
PAIR_HEAD_SCORES = ("pair_head", "combined")
VERIFIER_SCORES = ("verifier", "verifier_rerank", "verifier_combined")
# Scores fitted on the calibration split's labels: they need one besides the traffic they score.
FITTED_SCORES = ("combined", "verifier_combined")
# A verifier's float64 probability saturates at 1.0 above a logit of about 37; its logit is read back within this.
MAX_VERIFIER_LOGIT = 36.0


def pair_head_logits(
    head: PairHead, query_embeddings: np.ndarray, label_embeddings: np.ndarray, ids: np.ndarray, batch_size: int = 4096
) -> np.ndarray:
    """``[n, k]`` float64 head logits of each query with each of its predicted labels; NaN where ``ids`` is -1.

    Embeddings are the L2-normalised ones retrieval used (the head was trained on such); pairs go through the head
    in batches of ``batch_size`` rows."""
    if ids.shape[0] != query_embeddings.shape[0]:
        raise ValueError(f"{ids.shape[0]} rows of predictions but {query_embeddings.shape[0]} query embeddings")
    if query_embeddings.shape[1] != head.embedding_dim or label_embeddings.shape[1] != head.embedding_dim:
        raise ValueError(
            f"the pair head takes {head.embedding_dim}-dimensional embeddings, got queries of "
            f"{query_embeddings.shape[1]} and labels of {label_embeddings.shape[1]}: was it trained with this model?"
        )
    parameter = next(head.parameters())
    logits = np.full(ids.shape, np.nan)
    rows, columns = np.nonzero(ids >= 0)
    with torch.no_grad():
        for start in range(0, rows.size, batch_size):
            row, column = rows[start : start + batch_size], columns[start : start + batch_size]
            queries = torch.from_numpy(query_embeddings[row]).to(parameter)
            labels = torch.from_numpy(label_embeddings[ids[row, column]]).to(parameter)
            logits[row, column] = head(queries, labels).double().cpu().numpy()
    return logits


def with_scores(predictions: SplitPredictions, scores: np.ndarray) -> SplitPredictions:
    """The same predictions accepted by other scores (-inf where there is no prediction); the ranking is kept."""
    if scores.shape != predictions.ids.shape:
        raise ValueError(f"scores of shape {scores.shape} for predictions of shape {predictions.ids.shape}")
    scores = np.where(predictions.ids >= 0, scores, -np.inf)
    return replace(predictions, scores=scores)


def fit_logistic_regression(
    features: np.ndarray, targets: np.ndarray, ridge: float = 1e-3
) -> Callable[[np.ndarray], np.ndarray]:
    """scikit-learn's logistic regression on standardised ``features``, with a small ridge penalty (``ridge`` per
    example: the classes are often separable on a few features, where the unpenalised fit diverges); returns the
    function giving the probability of the positive class. One class alone gives its constant probability."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    features = np.asarray(features, dtype=np.float64)
    targets = np.asarray(targets, dtype=bool)
    if features.ndim != 2 or features.shape[0] != targets.shape[0] or features.shape[0] == 0:
        raise ValueError(f"features must be [n, m] with n = {targets.shape[0]} > 0 targets, got {features.shape}")
    if not np.isfinite(features).all():
        raise ValueError("features must be finite")
    if targets.all() or not targets.any():
        return lambda values: np.full(len(values), float(targets[0]))
    model = make_pipeline(StandardScaler(), LogisticRegression(C=1 / (ridge * len(features)), tol=1e-10))
    model.fit(features, targets)
    return lambda values: model.predict_proba(np.asarray(values, dtype=np.float64))[:, 1]


def fit_combined_score(
    calibration: SplitPredictions, calibration_logits: np.ndarray
) -> Callable[[SplitPredictions, np.ndarray], np.ndarray]:
    """A logistic regression on (cosine, logit) fitted on the calibration split's top-1 predictions (the test split
    never informs it); returns the function giving ``predictions`` of any split, with their ``logits`` (same shape,
    NaN where a pair has none), the ``[n, k]`` combined scores: -inf where there is no prediction or no logit."""
    scored = (calibration.ids[:, 0] >= 0) & ~np.isnan(calibration_logits[:, 0])
    if not scored.any():
        raise ValueError("the calibration split has no scored top-1 prediction to fit the combined accept score on")

    def features(predictions: SplitPredictions, logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        present = (predictions.ids >= 0) & ~np.isnan(logits)
        # Places without a score get placeholder features, and -inf as their combined score.
        values = np.stack([np.where(present, predictions.scores, 0.0), np.where(present, logits, 0.0)], axis=-1)
        return values, present

    values, _ = features(calibration, calibration_logits)
    regression = fit_logistic_regression(values[scored, 0], calibration.correct[scored, 0])

    def combined(predictions: SplitPredictions, logits: np.ndarray) -> np.ndarray:
        values, present = features(predictions, logits)
        scores = regression(values.reshape(-1, values.shape[-1])).reshape(values.shape[:-1])
        return np.where(present, scores, -np.inf)

    return combined


def accept_score_predictions(
    calibration: SplitPredictions,
    test: SplitPredictions,
    calibration_logits: np.ndarray,
    test_logits: np.ndarray,
) -> dict[str, tuple[SplitPredictions, SplitPredictions]]:
    """``{name: (calibration, test)}`` predictions accepted by the ``pair_head`` and ``combined`` scores, from the
    head's logits of every predicted pair (:func:`pair_head_logits`)."""
    combined = fit_combined_score(calibration, calibration_logits)

    def accepted(predictions: SplitPredictions, logits: np.ndarray) -> dict[str, SplitPredictions]:
        return {
            "pair_head": with_scores(predictions, expit(logits)),
            "combined": with_scores(predictions, combined(predictions, logits)),
        }

    on_calibration, on_test = accepted(calibration, calibration_logits), accepted(test, test_logits)
    return {name: (on_calibration[name], on_test[name]) for name in PAIR_HEAD_SCORES}


def verifier_logits(predictions: SplitPredictions) -> np.ndarray:
    """``[n, k]`` the verifier's logits read back from predictions it scored (:func:`verifier_predictions`), within
    +-:data:`MAX_VERIFIER_LOGIT`; NaN where it scored nothing."""
    scored = np.isfinite(predictions.scores)
    probabilities = np.where(scored, predictions.scores, 0.5)
    return np.where(scored, np.clip(logit(probabilities), -MAX_VERIFIER_LOGIT, MAX_VERIFIER_LOGIT), np.nan)


def verifier_predictions(
    predictions: SplitPredictions,
    view: EvaluationView,
    verifier: Any,
    depth: int,
    batch_size: int = 64,
    rerank: bool = True,
) -> SplitPredictions:
    """The predictions accepted by the verifier's probability: the top-``depth`` are scored and, with ``rerank``,
    re-ranked by it (stably, so equal probabilities keep the bi-encoder's order); with ``depth`` 1 or without
    ``rerank`` the ranking is kept. Places beyond ``depth`` keep their labels with score -inf (never accepted)."""
    from alc_hf.models.verifier import verifier_probabilities

    depth = min(depth, predictions.ids.shape[1])
    ids, correct = predictions.ids.copy(), predictions.correct.copy()
    rows, columns = np.nonzero(ids[:, :depth] >= 0)
    probabilities = verifier_probabilities(
        verifier,
        [view.queries[row] for row in rows.tolist()],
        [view.corpus[label] for label in ids[rows, columns].tolist()],
        batch_size=batch_size,
    )
    scores = np.full(ids.shape, -np.inf)
    scores[rows, columns] = probabilities
    if not rerank:
        return replace(predictions, scores=scores)
    order = np.argsort(-scores[:, :depth], axis=1, kind="stable")
    for array in (ids, correct, scores):
        array[:, :depth] = np.take_along_axis(array[:, :depth], order, axis=1)
    return replace(predictions, ids=ids, scores=scores, correct=correct)
