"""Coverage evaluation end to end: hand-computed figures, the same numbers through every entry point, the trainer,
the model card, the report files and the command."""

from __future__ import annotations

import json
import logging
import math
import subprocess
import sys
import warnings
from dataclasses import replace
from pathlib import Path

import evaluate
import numpy as np
import pytest
from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments

from alc_hf import TCMLoss
from alc_hf.cli import main as cli_main
from alc_hf.core.metrics import ScoreShiftWarning, calibrate_threshold, coverage_at_threshold, opis, precision_at_k
from alc_hf.core.retrieval import LabelIndex
from alc_hf.data import EvaluationView, RaggedIds, builtin_catalog, evaluation_view, table_split
from alc_hf.data.loading import load_evaluation_views
from alc_hf.data.rows import training_rows
from alc_hf.evaluation import COVERAGE_METRIC_PATH, CoverageEvaluator, coverage_report, plot_report, predict_split
from alc_hf.evaluation.outputs import write_reports
from tests.conftest import SHARED_DATA

WDC_DIR = SHARED_DATA / "wdc_block_small"


class FixedEmbeddings:
    """A stand-in encoder whose embedding of each text is given, so every score is known exactly."""

    def __init__(self, vectors: dict[str, np.ndarray]) -> None:
        self.vectors = vectors

    def encode_query(self, texts, **_) -> np.ndarray:
        return np.stack([self.vectors[text] for text in texts]).astype(np.float32)

    encode_document = encode_query


def at_angle(degrees: float) -> np.ndarray:
    return np.array([math.cos(math.radians(degrees)), math.sin(math.radians(degrees))])


def hand_made_views() -> tuple[FixedEmbeddings, EvaluationView, EvaluationView]:
    # Four labels on the axes. A query at angle a (0 < a < 45) ranks "east" first with score cos(a), "north" second.
    corpus = ["east", "north", "west", "south"]
    vectors = {name: at_angle(90 * i) for i, name in enumerate(corpus)}

    def split(prefix: str, cosines: list[float], relevant: list[list[int]]) -> EvaluationView:
        queries = [f"{prefix}{i}" for i in range(len(cosines))]
        vectors.update({q: at_angle(math.degrees(math.acos(c))) for q, c in zip(queries, cosines, strict=True)})
        return EvaluationView(queries, corpus, RaggedIds.from_lists(relevant), np.zeros((0, 2), np.int64))

    # Calibration top-1 ("east") scores 0.99 right, 0.95 right, 0.9 wrong, 0.8 right.
    calibration = split("c", [0.99, 0.95, 0.9, 0.8], [[0], [0], [1], [0]])
    # Test: 0.99 with no match at all (open set), 0.97 right, 0.96 wrong, 0.94 right, 0.85 right.
    test = split("t", [0.99, 0.97, 0.96, 0.94, 0.85], [[], [0], [1], [0], [0]])
    return FixedEmbeddings(vectors), calibration, test


def test_figures_match_a_hand_computed_case():
    model, calibration, test = hand_made_views()
    evaluator = CoverageEvaluator(calibration, test, target_precisions=(0.9, 0.75, 0.6), precision_at_k=(1, 2))
    metrics = evaluator.compute_report(model).metrics()
    # Calibration precision at thresholds 0.99, 0.95, 0.9, 0.8: 1/1, 2/2, 2/3, 3/4.
    # 90%: the smallest threshold reaching it is 0.95. On test it accepts 0.99 (wrong), 0.97, 0.96 (wrong).
    assert metrics["c@1_p90_threshold"] == pytest.approx(0.95, abs=1e-6)
    assert metrics["c@1_p90"] == pytest.approx(3 / 5)
    assert metrics["c@1_p90_precision"] == pytest.approx(1 / 3)
    # Test precision at thresholds 0.99 .. 0.85 is 0, 1/2, 1/3, 2/4, 3/5: 90% is out of reach on test.
    assert metrics["c@1_p90_oracle"] == 0.0 and metrics["c@1_p90_oracle_threshold"] == math.inf
    # 75%: calibrated at 0.8 (3/4), which accepts every test query.
    assert metrics["c@1_p75_threshold"] == pytest.approx(0.8, abs=1e-6)
    assert (metrics["c@1_p75"], metrics["c@1_p75_precision"]) == (pytest.approx(1.0), pytest.approx(3 / 5))
    assert metrics["c@1_p60_oracle"] == pytest.approx(1.0)
    assert metrics["c@1_p60_oracle_threshold"] == pytest.approx(0.85, abs=1e-6)
    # P@1 over all five test queries (the open-set one counts as wrong); P@2 adds the wrong query's "north".
    assert metrics["p@1"] == pytest.approx(3 / 5)
    assert metrics["p@2"] == pytest.approx((3 + 1) / (2 * 5))
    assert metrics["calibration_p@1"] == pytest.approx(3 / 4)
    assert evaluator.primary_metric == "c@1_p90"


