"""``alc-hf match`` and the Matcher: the decisions equal what the coverage evaluator counts at the same threshold, the
threshold comes from the model folder (certified, else calibrated and said to be so, else refused), the catalog
index is reused and rebuilt when the catalog or the model changes, bad input is one located error that leaves no
output, and an audit sheet goes back through ``alc-hf certify --labels``."""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from alc_hf.cli import main as cli_main
from alc_hf.data import builtin_catalog, evaluation_view
from alc_hf.evaluation import CoverageEvaluator
from alc_hf.evaluation.matcher import Matcher, accept_rule
from alc_hf.losses import PairHead


def write_csv(path: Path, header: tuple[str, ...], rows: list[tuple]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
    return path


def read_decisions(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture
def catalog_traffic(tmp_path, tiny_model):
    """A saved model folder with a pair head, the built-in catalog's products as a catalog file and its test
    offers as a query file, and the evaluation view of the same data."""
    model_dir = tmp_path / "model"
    tiny_model.save_pretrained(str(model_dir))
    torch.manual_seed(3)
    PairHead(32).save_pretrained(model_dir / "pair_head")
    data = builtin_catalog(split="tst")
    view = evaluation_view(data)
    assert view.filter_pairs.size == 0  # nothing is filtered: the evaluator's top-1 is the plain search's
    catalog = write_csv(
        tmp_path / "catalog.csv", ("id", "text"), [(f"p{i}", text) for i, text in enumerate(view.corpus)]
    )
    queries = write_csv(tmp_path / "queries.csv", ("qid", "offer"), [(f"q{i}", q) for i, q in enumerate(view.queries)])
    return model_dir, catalog, queries, view


def match(model_dir: Path, catalog: Path, queries: Path, output: Path, *options: str) -> int:
    return cli_main(
        [
            "match",
            str(model_dir),
            "--catalog",
            str(catalog),
            "--queries",
            str(queries),
            "--query_id_column",
            "qid",
            "--query_column",
            "offer",
            "--output",
            str(output),
            "--per_device_eval_batch_size",
            "256",
            "--index_dir",
            str(output.parent / "indexes"),
            *options,
        ]
    )


@pytest.mark.parametrize("accept_score", ["cosine", "pair_head"])
def test_the_decisions_are_what_the_evaluator_counts_at_that_threshold(
    catalog_traffic, tiny_model, tmp_path, capsys, accept_score
):
    model_dir, catalog, queries, view = catalog_traffic
    evaluator = CoverageEvaluator(
        view, view, precision_at_k=(1,), batch_size=256, pair_head=model_dir, accept_scores=(accept_score,)
    )
    predictions = evaluator.compute_predictions(tiny_model)[accept_score][1]
    threshold = float(np.median(predictions.scores[:, 0]))
    output = tmp_path / "out" / "decisions.csv"
    assert (
        match(model_dir, catalog, queries, output, "--threshold", str(threshold), "--accept_score", accept_score) == 0
    )
    printed = capsys.readouterr().out
    decisions = read_decisions(output)
    assert [row["query_id"] for row in decisions] == [f"q{i}" for i in range(len(view.queries))]
    top1 = np.array([int(row["top1_id"][1:]) for row in decisions])
    # The same top-1, up to labels whose cosines tie within float rounding.
    differ = np.flatnonzero(top1 != predictions.ids[:, 0])
    cosines = np.asarray(evaluator_cosines(tiny_model, view, top1, predictions.ids[:, 0]))
    assert np.all(np.abs(cosines[0][differ] - cosines[1][differ]) < 1e-5), differ
    accepted = np.array([row["decision"] == "accept" for row in decisions])
    expected = predictions.scores[:, 0] >= threshold
    scores = np.array([float(row["accept_score"]) for row in decisions])
    np.testing.assert_allclose(scores, predictions.scores[:, 0], rtol=0, atol=1e-6)
    near = np.abs(predictions.scores[:, 0] - threshold) < 1e-6
    assert np.array_equal(accepted[~near], expected[~near]) and 0 < accepted.sum() < len(decisions)
    # Review rows carry the top-k a person chooses from; accepted rows do not.
    review = next(row for row in decisions if row["decision"] == "review")
    assert len(json.loads(review["candidates"])) == 5
    assert all(row["candidates"] == "" for row in decisions if row["decision"] == "accept")
    summary = json.loads(output.with_name("decisions.csv.summary.json").read_text())
    assert summary["queries"] == len(decisions) and summary["accepted"] == int(accepted.sum())
    assert summary["threshold_source"] == "given" and summary["certified_precision_lower_bound"] is None
    assert f"{len(decisions):,} queries: {int(accepted.sum()):,} accepted" in printed
    assert "No certified precision bound: the threshold is given." in printed


def evaluator_cosines(model, view, first: np.ndarray, second: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The cosines of each query with two catalog positions each."""
    queries = model.encode_query(view.queries, normalize_embeddings=True, batch_size=256)
    corpus = model.encode_document(view.corpus, normalize_embeddings=True, batch_size=256)
    rows = np.arange(len(view.queries))
    return (queries * corpus[first]).sum(1)[rows], (queries * corpus[second]).sum(1)[rows]


def test_the_threshold_comes_from_the_certification_else_the_report_else_nothing(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    with pytest.raises(ValueError, match=r"holds no threshold for cosine at precision 0\.9: no certification"):
        accept_rule(folder)
    report = {"accept_score": "cosine", "coverage_at": {"1": [{"target_precision": 0.9, "threshold": 0.71}]}}
    (folder / "coverage_after.json").write_text(json.dumps(report))
    rule = accept_rule(folder)
    assert (rule.threshold, rule.source) == (0.71, "calibrated") and "NOT certified" in rule.describe()

    def certification(accept_score: str, target: float, threshold: float | None) -> dict:
        figures = {"threshold": threshold, "labelled_precision": None if threshold is None else 0.95}
        return {
            "accept_score": accept_score,
            "target_precision": target,
            "delta": 0.05,
            "traffic": "t",
            "certification": figures,
        }

    records = [certification("cosine", 0.9, 0.8), certification("pair_head", 0.9, 0.6)]
    (folder / "certifications.json").write_text(json.dumps({"certifications": records}))
    with pytest.raises(ValueError, match=r"holds 2 certifications that fit .*choose one with --accept_score"):
        accept_rule(folder)
    rule = accept_rule(folder, accept_score="cosine")
    # What the certificate guarantees there is its target (no bound is taken where the labels chose the threshold).
    assert (rule.threshold, rule.source, rule.precision_lower_bound) == (0.8, "certified", 0.9)
    assert accept_rule(folder, threshold=0.5).source == "given"
    records = [certification("cosine", 0.95, None)]
    (folder / "certifications.json").write_text(json.dumps({"certifications": records}))
    with pytest.raises(ValueError, match=r"certified no threshold \(accept nothing\)"):
        accept_rule(folder, target_precision=0.95)
    with pytest.raises(ValueError, match=r"accept score 'combined' cannot be applied to new traffic"):
        accept_rule(folder, accept_score="combined")


def test_a_model_folder_without_a_threshold_is_refused_and_writes_nothing(catalog_traffic, tmp_path, capsys):
    model_dir, catalog, queries, _ = catalog_traffic
    output = tmp_path / "out" / "decisions.csv"
    assert match(model_dir, catalog, queries, output) == 2
    assert "holds no threshold for cosine at precision 0.9" in capsys.readouterr().err
    assert not output.exists() and not list(output.parent.glob(".*")) if output.parent.exists() else True


def test_the_index_is_reused_and_rebuilt_when_the_catalog_or_the_model_changes(catalog_traffic, tiny_model, tmp_path):
    model_dir, catalog, _, view = catalog_traffic
    ids, texts = [f"p{i}" for i in range(len(view.corpus))], list(view.corpus)
    cache = tmp_path / "indexes"

    def index(model_folder: Path, catalog_texts: list[str]) -> tuple[bool, Matcher]:
        matcher = Matcher.from_model_dir(model_folder, threshold=0.5, batch_size=256)
        return matcher.index(ids, catalog_texts, cache), matcher

    assert index(model_dir, texts)[0] is False and len(list(cache.iterdir())) == 1
    reused, matcher = index(model_dir, texts)
    assert reused is True and matcher.index_kind == "flat"
    fresh = Matcher(tiny_model, matcher.rule, batch_size=256)
    fresh.index(ids, texts)
    np.testing.assert_array_equal(matcher.match(view.queries[:50]).ids, fresh.match(view.queries[:50]).ids)
    # A product renamed: another catalog, another index.
    assert index(model_dir, [texts[0] + " v2", *texts[1:]])[0] is False and len(list(cache.iterdir())) == 2
    # The card and the certifications change nothing; the weights do.
    (model_dir / "README.md").write_text("# a new card\n")
    assert index(model_dir, texts)[0] is True
    other = tmp_path / "other_model"
    shutil.copytree(model_dir, other)
    with torch.no_grad():
        fresh.model[0].auto_model.embeddings.word_embeddings.weight.mul_(1.01)
    fresh.model.save_pretrained(str(other))
    assert index(other, texts)[0] is False and len(list(cache.iterdir())) == 3


@pytest.mark.parametrize(
    ("catalog_rows", "query_rows", "message"),
    [
        ([("p1", "a"), ("p2", "b"), ("p1", "c")], None, r"catalog\.csv:4: column 'id': id 'p1' is already the id of "),
        ([("p1", "a"), ("", "b")], None, r"catalog\.csv:3: column 'id': expected an id, found ''"),
        (None, [("q1", "red shoe"), ("q2", "")], r"queries\.csv:3: column 'offer': expected a non-empty text"),
    ],
)
def test_bad_input_is_one_located_error_and_leaves_no_output(
    catalog_traffic, tmp_path, capsys, catalog_rows, query_rows, message
):
    model_dir, catalog, queries, _ = catalog_traffic
    if catalog_rows is not None:
        catalog = write_csv(tmp_path / "catalog.csv", ("id", "text"), catalog_rows)
    if query_rows is not None:
        queries = write_csv(tmp_path / "queries.csv", ("qid", "offer"), query_rows * 3000)
    output = tmp_path / "out" / "decisions.parquet"
    assert match(model_dir, catalog, queries, output, "--threshold", "0.5", "--chunk_size", "1000") == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(errors) == 1 and re.search(message, errors[0]), errors
    leftovers = list(output.parent.iterdir()) if output.parent.exists() else []
    assert not [path for path in leftovers if path.name.startswith(("decisions", ".decisions"))], leftovers


def test_the_catalog_can_be_a_dataset_folders_labels(tmp_path, tiny_model, capsys):
    """``--data tables --data_dir`` instead of ``--catalog``: tableB is the catalog, its products known by position."""
    from tests.test_readers import TABLE_A, TABLE_B, TEST, TRAIN, VALID, make_tables

    folder = tmp_path / "tables"
    folder.mkdir()
    make_tables(folder, TABLE_A, TABLE_B, TRAIN, VALID, TEST)
    model_dir = tmp_path / "model"
    tiny_model.save_pretrained(str(model_dir))
    queries = write_csv(tmp_path / "queries.csv", ("id", "text"), [("q1", "sony wh-1000xm3"), ("q2", "jabra evolve")])
    output = tmp_path / "out" / "decisions.csv"
    arguments = ["match", str(model_dir), "--data", "tables", "--data_dir", str(folder), "--queries", str(queries)]
    arguments += ["--output", str(output), "--threshold", "0.0", "--index_dir", str(tmp_path / "indexes")]
    assert cli_main(arguments) == 0
    decisions = read_decisions(output)
    assert [row["query_id"] for row in decisions] == ["q1", "q2"]
    assert all(row["top1_id"] in {"0", "1", "2", "3", "4"} for row in decisions)
    assert cli_main(["match", str(model_dir), "--queries", str(queries), "--threshold", "0.5"]) == 2
    assert "match needs --catalog (or --data and --data_dir)" in capsys.readouterr().err


def test_each_output_format_holds_the_same_decisions(catalog_traffic, tmp_path):
    import pyarrow.parquet as pq

    model_dir, catalog, queries, _ = catalog_traffic
    outputs = {suffix: tmp_path / "out" / f"decisions{suffix}" for suffix in (".csv", ".jsonl", ".parquet")}
    for output in outputs.values():
        assert match(model_dir, catalog, queries, output, "--threshold", "0.6", "--chunk_size", "128") == 0
    as_csv = read_decisions(outputs[".csv"])
    as_jsonl = [json.loads(line) for line in outputs[".jsonl"].read_text().splitlines()]
    as_parquet = pq.read_table(outputs[".parquet"]).to_pylist()
    for rows in (as_jsonl, as_parquet):
        assert [(r["query_id"], r["top1_id"], r["decision"]) for r in rows] == [
            (r["query_id"], r["top1_id"], r["decision"]) for r in as_csv
        ]


def test_an_audit_sheet_goes_back_through_certify_and_a_shift_is_flagged(catalog_traffic, tmp_path, capsys):
    model_dir, catalog, queries, view = catalog_traffic
    # A certification whose traffic scored far higher than this traffic will: the shift must be flagged.
    figures = {
        "threshold": 0.5,
        "labelled_precision": 0.97,
        "num_labelled": 100,
        "num_labelled_accepted": 90,
        "num_predictions": 1000,
        "num_accepted": 400,
        "coverage": 0.4,
        "region_threshold": 0.3,
    }
    record = {
        "accept_score": "cosine",
        "target_precision": 0.9,
        "delta": 0.05,
        "traffic": "last month",
        "sheet": "/elsewhere/labels.csv",
        "certified_at": "2026-11-06 10:00:00 UTC",
        "certification": figures,
        "reference_scores": list(np.linspace(0.95, 1.0, 101)),
    }
    (model_dir / "certifications.json").write_text(json.dumps({"certifications": [record]}))
    output = tmp_path / "out" / "decisions.csv"
    assert match(model_dir, catalog, queries, output, "--audit", "20") == 0
    printed = capsys.readouterr().out
    assert "certified on last month: precision at least 0.9 with probability 95%" in printed
    assert "WARNING: " in printed and "Re-certify before trusting the threshold." in printed
    sheet = tmp_path / "out" / "decisions.audit.csv"
    with open(sheet, newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    decisions = {row["query"]: row for row in read_decisions(output)}
    assert len(rows) == 21 and all(decisions[row[2]]["decision"] == "accept" for row in rows[1:])
    # The ground truth plays the person who checks the accepted decisions.
    truth = {q: {view.corpus[j] for j in view.relevant[i]} for i, q in enumerate(view.queries)}
    for row in rows[1:]:
        row[5] = "1" if row[3] in truth[row[2]] else "0"
    write_csv(sheet, tuple(rows[0]), rows[1:])
    assert cli_main(["certify", "--labels", str(sheet)]) == 0
    said = capsys.readouterr().out
    assert "Certified" in said or "No threshold is certified" in said
    certifications = json.loads((model_dir / "certifications.json").read_text())["certifications"]
    assert [c["traffic"] for c in certifications] == ["last month", "the queries decided into decisions.csv"]


def test_two_processes_write_the_file_one_process_writes(catalog_traffic, tmp_path):
    """Under torchrun (gloo, two CPU processes) the chunks are shared out and merged in input order."""
    import os
    import subprocess
    import sys

    model_dir, catalog, queries, _ = catalog_traffic
    options = ["--threshold", "0.6", "--chunk_size", "100", "--per_device_eval_batch_size", "256"]
    options += ["--query_id_column", "qid", "--query_column", "offer", "--index_dir", str(tmp_path / "indexes")]
    one = tmp_path / "one" / "decisions.csv"
    two = tmp_path / "two" / "decisions.csv"
    arguments = ["match", str(model_dir), "--catalog", str(catalog), "--queries", str(queries), *options]
    assert cli_main([*arguments, "--output", str(one)]) == 0
    environment = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29541"]
    command += ["-m", "alc_hf.cli", *arguments, "--output", str(two)]
    completed = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-4000:]
    single, merged = read_decisions(one), read_decisions(two)
    assert [row["query_id"] for row in merged] == [row["query_id"] for row in single]
    assert [(row["top1_id"], row["decision"]) for row in merged] == [
        (row["top1_id"], row["decision"]) for row in single
    ]
    np.testing.assert_allclose(
        [float(row["accept_score"]) for row in merged], [float(row["accept_score"]) for row in single], atol=1e-6
    )
    assert not list((tmp_path / "two").glob(".*")), "the shards were left behind"
    summary = json.loads(two.with_name("decisions.csv.summary.json").read_text())
    assert summary["queries"] == len(single)


def test_an_approximate_index_finds_the_exact_top1_and_is_saved_under_its_own_settings(catalog_traffic, tmp_path):
    model_dir, _, _, view = catalog_traffic
    ids = [f"p{i}" for i in range(len(view.corpus))]
    exact = Matcher.from_model_dir(model_dir, threshold=0.5, batch_size=256)
    exact.index(ids, view.corpus, tmp_path / "indexes", kind="flat")
    approximate = Matcher.from_model_dir(model_dir, threshold=0.5, batch_size=256)
    assert approximate.index(ids, view.corpus, tmp_path / "indexes", kind="ivf") is False  # not the flat one
    assert approximate.index_kind == "ivf" and len(list((tmp_path / "indexes").iterdir())) == 2
    found, truth = approximate.match(view.queries), exact.match(view.queries)
    agree = (found.ids[:, 0] == truth.ids[:, 0]) | (np.abs(found.scores[:, 0] - truth.scores[:, 0]) < 1e-5)
    assert agree.mean() >= 0.95
    reloaded = Matcher.from_model_dir(model_dir, threshold=0.5, batch_size=256)
    assert reloaded.index(ids, view.corpus, tmp_path / "indexes", kind="ivf") is True
    np.testing.assert_array_equal(reloaded.match(view.queries).ids, found.ids)


def test_the_int8_export_smooths_exactly_and_quantizes_every_linear_layer_but_the_down_projections(
    tiny_model, tmp_path
):
    import onnx
    import torch

    from alc_hf.models.onnx_encoder import OnnxEncoder, _smoothed

    texts = ["red cotton shirt size m", "usb c cable 2 m", "a"]
    features = tiny_model.tokenizer(texts, padding=True, return_tensors="pt")
    auto_model = tiny_model[0].auto_model.eval()
    smoothed = _smoothed(auto_model, tiny_model.tokenizer)
    with torch.no_grad():
        expected, found = auto_model(**features).last_hidden_state, smoothed(**features).last_hidden_state
    torch.testing.assert_close(found, expected, atol=1e-5, rtol=1e-5)  # the same function, rescaled
    scaled = [module for module in smoothed.modules() if hasattr(module, "inverse_scale")]
    assert scaled and not all(torch.allclose(module.inverse_scale, torch.ones(1)) for module in scaled)

    OnnxEncoder.from_sentence_transformer(tiny_model, "onnx-int8", tmp_path, "fingerprint")
    (exported,) = tmp_path.glob("encoder-*/encoder.onnx")
    graph = onnx.load(str(exported)).graph
    layers = tiny_model[0].auto_model.encoder.layer
    linear_per_layer = [m for m in layers[0].modules() if isinstance(m, torch.nn.Linear)]
    down = [m for m in linear_per_layer if m.in_features > m.out_features]
    assert len(down) == 1  # the feed-forward block's second layer
    operations = [node.op_type for node in graph.node]
    assert operations.count("MatMulInteger") == len(layers) * (len(linear_per_layer) - 1)
    weights = {initializer.name: tuple(initializer.dims) for initializer in graph.initializer}
    float_linear = [
        weights[node.input[1]] for node in graph.node if node.op_type == "MatMul" and node.input[1] in weights
    ]
    assert float_linear == [(down[0].in_features, down[0].out_features)] * len(layers)


def test_the_onnx_backends_embed_as_torch_does_and_a_certificate_holds_for_its_backend_only(
    catalog_traffic, tiny_model, tmp_path, capsys
):
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules.pooling import Pooling

    from alc_hf.models.onnx_encoder import OnnxEncoder

    model_dir, catalog, queries, view = catalog_traffic
    texts = list(view.queries[:200])
    expected = tiny_model.encode_query(texts, normalize_embeddings=True, batch_size=64)
    fp32 = OnnxEncoder.from_sentence_transformer(tiny_model, "onnx", tmp_path / "cache", "fingerprint")
    np.testing.assert_allclose(fp32.encode_query(texts, batch_size=64, normalize_embeddings=True), expected, atol=1e-5)
    int8 = OnnxEncoder.from_sentence_transformer(tiny_model, "onnx-int8", tmp_path / "cache", "fingerprint")
    cosines = (int8.encode_query(texts, batch_size=64, normalize_embeddings=True) * expected).sum(axis=1)
    assert cosines.min() > 0.99  # close; that it is quantized, the int8 export's own test checks
    other = SentenceTransformer(modules=[tiny_model[0], Pooling(32, pooling_mode="max")])
    with pytest.raises(ValueError, match=r"this model is Transformer -> Pooling \(pooling max\): use --backend torch"):
        OnnxEncoder.from_sentence_transformer(other, "onnx", tmp_path / "cache", "other")

    # Certified on onnx-int8 scores: match on torch scores is refused, on onnx-int8 it runs.
    sheet = tmp_path / "certification" / "labels.csv"
    step_1 = [str(model_dir), "--split", "tst", "--budget", "60", "--sheet", str(sheet), "--backend", "onnx-int8"]
    assert cli_main(["certify", *step_1, "--index_dir", str(tmp_path / "cache"), "--target_precision", "0.3"]) == 0
    truth = {q: {view.corpus[j] for j in view.relevant[i]} for i, q in enumerate(view.queries)}
    with open(sheet, newline="", encoding="utf-8") as handle:
        header, *rows = list(csv.reader(handle))
    write_csv(sheet, tuple(header), [[*row[:5], "1" if row[3] in truth[row[2]] else "0"] for row in rows])
    assert cli_main(["certify", "--labels", str(sheet)]) == 0
    record = json.loads((model_dir / "certifications.json").read_text())["certifications"][-1]
    assert record["backend"] == "onnx-int8"
    # A certified threshold on onnx-int8 scores (the tiny model may certify nothing: the record is made so).
    record["certification"].update(threshold=0.5, labelled_precision=0.95, census=False)
    (model_dir / "certifications.json").write_text(json.dumps({"certifications": [record]}))
    capsys.readouterr()
    output = tmp_path / "out" / "decisions.csv"
    assert match(model_dir, catalog, queries, output) == 2
    assert "certified on scores computed with --backend onnx-int8, and this run computes them with --backend torch" in (
        capsys.readouterr().err
    )
    assert (
        match(model_dir, catalog, queries, output, "--backend", "onnx-int8", "--index_dir", str(tmp_path / "cache"))
        == 0
    )
    assert "certified on" in capsys.readouterr().out and len(read_decisions(output)) == len(view.queries)
