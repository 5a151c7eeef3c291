"""Pairwise precision, recall and F1 over labelled pairs (``alc_hf.core.metrics.pairwise``), against a slow
reference."""

from __future__ import annotations

import math

import numpy as np
import pytest

from alc_hf.core.metrics.pairwise import best_f1_threshold, pairwise_f1, pairwise_figures


def reference_figures(scores, labels, threshold):
    tp = sum(1 for s, y in zip(scores, labels, strict=True) if s >= threshold and y)
    fp = sum(1 for s, y in zip(scores, labels, strict=True) if s >= threshold and not y)
    fn = sum(1 for s, y in zip(scores, labels, strict=True) if s < threshold and y)
    precision = tp / (tp + fp) if tp + fp else math.nan
    recall = tp / (tp + fn) if tp + fn else math.nan
    return precision, recall, (2 * tp / (2 * tp + fp + fn) if 2 * tp + fp + fn else math.nan)


def reference_best(scores, labels):
    best = (math.inf, 0.0)
    for threshold in sorted(set(scores), reverse=True):
        f1 = reference_figures(scores, labels, threshold)[2]
        if f1 > best[1] + 1e-12:
            best = (threshold, f1)
    return best


@pytest.mark.parametrize("seed", range(5))
def test_figures_and_the_best_threshold_match_a_loop(seed):
    rng = np.random.default_rng(seed)
    scores = np.round(rng.uniform(0, 1, 80), 2)  # ties
    labels = rng.uniform(0, 1, 80) < scores
    threshold, f1 = best_f1_threshold(scores, labels)
    assert (threshold, f1) == pytest.approx(reference_best(scores.tolist(), labels.tolist()))
    for cut in (0.0, 0.3, threshold, 0.95, 2.0):
        assert pairwise_figures(scores, labels, cut) == pytest.approx(
            reference_figures(scores.tolist(), labels.tolist(), cut), nan_ok=True
        )


def test_the_threshold_is_chosen_on_calibration_and_applied_to_test():
    calibration = (np.array([0.9, 0.8, 0.7, 0.6, 0.5]), np.array([1, 1, 0, 1, 0]))
    # F1 at 0.9: 2/4; at 0.8: 4/5; at 0.7: 4/6; at 0.6: 6/7 (the best); at 0.5: 6/8.
    test = (np.array([0.95, 0.65, 0.62, 0.55, 0.3]), np.array([1, 0, 1, 1, 0]))
    result = pairwise_f1(*calibration, *test)
    assert result.threshold == 0.6 and result.calibration_f1 == pytest.approx(6 / 7)
    # On test, 0.6 predicts 0.95, 0.65, 0.62: two right of three, two of the three matches found.
    assert (result.precision, result.recall, result.f1) == pytest.approx((2 / 3, 2 / 3, 2 / 3))
    assert (result.num_pairs, result.num_matches) == (5, 3)
    assert result.oracle_f1 == pytest.approx(reference_best(*map(list, test))[1])


def test_no_match_and_bad_input():
    assert best_f1_threshold(np.array([0.5, 0.4]), np.array([0, 0])) == (math.inf, 0.0)
    with pytest.raises(ValueError, match="pair scores has shape"):
        best_f1_threshold(np.array([0.5, 0.4]), np.array([0, 0, 1]))
    with pytest.raises(ValueError, match="is nan"):
        pairwise_figures(np.array([math.nan]), np.array([1]), 0.5)


def circle_views(rng: np.random.Generator) -> tuple[dict, tuple, tuple]:
    """Labels on a circle and two block views whose queries sit at random angles, so every pair's cosine is known
    exactly: the vectors, and per split its view and its labelled pairs as (query, candidate, cosine, match)."""
    from alc_hf.data import EvaluationView, RaggedIds
    from tests.test_evaluation import at_angle

    corpus = [f"label {degrees}" for degrees in range(0, 360, 30)]
    vectors = {text: at_angle(30 * i) for i, text in enumerate(corpus)}

    def split(prefix: str, size: int) -> tuple[EvaluationView, list[tuple[int, int, float, bool]]]:
        queries, candidates, relevant, pairs = [], [], [], []
        for q in range(size):
            angle = float(rng.uniform(0, 360))
            queries.append(f"{prefix}{q}")
            vectors[queries[-1]] = at_angle(angle)
            block = sorted(rng.choice(len(corpus), size=int(rng.integers(1, 7)), replace=False).tolist())
            matches = [c for c in block if rng.uniform() < 0.4]
            candidates.append(block)
            relevant.append(matches)
            pairs += [(q, c, math.cos(math.radians(angle - 30 * c)), c in matches) for c in block]
        view = EvaluationView(
            queries,
            corpus,
            RaggedIds.from_lists(relevant),
            np.zeros((0, 2), np.int64),
            RaggedIds.from_lists(candidates),
        )
        return view, pairs

    return vectors, split("c", 40), split("t", 50)