def test_candidate_views_rank_only_the_candidates_and_count_every_query():
    model, calibration, test = hand_made_views()
    # Test queries may only be matched to "north" or "west": the open-set query's best candidate is "north".
    only = RaggedIds.from_lists([[1, 2]] * len(test.queries))
    blocked = EvaluationView(test.queries, test.corpus, test.relevant, test.filter_pairs, candidates=only)
    report = CoverageEvaluator(calibration, blocked, precision_at_k=(1,)).compute_report(model)
    assert report.test.num_queries == 5 and report.test.num_with_match == 4
    # Only the query whose match is "north" is right now.
    assert report.test.precision_at[1] == pytest.approx(1 / 5)


def test_filter_pairs_remove_predictions_before_any_figure():
    model, calibration, test = hand_made_views()
    # Filtering (query 2, "east") makes its top-1 "north", its true match.
    filtered = EvaluationView(test.queries, test.corpus, test.relevant, np.array([[2, 0]]))
    report = CoverageEvaluator(calibration, filtered, precision_at_k=(1,)).compute_report(model)
    assert report.test.precision_at[1] == pytest.approx(4 / 5)


@pytest.fixture(scope="module")
def small_catalog_views():
    calibration = builtin_catalog(split="val", num_products=300)
    test = builtin_catalog(split="tst", num_products=300)
    return evaluation_view(calibration), evaluation_view(test)


def test_functions_evaluate_module_and_evaluator_report_the_same_numbers(tiny_model, small_catalog_views):
    calibration, test = small_catalog_views
    evaluator = CoverageEvaluator(calibration, test, target_precisions=(0.5, 0.9), batch_size=128)
    metrics = evaluator(tiny_model)

    # The plain functions, from embeddings computed here.
    def embed(texts):
        return tiny_model.encode(texts, convert_to_numpy=True, normalize_embeddings=True)

    index = LabelIndex(embed(test.corpus))
    top1 = {}
    for name, view in (("calibration", calibration), ("test", test)):
        found = index.search(embed(view.queries), 5, filter_pairs=view.filter_pairs)
        correct = np.array([found.ids[q, 0] in set(view.relevant[q].tolist()) for q in range(len(view.queries))])
        top1[name] = (found.scores[:, 0], correct)
        if name == "test":
            assert metrics["p@1"] == pytest.approx(precision_at_k(found.ids, view.relevant, 1), abs=1e-12)
            assert metrics["p@5"] == pytest.approx(precision_at_k(found.ids, view.relevant, 5), abs=1e-12)
    module = evaluate.load(COVERAGE_METRIC_PATH)
    from_module = module.compute(
        predictions=top1["test"][0].tolist(),
        references=top1["test"][1].astype(int).tolist(),
        calibration_predictions=top1["calibration"][0].tolist(),
        calibration_references=top1["calibration"][1].astype(int).tolist(),
        target_precisions=[0.5, 0.9],
    )
    for target, name in ((0.5, "c@1_p50"), (0.9, "c@1_p90")):
        calibrated = calibrate_threshold(*top1["calibration"], target)
        applied = coverage_at_threshold(*top1["test"], calibrated.threshold)
        oracle = calibrate_threshold(*top1["test"], target)
        expected = {
            name: applied.coverage,
            f"{name}_precision": applied.precision,
            f"{name}_threshold": calibrated.threshold,
            f"{name}_oracle": oracle.coverage,
            f"{name}_oracle_threshold": oracle.threshold,
        }
        for key, value in expected.items():
            np.testing.assert_allclose(metrics[key], value, rtol=1e-6, err_msg=key)
            np.testing.assert_allclose(from_module[key], value, rtol=1e-6, err_msg=f"evaluate module {key}")
    assert 0 < metrics["c@1_p50"] <= 1


