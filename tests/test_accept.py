"""Accept scores: the pair head and the combined score decide acceptance with the cosine's protocol; checked against
loops and an independent fit."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import minimize

from alc_hf import PairHead
from alc_hf.cli import main as cli_main
from alc_hf.core.metrics import calibrate_threshold, coverage_at_threshold
from alc_hf.data import builtin_catalog, evaluation_view
from alc_hf.evaluation import CoverageEvaluator
from alc_hf.evaluation.accept import fit_logistic_regression, pair_head_logits
from alc_hf.losses.pair_head import saved_pair_head


def test_logistic_regression_matches_an_independent_fit():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(300, 2)) * [0.1, 3.0] + [0.7, -1.0]
    targets = rng.random(300) < 1 / (1 + np.exp(-(8 * (features[:, 0] - 0.7) + 0.5 * features[:, 1])))
    ridge = 1e-3
    predict = fit_logistic_regression(features, targets, ridge=ridge)

    # The same objective written out and handed to a general-purpose optimiser.
    mean, scale = features.mean(axis=0), features.std(axis=0)
    standard = (features - mean) / scale

    def objective(theta):
        z = theta[0] + standard @ theta[1:]
        return np.sum(np.logaddexp(0, z) - targets * z) + 0.5 * ridge * len(features) * np.sum(theta[1:] ** 2)

    reference = minimize(objective, np.zeros(3), method="BFGS", options={"gtol": 1e-9}).x
    expected = 1 / (1 + np.exp(-(reference[0] + standard @ reference[1:])))
    np.testing.assert_allclose(predict(features), expected, rtol=1e-4, atol=1e-6)


def test_logistic_regression_survives_separable_classes_and_refuses_bad_input():
    features = np.array([[0.1], [0.2], [0.8], [0.9]])
    probabilities = fit_logistic_regression(features, np.array([0, 0, 1, 1]))(features)
    assert np.isfinite(probabilities).all() and (np.diff(probabilities) > 0).all()
    assert (fit_logistic_regression(features, np.ones(4))(features) == 1.0).all()  # one class: its probability
    with pytest.raises(ValueError, match="features must be finite"):
        fit_logistic_regression(np.array([[np.nan], [1.0]]), np.array([0, 1]))
    with pytest.raises(ValueError, match=r"features must be \[n, m\]"):
        fit_logistic_regression(np.zeros((3, 1)), np.zeros(2))


def test_pair_head_logits_match_a_loop():
    torch.manual_seed(0)
    head = PairHead(8, 5)
    rng = np.random.default_rng(1)
    queries = rng.normal(size=(4, 8)).astype(np.float32)
    labels = rng.normal(size=(6, 8)).astype(np.float32)
    ids = np.array([[0, 5], [3, -1], [2, 2], [-1, -1]])
    logits = pair_head_logits(head, queries, labels, ids, batch_size=3)
    for row in range(4):
        for column in range(2):
            if ids[row, column] < 0:
                assert np.isnan(logits[row, column])
                continue
            q = torch.from_numpy(queries[row])
            label = torch.from_numpy(labels[ids[row, column]])
            expected = head.layers(torch.cat([q, label, (q - label).abs(), q * label])).item()
            assert logits[row, column] == pytest.approx(expected, rel=1e-5, abs=1e-6)
    with pytest.raises(ValueError, match="takes 8-dimensional embeddings"):
        pair_head_logits(head, queries[:, :4], labels, ids)


@pytest.fixture(scope="module")
def views():
    return (
        evaluation_view(builtin_catalog(split="val", num_products=150)),
        evaluation_view(builtin_catalog(split="tst", num_products=150)),
    )


def top1(model, view):
    """Each query's top-1 label and whether it is right, from the full float64 score matrix, and the share of
    queries whose best two labels are within float32 rounding (where retrieval may pick either)."""
    queries = model.encode(view.queries, convert_to_numpy=True, normalize_embeddings=True)
    corpus = model.encode(view.corpus, convert_to_numpy=True, normalize_embeddings=True)
    scores = queries.astype(np.float64) @ corpus.astype(np.float64).T
    best = scores.argmax(axis=1)
    correct = np.array([label in set(view.relevant[i].tolist()) for i, label in enumerate(best)])
    two_best = np.sort(scores, axis=1)[:, -2:]
    tied = float(np.mean(two_best[:, 1] - two_best[:, 0] < 1e-5))
    return queries, corpus[best], scores[np.arange(len(best)), best], correct, tied


def test_pair_head_and_combined_accept_scores_follow_the_protocol(tiny_model, views):
    calibration, test = views
    torch.manual_seed(3)
    head = PairHead(32)
    evaluator = CoverageEvaluator(calibration, test, target_precisions=(0.3,), batch_size=256, pair_head=head)
    metrics = evaluator(tiny_model)
    assert list(evaluator.last_reports) == ["cosine", "pair_head", "combined"]
    assert evaluator.primary_metric == "c@1_p30"

    def head_logit(queries, labels):
        with torch.no_grad():
            return head(torch.from_numpy(queries), torch.from_numpy(labels)).double().numpy()

    cal_q, cal_l, cal_cosine, cal_correct, cal_tied = top1(tiny_model, calibration)
    test_q, test_l, test_cosine, test_correct, test_tied = top1(tiny_model, test)
    # A query whose best two labels tie may get the other one from retrieval: each may move a figure by 1/n.
    assert cal_tied == 0, "a tie on the calibration split could move the thresholds themselves"
    tolerance = test_tied + 1e-9
    cal_logit, test_logit = head_logit(cal_q, cal_l), head_logit(test_q, test_l)

    # cosine: the retrieval score.
    threshold = calibrate_threshold(cal_cosine, cal_correct, 0.3)
    assert metrics["c@1_p30"] == pytest.approx(
        coverage_at_threshold(test_cosine, test_correct, threshold.threshold).coverage, abs=2e-3
    )
    # pair_head: the head's probability of each top-1 pair.
    threshold = calibrate_threshold(1 / (1 + np.exp(-cal_logit)), cal_correct, 0.3)
    expected = coverage_at_threshold(1 / (1 + np.exp(-test_logit)), test_correct, threshold.threshold)
    assert metrics["pair_head_c@1_p30"] == pytest.approx(expected.coverage, abs=tolerance)
    assert metrics["pair_head_p@1"] == metrics["p@1"], "the accept score must not change the ranking"
    # combined: a logistic regression on (cosine, logit) fitted on the calibration split alone.
    fitted = fit_logistic_regression(np.column_stack([cal_cosine, cal_logit]), cal_correct)
    threshold = calibrate_threshold(fitted(np.column_stack([cal_cosine, cal_logit])), cal_correct, 0.3)
    expected = coverage_at_threshold(
        fitted(np.column_stack([test_cosine, test_logit])), test_correct, threshold.threshold
    )
    assert metrics["combined_c@1_p30"] == pytest.approx(expected.coverage, abs=tolerance)
    assert metrics["combined_c@1_p30_threshold"] == pytest.approx(threshold.threshold, rel=1e-5)


def test_combined_score_never_sees_the_test_labels(tiny_model, views):
    calibration, test = views
    torch.manual_seed(4)
    head = PairHead(32)
    evaluator = CoverageEvaluator(calibration, test, batch_size=256, pair_head=head, accept_scores=["combined"])
    first = evaluator.compute_report(tiny_model)
    # Every test query's relevant labels replaced: the threshold (fitted and calibrated on calibration) stays.
    shuffled = type(test)(
        test.queries, test.corpus, type(test.relevant).from_lists([[0]] * len(test.queries)), test.filter_pairs
    )
    second = CoverageEvaluator(calibration, shuffled, batch_size=256, pair_head=head, accept_scores=["combined"])
    report = second.compute_report(tiny_model)
    for a, b in zip(first.coverage[1], report.coverage[1], strict=True):
        assert a.calibrated.threshold == b.calibrated.threshold
        assert a.test.num_accepted == b.test.num_accepted


def test_accept_scores_need_a_head_and_known_names(views):
    calibration, test = views
    with pytest.raises(ValueError, match="need the ALC pair head"):
        CoverageEvaluator(calibration, test, accept_scores=["cosine", "pair_head"])
    with pytest.raises(ValueError, match="distinct names from"):
        CoverageEvaluator(calibration, test, pair_head=PairHead(32), accept_scores=["cosine", "oracle"])
    with pytest.raises(ValueError, match="need a cross-encoder"):
        CoverageEvaluator(calibration, test, pair_head=PairHead(32), accept_scores=["cosine", "verifier"])
    with pytest.raises(ValueError, match="distinct names from"):
        CoverageEvaluator(calibration, test, pair_head=PairHead(32), accept_scores=["cosine", "cosine"])


def test_command_loads_the_pair_head_saved_with_the_model(tiny_model, views, tmp_path, capsys):
    model_dir = tmp_path / "model"
    tiny_model.save_pretrained(str(model_dir))
    assert saved_pair_head(model_dir) is None
    torch.manual_seed(5)
    head = PairHead(32)
    head.save_pretrained(model_dir / "pair_head")
    for loaded in (saved_pair_head(model_dir), CoverageEvaluator(*views, pair_head=model_dir).pair_head):
        for (name, saved), (_, original) in zip(loaded.state_dict().items(), head.state_dict().items(), strict=True):
            assert torch.equal(saved, original), name
    output = tmp_path / "report"
    assert (
        cli_main(["evaluate", str(model_dir), "--output_dir", str(output), "--per_device_eval_batch_size", "256"]) == 0
    )
    printed = capsys.readouterr().out
    assert "accept score" in printed and "pair_head" in printed and "combined" in printed
    assert sorted(path.name for path in output.iterdir()) == [
        "coverage.json",
        "coverage.png",
        "coverage_combined.json",
        "coverage_combined.png",
        "coverage_pair_head.json",
        "coverage_pair_head.png",
    ]


def test_verifier_accept_decision_matches_an_independent_loop(tiny_encoder_dir, tmp_path):
    """A tiny verifier trained offline on pairs mined with the bi-encoder; the three verifier routes checked against
    a loop over the same bi-encoder ranking and the verifier's own logits (and an independent combined fit)."""
    from sentence_transformers import CrossEncoder

    from alc_hf.training.verifier import train_verifier, verifier_pairs
    from tests.tiny_model import build_tiny_encoder_files, load_tiny_encoder

    bi_encoder = load_tiny_encoder(tiny_encoder_dir)
    train = builtin_catalog(split="trn", num_products=60)
    pairs = verifier_pairs(train, bi_encoder=bi_encoder, num_mined=2)
    trainable = build_tiny_encoder_files(tmp_path / "cross", initializer_range=0.3)
    verifier = train_verifier(
        pairs, trainable, tmp_path / "verifier", max_steps=8, learning_rate=3e-3, max_length=32,
        logging_strategy="no", disable_tqdm=True,
    )  # fmt: skip
    assert isinstance(verifier, CrossEncoder)
    calibration = evaluation_view(builtin_catalog(split="val", num_products=60))
    test = evaluation_view(builtin_catalog(split="tst", num_products=60))
    depth = 3
    evaluator = CoverageEvaluator(
        calibration, test, target_precisions=(0.3,), batch_size=256, verifier=verifier, rerank_depth=depth
    )
    metrics = evaluator(bi_encoder)
    assert list(evaluator.last_reports) == ["cosine", "verifier", "verifier_rerank", "verifier_combined"]
    assert all(report.cost_ms_per_query > 0 for report in evaluator.last_reports.values())

    def decisions(view):
        """Per query: the verifier's probability and correctness of the bi-encoder's top-1, and of the best of the
        top ``depth`` by the verifier; the top-1's cosine and verifier logit; and the share of queries whose ranking
        has a near-tie among those places."""
        queries = bi_encoder.encode(view.queries, convert_to_numpy=True, normalize_embeddings=True)
        corpus = bi_encoder.encode(view.corpus, convert_to_numpy=True, normalize_embeddings=True)
        scores = queries.astype(np.float64) @ corpus.astype(np.float64).T
        ranked = np.argsort(-scores, axis=1, kind="stable")[:, : depth + 1]
        near_tie = np.any(np.abs(np.diff(np.take_along_axis(scores, ranked, axis=1), axis=1)) < 1e-5, axis=1)
        top1, reranked, features = [], [], []
        for row, labels in enumerate(ranked[:, :depth].tolist()):
            logits = [
                float(verifier.predict([(view.queries[row], view.corpus[label])], activation_fn=torch.nn.Identity())[0])
                for label in labels
            ]
            probabilities = [1 / (1 + np.exp(-logit)) for logit in logits]
            relevant = set(view.relevant[row].tolist())
            best = int(np.argmax(probabilities))  # the first of equal probabilities: the bi-encoder's order
            top1.append((probabilities[0], labels[0] in relevant))
            reranked.append((probabilities[best], labels[best] in relevant))
            features.append((scores[row, labels[0]], logits[0]))
        return np.array(top1), np.array(reranked), np.array(features), float(near_tie.mean())

    cal_top1, cal_reranked, cal_features, cal_tied = decisions(calibration)
    test_top1, test_reranked, test_features, test_tied = decisions(test)
    assert cal_tied == 0, "a near-tie on the calibration split could move the thresholds themselves"
    for prefix, cal, tst in (("verifier_", cal_top1, test_top1), ("verifier_rerank_", cal_reranked, test_reranked)):
        threshold = calibrate_threshold(cal[:, 0], cal[:, 1].astype(bool), 0.3)
        expected = coverage_at_threshold(tst[:, 0], tst[:, 1].astype(bool), threshold.threshold)
        assert metrics[f"{prefix}c@1_p30_threshold"] == pytest.approx(threshold.threshold, rel=1e-4)
        assert metrics[f"{prefix}c@1_p30"] == pytest.approx(expected.coverage, abs=test_tied + 1e-9)
        assert metrics[f"{prefix}p@1"] == pytest.approx(tst[:, 1].mean(), abs=test_tied + 1e-9)
    assert metrics["verifier_p@1"] == metrics["p@1"], "scoring the top-1 alone must not change the ranking"
    # verifier_combined: a logistic regression on (cosine, verifier logit) of the top-1, fitted on calibration alone.
    cal_correct, test_correct = cal_top1[:, 1].astype(bool), test_top1[:, 1].astype(bool)
    fitted = fit_logistic_regression(cal_features, cal_correct)
    threshold = calibrate_threshold(fitted(cal_features), cal_correct, 0.3)
    expected = coverage_at_threshold(fitted(test_features), test_correct, threshold.threshold)
    assert metrics["verifier_combined_c@1_p30_threshold"] == pytest.approx(threshold.threshold, rel=1e-4)
    assert metrics["verifier_combined_c@1_p30"] == pytest.approx(expected.coverage, abs=test_tied + 1e-9)
    assert metrics["verifier_combined_p@1"] == metrics["p@1"]
    assert (
        evaluator.last_reports["verifier_combined"].cost_ms_per_query
        > evaluator.last_reports["cosine"].cost_ms_per_query
    )