def test_the_evaluator_scores_every_labelled_pair_of_a_block_view():
    from alc_hf.evaluation import CoverageEvaluator
    from tests.test_evaluation import FixedEmbeddings

    vectors, (calibration, calibration_pairs), (test, test_pairs) = circle_views(np.random.default_rng(3))
    report = CoverageEvaluator(calibration, test, precision_at_k=(1,)).compute_report(FixedEmbeddings(vectors))
    threshold, calibration_f1 = reference_best([p[2] for p in calibration_pairs], [p[3] for p in calibration_pairs])
    expected = reference_figures([p[2] for p in test_pairs], [p[3] for p in test_pairs], threshold)
    assert report.pairwise.num_pairs == len(test_pairs) and report.pairwise.threshold == pytest.approx(threshold)
    assert (report.pairwise.precision, report.pairwise.recall, report.pairwise.f1) == pytest.approx(expected)
    assert report.metrics()["pairwise_f1"] == pytest.approx(expected[2])
    assert report.to_dict()["pairwise"]["calibration_f1"] == pytest.approx(calibration_f1)
    assert "Pairwise, the" in report.table()
    # Retrieval read every candidate for the pairs; the reports still speak of the first places only.
    assert report.test.precision_at.keys() == {1}


class TableVerifier:
    """A stand-in cross-encoder whose logit for each (query, label) text pair is given."""

    num_labels = 1

    def __init__(self, logits: dict[tuple[str, str], float]) -> None:
        self.logits = logits

    def predict(self, pairs, **_) -> np.ndarray:
        return np.array([self.logits[tuple(pair)] for pair in pairs])


def test_the_verifier_scores_and_their_combination_with_the_cosine_score_every_labelled_pair():
    from alc_hf.evaluation import CoverageEvaluator
    from alc_hf.evaluation.accept import fit_logistic_regression
    from tests.test_evaluation import FixedEmbeddings

    rng = np.random.default_rng(5)
    vectors, (calibration, calibration_pairs), (test, test_pairs) = circle_views(rng)
    logits = {}
    for view, pairs in ((calibration, calibration_pairs), (test, test_pairs)):
        for q, c, _, match in pairs:
            logits[view.queries[q], view.corpus[c]] = 1.5 * match + float(rng.normal())
    evaluator = CoverageEvaluator(
        calibration,
        test,
        precision_at_k=(1,),
        verifier=TableVerifier(logits),
        accept_scores=("cosine", "verifier", "verifier_combined"),
    )
    reports = evaluator.compute_reports(FixedEmbeddings(vectors))

    def logit_of(view, pair):
        return logits[view.queries[pair[0]], view.corpus[pair[1]]]

    # The combination: fitted on the calibration split's top-1 (by cosine) pairs alone, then applied to every pair.
    top1 = [max((p for p in calibration_pairs if p[0] == q), key=lambda p: p[2]) for q in range(40)]
    fitted = fit_logistic_regression([[p[2], logit_of(calibration, p)] for p in top1], [p[3] for p in top1])
    for name, score in (
        ("verifier", lambda view, pair: 1 / (1 + math.exp(-logit_of(view, pair)))),
        ("verifier_combined", lambda view, pair: float(fitted(np.array([[pair[2], logit_of(view, pair)]]))[0])),
    ):
        threshold, _ = reference_best(
            [score(calibration, p) for p in calibration_pairs], [p[3] for p in calibration_pairs]
        )
        expected = reference_figures([score(test, p) for p in test_pairs], [p[3] for p in test_pairs], threshold)
        pairwise = reports[name].pairwise
        assert pairwise.num_pairs == len(test_pairs)
        assert (pairwise.precision, pairwise.recall, pairwise.f1) == pytest.approx(expected), name