def test_evaluate_module_without_calibration_reports_the_oracle_only():
    module = evaluate.load(COVERAGE_METRIC_PATH)
    result = module.compute(predictions=[0.9, 0.8, 0.7, 0.6], references=[1, 1, 0, 1], target_precisions=[0.75])
    assert result == {"c@1_p75_oracle": 1.0, "c@1_p75_oracle_threshold": pytest.approx(0.6)}


def test_training_logs_coverage_and_writes_it_into_the_model_card(tiny_model, small_catalog_views, tmp_path):
    calibration, test = small_catalog_views
    evaluator = CoverageEvaluator(calibration, test, target_precisions=(0.4, 0.9), name="catalog", batch_size=128)
    rows = training_rows(builtin_catalog(split="trn", num_products=300)).select(range(256))
    args = SentenceTransformerTrainingArguments(
        output_dir=str(tmp_path / "run"),
        max_steps=4,
        per_device_train_batch_size=32,
        eval_strategy="steps",
        eval_steps=4,
        logging_steps=2,
        report_to="none",
        save_strategy="no",
        use_cpu=True,
        seed=0,
    )
    trainer = SentenceTransformerTrainer(
        model=tiny_model,
        args=args,
        train_dataset=rows.select_columns(["anchor", "positive", "label"]),
        loss=TCMLoss(tiny_model),
        evaluator=evaluator,
    )
    trainer.train()
    logged = [entry for entry in trainer.state.log_history if "eval_catalog_c@1_p40" in entry]
    assert logged, f"no coverage in the log history: {trainer.state.log_history}"
    coverage = logged[-1]["eval_catalog_c@1_p40"]
    assert 0.0 < coverage <= 1.0
    tiny_model.save_pretrained(str(tmp_path / "model"))
    card = (tmp_path / "model" / "README.md").read_text()
    assert "catalog_c@1_p40" in card and "Coverage at a calibrated threshold" in card
    assert f"{coverage:.4f}" in card


def test_command_prints_the_table_and_writes_json_and_png(tiny_model, tmp_path, capsys):
    tiny_model.save_pretrained(str(tmp_path / "model"))
    assert cli_main(["evaluate", str(tmp_path / "model"), "--output_dir", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    assert "C@1" in printed and "P@1" in printed and "oracle" in printed
    # Each progress bar is preceded by what it embeds.
    catalog = builtin_catalog(split="tst")
    assert f"Embedding {len(catalog.labels):,} labels ...\n" in printed
    assert f"Embedding {len(catalog.queries):,} test queries ...\n" in printed
    report = json.loads((tmp_path / "out" / "coverage.json").read_text())
    assert report["splits"]["test"]["num_queries"] == len(builtin_catalog(split="tst").queries)
    assert {"c@1_p90", "c@1_p95", "c@1_p90_precision", "c@1_p90_oracle", "p@1", "p@5"} <= set(report["metrics"])
    assert (tmp_path / "out" / "coverage.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list((tmp_path / "out").glob(".*.tmp")), "a temporary file was left behind"


def test_console_script_reports_bad_input_without_a_traceback(tmp_path):
    script = Path(sys.executable).with_name("alc-hf")
    result = subprocess.run([str(script), "evaluate", "--data", "wdc"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "needs a data_dir" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.shared_data
def test_wdc_block_view_counts_queries_without_a_match(tiny_model):
    calibration = evaluation_view(table_split(WDC_DIR, split="valid"), candidates="labelled")
    test = evaluation_view(table_split(WDC_DIR, split="test"), candidates="labelled")
    report = CoverageEvaluator(calibration, test, batch_size=256).compute_report(tiny_model)
    assert (report.test.num_queries, report.test.num_with_match) == (1000, 500)
    # Half the test queries have no match: at most half can be right.
    assert report.test.precision_at[1] <= 0.5
    assert all(result.test.num_predictions == 1000 for result in report.coverage[1])


@pytest.mark.shared_data
def test_wdc_views_by_name():
    calibration, test = load_evaluation_views(WDC_DIR, "wdc")  # block view by default
    assert (len(calibration.queries), len(test.queries)) == (3535, 1000)
    assert test.candidates is not None
    calibration, test = load_evaluation_views(WDC_DIR, "wdc", view="corpus")  # the README's catalog view
    assert (len(calibration.queries), len(test.queries)) == (2001, 500)
    assert test.candidates is None and len(test.corpus) == 5000
    assert (test.relevant.lengths() > 0).all()


def test_bad_input_is_a_clear_error(small_catalog_views):
    model, calibration, test = hand_made_views()
    missing = EvaluationView(
        test.queries, test.corpus, RaggedIds.from_lists([[], [0], [7], [0], [0]]), test.filter_pairs
    )
    with pytest.raises(ValueError, match="query 2 has a relevant label index outside the corpus"):
        CoverageEvaluator(calibration, missing)
    empty = EvaluationView([], test.corpus, RaggedIds.from_lists([]), test.filter_pairs)
    with pytest.raises(ValueError, match="calibration split has no query"):
        CoverageEvaluator(empty, test)
    for target in (0.0, 1.5, -0.1):
        with pytest.raises(ValueError, match=r"target precision must be in \(0, 1\]"):
            CoverageEvaluator(calibration, test, target_precisions=(target,))
    with pytest.raises(ValueError, match="calibration_method must be one of"):
        CoverageEvaluator(calibration, test, calibration_method="bootstrap")


def test_an_unreachable_target_is_reported_not_a_crash(tmp_path, caplog):
    model, calibration, test = hand_made_views()
    report = CoverageEvaluator(calibration, test, target_precisions=(1.0,), precision_at_k=(1,)).compute_report(model)
    # 1.0 is reached on calibration at 0.95 (two right), so the honest figure exists; on test it does not.
    result = report.coverage[1][0]
    assert result.calibrated.reachable and not result.oracle.reachable
    assert "unreached" in report.table()
    written = json.loads(report.write_json(tmp_path / "r.json").read_text())
    assert written["coverage_at"]["1"][0]["oracle_threshold"] is None


def test_report_keeps_splits_apart(small_catalog_views, tiny_model):
    calibration, test = small_catalog_views
    k = 5
    index = LabelIndex(tiny_model.encode(test.corpus, convert_to_numpy=True, normalize_embeddings=True))
    calibration_predictions = predict_split(
        calibration, tiny_model.encode(calibration.queries, normalize_embeddings=True), index, k, "valid"
    )
    test_predictions = predict_split(test, tiny_model.encode(test.queries, normalize_embeddings=True), index, k, "tst")
    report = coverage_report(calibration_predictions, test_predictions, coverage_at_k=(1, 5))
    assert report.calibration.name == "valid" and report.test.name == "tst"
    assert set(report.coverage) == {1, 5}
    # C@5 counts all five recommendations of every query.
    assert report.coverage[5][0].test.num_predictions == 5 * len(test.queries)


def test_opis_over_label_groups(small_catalog_views, tiny_model):
    calibration, test = small_catalog_views
    index = LabelIndex(tiny_model.encode(test.corpus, convert_to_numpy=True, normalize_embeddings=True))
    predictions = [
        predict_split(view, tiny_model.encode(view.queries, normalize_embeddings=True), index, 5, name)
        for view, name in ((calibration, "valid"), (test, "tst"))
    ]
    groups = np.arange(len(test.corpus)) % 3  # three classes of labels
    report = coverage_report(*predictions, label_groups=groups)
    # the reference: OPIS of the scored test pairs, each classed by hand through its label
    scores, correct, classes = [], [], []
    for row in range(len(test.queries)):
        for place in range(5):
            label = int(predictions[1].ids[row, place])
            if label >= 0:
                scores.append(predictions[1].scores[row, place])
                correct.append(bool(predictions[1].correct[row, place]))
                classes.append(label % 3)
    expected = opis(np.array(scores), np.array(correct), np.array(classes))
    assert report.opis.num_labels == expected.num_labels > 0
    assert report.opis.value == pytest.approx(expected.value)
    with pytest.raises(ValueError, match="label_groups has 2 entries"):
        coverage_report(*predictions, label_groups=groups[:2])


def views_with_shift(shift: float, num_queries: int = 400) -> tuple[FixedEmbeddings, EvaluationView, EvaluationView]:
    """Two splits whose top-1 ("east") cosines are drawn alike, the test split's moved up by ``shift``; a query is
    right more often the higher it scores."""
    rng = np.random.default_rng(0)
    corpus = ["east", "north"]
    vectors = {"east": at_angle(0), "north": at_angle(90)}

    def split(prefix: str, cosines: np.ndarray) -> EvaluationView:
        queries = [f"{prefix}{i}" for i in range(len(cosines))]
        vectors.update({q: at_angle(math.degrees(math.acos(c))) for q, c in zip(queries, cosines, strict=True)})
        right = rng.random(len(cosines)) < (cosines - 0.72) / 0.25
        relevant = RaggedIds.from_lists([[0] if r else [1] for r in right])
        return EvaluationView(queries, corpus, relevant, np.zeros((0, 2), np.int64))

    # Cosines above cos(45°) keep "east" first, so every top-1 score is the drawn cosine.
    calibration = split("c", rng.uniform(0.72, 0.92, num_queries))
    test = split("t", rng.uniform(0.72, 0.92, num_queries) + shift)
    return FixedEmbeddings(vectors), calibration, test


def test_a_shifted_test_split_is_flagged_everywhere(tmp_path, caplog, monkeypatch):
    model, calibration, test = views_with_shift(0.05)
    evaluator = CoverageEvaluator(calibration, test, target_precisions=(0.6, 0.8), precision_at_k=(1,))
    with pytest.warns(ScoreShiftWarning, match="the calibrated thresholds may not give their precision on test"):
        with caplog.at_level(logging.WARNING, logger="alc_hf.evaluation.evaluator"):
            report = evaluator.compute_report(model)
    assert any("accept score cosine" in r.getMessage() and "KS statistic" in r.getMessage() for r in caplog.records)
    shift = report.score_shift
    assert shift.warning
    # The shares are the coverage each calibrated threshold gives on each split.
    for index, result in enumerate(report.coverage[1]):
        assert shift.calibration_share_above[index] == pytest.approx(result.calibrated.coverage)
        assert shift.test_share_above[index] == pytest.approx(result.test.coverage)
    written = json.loads(report.write_json(tmp_path / "r.json").read_text())["score_shift"]
    assert written["score_shift_warning"] is True
    assert written["ks_statistic"] == pytest.approx(shift.statistic) and written["p_value"] < 0.01
    assert len(written["calibration_share_above"]) == len(written["test_share_above"]) == 2
    assert "WARNING: Top-1 score shift, calibration -> test: KS statistic" in report.table()
    # The plot carries the note in red, and a title naming the model and the accept score.
    import matplotlib.figure

    notes = []
    original_text = matplotlib.figure.Figure.text

    def recording_text(figure, x, y, text, *args, **kwargs):
        notes.append((text, kwargs.get("color")))
        return original_text(figure, x, y, text, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "text", recording_text)
    assert plot_report(replace(report, model="my-model"), tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"
    shift_note, title = notes
    assert shift_note[0].startswith("WARNING: the calibrated thresholds may not hold") and shift_note[1] == "red"
    assert title[0] == "my-model: accept score cosine, threshold calibrated on calibration and applied to test"


def test_splits_drawn_alike_raise_no_shift_warning(tmp_path):
    model, calibration, test = views_with_shift(0.0)
    evaluator = CoverageEvaluator(calibration, test, target_precisions=(0.6, 0.8), precision_at_k=(1,))
    with warnings.catch_warnings():
        warnings.simplefilter("error", ScoreShiftWarning)
        report = evaluator.compute_report(model)
    assert not report.score_shift.warning and report.score_shift.p_value > 0.01
    assert json.loads(report.write_json(tmp_path / "r.json").read_text())["score_shift"]["score_shift_warning"] is False
    table = report.table()
    assert "Top-1 score shift, calibration -> test: KS statistic" in table and "WARNING" not in table


def test_the_report_says_what_its_figures_do_not(tmp_path, caplog):
    from scipy.stats import binomtest

    model, calibration, test = hand_made_views()
    evaluator = CoverageEvaluator(calibration, test, target_precisions=(0.9, 0.6, 1.0), precision_at_k=(1,))
    with caplog.at_level(logging.WARNING):
        report = evaluator.compute_report(model)
    # The warning names the scores and the split it is about: here test, for the oracle.
    assert (
        "no threshold reaches precision 1.000 (empirical) on the 5 test predictions (accept score cosine, C@1), for "
        "the oracle threshold: accepting nothing"
    ) in [record.getMessage() for record in caplog.records]

    def interval(correct: int, accepted: int) -> str:
        reference = binomtest(correct, accepted).proportion_ci(confidence_level=0.95, method="exact")
        return f"[{reference.low:.3f}, {reference.high:.3f}]"

    # Calibration: 0.95 accepts 2 of 2 right (targets 0.9 and 1.0), 0.8 accepts 3 of 4 (0.6). On test the 0.95
    # threshold accepts 1 right of 3; the 0.8 threshold 3 of 5, which meets 0.6.
    few = "accepted calibration predictions (fewer than 200); their precision"
    missed = "on test, below its target: it does not hold there; the oracle coverage is then no bound on it."
    assert report.caveats() == [
        f"C@1 at 0.900: the threshold rests on 2 {few} 1.000 has the 95% interval {interval(2, 2)}, so on new "
        "traffic the precision may lie anywhere in it. Label more calibration data to narrow it.",
        f"C@1 at 0.900: the threshold reaches 0.333 {missed}",
        f"C@1 at 0.600: the threshold rests on 4 {few} 0.750 has the 95% interval {interval(3, 4)}, so on new "
        "traffic the precision may lie anywhere in it. Label more calibration data to narrow it.",
        f"C@1 at 1.000: the threshold rests on 2 {few} 1.000 has the 95% interval {interval(2, 2)}, so on new "
        "traffic the precision may lie anywhere in it. Label more calibration data to narrow it.",
        f"C@1 at 1.000: the threshold reaches 0.333 {missed}",
    ]
    table = report.table()
    assert table.startswith("Accept score: cosine\n")
    rows = {line.split()[1]: line.split() for line in table.splitlines() if line.startswith("C@1 ")}
    assert rows["0.900"][4] == "0.333!" and rows["0.600"][4] == "0.600" and rows["1.000"][4] == "0.333!"
    assert "upper bound" not in table and "the most coverage at which it reaches the target" in table
    assert "OPIS (test, 0 labels): - (no label has 5 or more matching and 1 or more non-matching" in table
    assert table.endswith("\n".join(f"NOTE: {caveat}" for caveat in report.caveats()))

    written = json.loads(report.write_json(tmp_path / "r.json").read_text())
    assert (written["accept_score"], written["model"]) == ("cosine", None)
    intervals = [entry["calibration_precision_interval_95"] for entry in written["coverage_at"]["1"]]
    assert [f"[{low:.3f}, {high:.3f}]" for low, high in intervals] == [interval(2, 2), interval(3, 4), interval(2, 2)]


def test_an_unreachable_target_and_a_large_calibration_sample_are_said_apart():
    from alc_hf.evaluation import SplitPredictions

    def split(name: str, scores: list[float], correct: list[bool]) -> SplitPredictions:
        column = np.asarray(scores).reshape(-1, 1)
        return SplitPredictions(name, np.zeros(column.shape, np.int64), column, np.asarray(correct).reshape(-1, 1), 0)

    unreachable = split("valid", [0.9, 0.8, 0.7], [False, False, True])
    large = split("valid", np.linspace(0.9, 0.5, 250).tolist(), [True] * 250)
    test = split("test", [0.85, 0.6], [True, False])
    (caveat,) = coverage_report(unreachable, test, (0.9,), (1,), accept_score="verifier").caveats()
    assert caveat == "C@1 at 0.900: no threshold reaches the target on the 3 valid predictions, so nothing is accepted."
    # 250 accepted: the threshold is precise enough to need no interval; its miss on test is still said.
    assert coverage_report(large, test, (0.9,), (1,)).caveats() == [
        "C@1 at 0.900: the threshold reaches 0.500 on test, below its target: it does not hold there; the oracle "
        "coverage is then no bound on it."
    ]


def test_reports_written_again_leave_no_stale_accept_score_beside_them(tmp_path):
    model, calibration, test = hand_made_views()
    report = CoverageEvaluator(calibration, test, precision_at_k=(1,)).compute_report(model)
    write_reports({"cosine": report, "pair_head": report, "verifier": report}, tmp_path)
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "coverage.json",
        "coverage.png",
        "coverage_pair_head.json",
        "coverage_pair_head.png",
        "coverage_verifier.json",
        "coverage_verifier.png",
    ]
    (tmp_path / "notes.txt").write_text("mine")
    written = write_reports({"verifier": report, "cosine": report}, tmp_path, model_name="m")
    assert sorted(path.name for path in written) == sorted(
        path.name for path in tmp_path.iterdir() if path.suffix != ".txt"
    )
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "coverage.json",
        "coverage.png",
        "coverage_cosine.json",
        "coverage_cosine.png",
        "notes.txt",
    ]
    assert json.loads((tmp_path / "coverage.json").read_text())["model"] == "m"
