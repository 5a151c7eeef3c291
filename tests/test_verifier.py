"""The cross-encoder verifier: its training pairs, training, saving and loading, and the checks before any work."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import Dataset
from sentence_transformers import CrossEncoder
from torch import nn

from alc_hf.data import QueryLabelData, RaggedIds
from alc_hf.models.verifier import check_verifier, initial_verifier, load_verifier, verifier_probabilities
from alc_hf.training.verifier import (
    mined_negative_pairs,
    resolve_pos_weight,
    train_verifier,
    truncated_pair_share,
    verifier_pairs,
)
from tests.tiny_model import build_tiny_encoder_files
from tests.verifier_ddp_check import equality_pairs

# Cosines closer than this are a near-tie whose order depends on summation order (LabelIndex promises ~1e-6).
TIE_TOLERANCE = 1e-5


def pair_data() -> QueryLabelData:
    """Queries with one or several positives or none, labelled negatives, filter pairs, a label text listed twice
    (0 and 8, one copy a positive of query 0 and the other its labelled negative) and a query text listed twice
    (0 and 5)."""
    labels = [
        "black usb cable",
        "white usb cable",
        "red phone case",
        "blue phone case",
        "black laptop drive",
        "white laptop",
        "mini usb drive",
        "pro max phone",
        "black usb cable",
        "red mini case",
        "blue usb drive",
        "max laptop pro",
    ]
    return QueryLabelData(
        queries=[
            "usb cable black",
            "phone case",
            "laptop drive black",
            "pro max phone red",
            "mini usb drive",
            "usb cable black",
        ],
        labels=labels,
        positives=RaggedIds.from_lists([[0], [2, 3], [4], [], [6], [0]]),
        negatives=RaggedIds.from_lists([[1, 8], [], [5, 6], [7], [0], []]),
        filter_pairs=np.array([[4, 1], [0, 9], [2, 5], [3, 2]]),
        source="pairs",
    )


def as_rows(pairs: Dataset) -> list[tuple[str, str, float]]:
    return list(zip(pairs["query"], pairs["label"], pairs["score"], strict=True))


def test_pairs_are_positives_labelled_and_mined_negatives_once_each(tiny_model, caplog):
    data = pair_data()
    mined = mined_negative_pairs(data, tiny_model, 2)
    with caplog.at_level(logging.WARNING, logger="alc_hf.training.verifier"):
        pairs = verifier_pairs(data, tiny_model, num_mined=2)
    assert pairs.column_names == ["query", "label", "score"]

    # Slow reference: one row per (query text, label text); positives first, so a text pair that is also a negative
    # stays positive.
    expected: dict[tuple[str, str], float] = {}
    conflicts = 0
    candidates = [(q, label, 1.0) for q in range(data.num_queries) for label in data.positives[q]]
    candidates += [(q, label, 0.0) for q in range(data.num_queries) for label in data.negatives[q]]
    candidates += [(q, label, 0.0) for q, label in mined.tolist()]
    for q, label, score in candidates:
        key = (data.queries[q], data.labels[label])
        conflicts += score == 0.0 and expected.get(key) == 1.0
        expected.setdefault(key, score)
    rows = as_rows(pairs)
    assert len(rows) == len(expected)
    assert {(query, label): score for query, label, score in rows} == expected
    # Label 8, a labelled negative of query 0, has the text of its positive (label 0): dropped as a conflict.
    assert conflicts >= 1
    assert f"{conflicts} negative pair(s) have the same query and label texts as a positive" in caplog.text


def test_mined_negatives_are_the_bi_encoders_top_allowed_labels(tiny_model):
    data = pair_data()
    queries = tiny_model.encode_query(data.queries, convert_to_numpy=True).astype(np.float64)
    labels = tiny_model.encode_document(data.labels, convert_to_numpy=True).astype(np.float64)
    cosines = (queries / np.linalg.norm(queries, axis=1, keepdims=True)) @ (
        labels / np.linalg.norm(labels, axis=1, keepdims=True)
    ).T
    allowed = np.ones((data.num_queries, data.num_labels), dtype=bool)
    for q in range(data.num_queries):
        allowed[q, data.positives[q]] = False
    allowed[data.filter_pairs[:, 0], data.filter_pairs[:, 1]] = False

    for k in (3, data.num_labels):
        mined = mined_negative_pairs(data, tiny_model, k)
        for q in range(data.num_queries):
            got = mined[mined[:, 0] == q, 1]
            assert len(set(got.tolist())) == len(got) == min(k, allowed[q].sum())
            assert allowed[q, got].all()
            last = np.sort(cosines[q, allowed[q]])[::-1][len(got) - 1]
            # Every label clearly above the last place is mined, and none clearly below it.
            assert set(np.flatnonzero(allowed[q] & (cosines[q] > last + TIE_TOLERANCE))) <= set(got.tolist())
            assert (cosines[q, got] >= last - TIE_TOLERANCE).all()


def test_pairs_without_mining_are_the_labelled_pairs(tiny_model):
    data = pair_data()
    without_model = verifier_pairs(data, num_mined=2)
    without_mining = verifier_pairs(data, tiny_model, num_mined=0)
    assert as_rows(without_model) == as_rows(without_mining)
    labelled = {(data.queries[q], data.labels[label]) for q in range(6) for label in data.negatives[q]}
    positive = {(data.queries[q], data.labels[label]) for q in range(6) for label in data.positives[q]}
    rows = as_rows(without_model)
    assert {(query, label) for query, label, score in rows if score == 1.0} == positive
    # The labelled negative with its positive's text is dropped.
    assert {(query, label) for query, label, score in rows if score == 0.0} == labelled - positive
    assert len(rows) == len(positive | labelled)


def test_pairs_are_deterministic_for_a_seed(tiny_model):
    data = pair_data()
    first = verifier_pairs(data, tiny_model, num_mined=2, seed=3)
    assert first.to_dict() == verifier_pairs(data, tiny_model, num_mined=2, seed=3).to_dict()
    other = verifier_pairs(data, tiny_model, num_mined=2, seed=4)
    assert as_rows(other) != as_rows(first)
    assert sorted(as_rows(other)) == sorted(as_rows(first))


def test_max_pairs_keeps_the_first_pairs_of_the_same_shuffle(tiny_model):
    data = pair_data()
    every = verifier_pairs(data, tiny_model, num_mined=2, seed=3)
    subset = verifier_pairs(data, tiny_model, num_mined=2, seed=3, max_pairs=3)
    assert as_rows(subset) == as_rows(every)[:3]
    assert len(verifier_pairs(data, tiny_model, num_mined=2, seed=3, max_pairs=10_000)) == len(every)


def test_both_orders_follows_each_pair_with_its_texts_swapped(tiny_model):
    data = pair_data()
    one_order = as_rows(verifier_pairs(data, tiny_model, num_mined=2, seed=3, max_pairs=5))
    both = as_rows(verifier_pairs(data, tiny_model, num_mined=2, seed=3, max_pairs=5, both_orders=True))
    assert len(both) == 2 * len(one_order)
    for i, (query, label, score) in enumerate(one_order):
        assert both[2 * i] == (query, label, score)
        assert both[2 * i + 1] == (label, query, score)


def test_pairs_need_a_positive_and_a_valid_num_mined():
    no_positive = QueryLabelData(
        queries=["a", "b"], labels=["x", "y"], positives=RaggedIds.from_lists([[], []]), source="s"
    )
    with pytest.raises(ValueError, match=r"s: no \(query, positive\) pair"):
        verifier_pairs(no_positive)
    with pytest.raises(ValueError, match="num_mined must be an integer >= 0, got -1"):
        verifier_pairs(pair_data(), num_mined=-1)
    with pytest.raises(ValueError, match="max_pairs must be an integer >= 1, got 0"):
        verifier_pairs(pair_data(), max_pairs=0)


@pytest.fixture(scope="module")
def trainable_encoder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_encoder_files(tmp_path_factory.mktemp("trainable_encoder"), initializer_range=0.3)


def separation(verifier: CrossEncoder, pairs: Dataset) -> tuple[float, float]:
    """Mean positive minus mean negative probability, and the share of (positive, negative) pairs ordered right."""
    probabilities = verifier_probabilities(verifier, pairs["query"], pairs["label"])
    positive = np.asarray(pairs["score"]) == 1.0
    high, low = probabilities[positive], probabilities[~positive]
    return float(high.mean() - low.mean()), float((high[:, None] > low[None, :]).mean())


def test_verifier_learns_a_toy_task_and_round_trips(trainable_encoder_dir, tmp_path):
    pairs = equality_pairs()
    gap_before, ordered_before = separation(CrossEncoder(str(trainable_encoder_dir), num_labels=1), pairs)
    output = tmp_path / "verifier"
    verifier = train_verifier(
        pairs,
        trainable_encoder_dir,
        output,
        max_steps=40,
        learning_rate=3e-3,
        pos_weight="balanced",
        max_length=16,
        logging_strategy="no",
        disable_tqdm=True,
    )
    gap_after, ordered_after = separation(verifier, pairs)
    assert ordered_after > 0.85 and ordered_after > ordered_before + 0.25
    assert gap_after > 0.2 and gap_after > gap_before + 0.2

    loaded = load_verifier(output)
    probabilities = verifier_probabilities(verifier, pairs["query"], pairs["label"])
    assert probabilities.dtype == np.float64 and probabilities.shape == (len(pairs),)
    # Equal up to float rounding: the reloaded weights are the same, the summation order of BLAS need not be.
    assert np.allclose(verifier_probabilities(loaded, pairs["query"], pairs["label"]), probabilities, rtol=0, atol=1e-6)
    # The saved verifier's own predict gives the same probabilities (its activation is the sigmoid).
    predicted = loaded.predict(list(zip(pairs["query"], pairs["label"], strict=True)))
    assert np.allclose(predicted, probabilities, atol=1e-6) and (0 < predicted).all() and (predicted < 1).all()


def test_a_resumed_verifier_ends_where_an_uninterrupted_run_ends(trainable_encoder_dir, tmp_path):
    pairs = equality_pairs()
    options = {
        "max_steps": 6,
        "learning_rate": 3e-3,
        "max_length": 16,
        "batch_size": 8,
        "save_strategy": "steps",
        "save_steps": 3,
        "logging_strategy": "no",
        "disable_tqdm": True,
    }
    uninterrupted = train_verifier(pairs, trainable_encoder_dir, tmp_path / "uninterrupted", **options)
    # The interrupted run is the uninterrupted one's checkpoint at step 3: resumed in a new folder, it must take the
    # checkpoint's weights (not those it is given, shifted here) and train steps 4 to 6 on the same batches from the
    # same optimizer state.
    shifted = initial_verifier(trainable_encoder_dir, max_length=16)
    with torch.no_grad():
        for weight in shifted.model.parameters():
            weight.add_(0.5)
    resumed = train_verifier(
        pairs,
        shifted,
        tmp_path / "resumed",
        resume_from_checkpoint=tmp_path / "uninterrupted" / "checkpoint-3",
        **options,
    )
    initial = CrossEncoder(str(trainable_encoder_dir), num_labels=1).model.state_dict()
    final, resumed_final = uninterrupted.model.state_dict(), resumed.model.state_dict()
    assert final.keys() == resumed_final.keys()
    assert any(not torch.equal(final[name], initial[name]) for name in final)
    for name, weight in final.items():
        torch.testing.assert_close(resumed_final[name], weight, msg=f"{name} differs after resuming")


def test_verifier_trains_on_two_processes(trainable_encoder_dir, tmp_path):
    output = tmp_path / "verifier"
    repo_root = Path(__file__).resolve().parent.parent
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29523"]
    command += [str(repo_root / "tests" / "verifier_ddp_check.py"), str(trainable_encoder_dir), str(output)]
    env = {**os.environ, "PYTHONPATH": str(repo_root), "OMP_NUM_THREADS": "1"}
    completed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-4000:]
    # One process would take ceil(169 / 8) = 22 steps for the epoch; two split it.
    (checkpoint,) = output.glob("checkpoint-*")
    assert int(checkpoint.name.split("-")[1]) <= 11
    pairs = equality_pairs()
    assert verifier_probabilities(load_verifier(output), pairs["query"], pairs["label"]).shape == (len(pairs),)


def best_f1(probabilities: np.ndarray, matches: np.ndarray) -> float:
    """The most F1 any threshold gives, trying each score as the threshold (a slow reference)."""
    best = 0.0
    for threshold in probabilities:
        predicted = probabilities >= threshold
        true_positives = int((predicted & matches).sum())
        if true_positives:
            precision, recall = true_positives / predicted.sum(), true_positives / matches.sum()
            best = max(best, 2 * precision * recall / (precision + recall))
    return best


def test_a_verifier_chosen_on_selection_pairs_is_its_best_epoch(trainable_encoder_dir, tmp_path):
    pairs = equality_pairs()
    selection = pairs.select(range(0, len(pairs), 2))
    output = tmp_path / "verifier"
    epochs, patience = 6, 1
    verifier = train_verifier(
        pairs,
        trainable_encoder_dir,
        output,
        epochs=epochs,
        learning_rate=3e-3,
        batch_size=16,
        max_length=16,
        selection_pairs=selection,
        patience=patience,
        logging_strategy="no",
        disable_tqdm=True,
    )
    record = json.loads((output / "verifier_selection.json").read_text())
    assert not list(output.glob("checkpoint-*")), "the chosen model is saved: the epochs' checkpoints are removed"
    per_epoch = record["f1_per_epoch"]
    assert record["selection_pairs"] == len(selection) and 1 <= len(per_epoch) <= epochs
    # The first epoch with the best F1 (a tie is no improvement), and training stopped only after `patience`
    # epochs without a better one.
    assert record["best_epoch"] == per_epoch.index(max(per_epoch)) + 1
    if len(per_epoch) < epochs:
        assert len(per_epoch) - record["best_epoch"] >= patience
    # The model returned, and the one saved, is the best epoch's: its F1 on the selection pairs is the best one.
    matches = np.asarray(selection["score"]) == 1.0
    for model in (verifier, load_verifier(output)):
        probabilities = verifier_probabilities(model, selection["query"], selection["label"])
        assert best_f1(probabilities, matches) == pytest.approx(max(per_epoch), abs=1e-6)


def test_truncated_pairs_are_counted_as_the_verifier_encodes_them_and_warned_of(tiny_encoder_dir, tmp_path, caplog):
    # Every word is one token of the tiny vocabulary: a pair is its words plus [CLS] and two [SEP].
    pairs = Dataset.from_dict(
        {
            "query": ["usb cable", "black white blue red pro", "phone", "red mini usb drive laptop"],
            "label": ["black usb cable", "max mini usb", "phone case", "pro max phone case"],
            "score": [1.0, 0.0, 1.0, 0.0],
        }
    )
    lengths = [len(q.split()) + len(label.split()) + 3 for q, label in zip(pairs["query"], pairs["label"], strict=True)]
    for max_length in (8, 10, 12):
        expected = sum(length > max_length for length in lengths) / len(lengths)
        assert truncated_pair_share(initial_verifier(tiny_encoder_dir, max_length), pairs) == expected

    with caplog.at_level(logging.WARNING, logger="alc_hf.training.verifier"):
        train_verifier(pairs, tiny_encoder_dir, tmp_path / "out", max_length=10, max_steps=1, disable_tqdm=True)
    assert "50.0% of the 4 training pairs are longer than max_length 10 tokens" in caplog.text


def test_balanced_pos_weight_is_negatives_per_positive():
    pairs = equality_pairs()
    assert resolve_pos_weight(pairs, "balanced") == pytest.approx(12.0)
    assert resolve_pos_weight(pairs, 4) == 4.0


def small_pairs(scores: list[float]) -> Dataset:
    return Dataset.from_dict({"query": ["a"] * len(scores), "label": ["b"] * len(scores), "score": scores})


@pytest.mark.parametrize(
    ("pairs", "options", "message"),
    [
        (small_pairs([1.0, 0.0]).remove_columns("score"), {}, "exactly the columns query, label, score"),
        (small_pairs([1.0, 0.0]).rename_column("label", "document"), {}, "exactly the columns"),
        (small_pairs([]), {}, "pairs is empty"),
        (small_pairs([1.0, 2.0]), {}, r"every score must be a number in \[0, 1\]"),
        (small_pairs([0.0, 0.0]), {}, "no positive score"),
        (small_pairs([1.0, 1.0]), {"pos_weight": "balanced"}, "no negative score"),
        (small_pairs([1.0, 0.0]), {"pos_weight": 0}, "pos_weight must be a positive number or 'balanced', got 0"),
        (small_pairs([1.0, 0.0]), {"pos_weight": "auto"}, "pos_weight must be"),
        (small_pairs([1.0, 0.0]), {"max_length": 0}, "max_length must be an integer >= 1"),
        (small_pairs([1.0, 0.0]), {"selection_pairs": small_pairs([1.0, 0.5])}, "score each pair 1 .* or 0"),
        (small_pairs([1.0, 0.0]), {"selection_pairs": small_pairs([0.0, 0.0])}, "no positive score"),
        (small_pairs([1.0, 0.0]), {"selection_pairs": small_pairs([1.0, 0.0]), "patience": 0}, "patience must be"),
    ],
)
def test_train_verifier_rejects_bad_input_before_any_work(tiny_encoder_dir, tmp_path, pairs, options, message):
    with pytest.raises(ValueError, match=message):
        train_verifier(pairs, tiny_encoder_dir, tmp_path / "out", **options)
    assert not (tmp_path / "out").exists()


def saved_cross_encoder(encoder_dir: Path, directory: Path, num_labels: int = 1) -> Path:
    CrossEncoder(str(encoder_dir), num_labels=num_labels).save_pretrained(str(directory))
    return directory


def without_tokenizer_files(directory: Path) -> Path:
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (directory / name).unlink()
    return directory


def without_pair_template(directory: Path) -> Path:
    """A generic fast tokenizer whose tokenizer.json has no post-processor: a pair comes out as the two texts run
    together."""
    tokenizer = json.loads((directory / "tokenizer.json").read_text())
    tokenizer["post_processor"] = None
    (directory / "tokenizer.json").write_text(json.dumps(tokenizer))
    config = json.loads((directory / "tokenizer_config.json").read_text())
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    (directory / "tokenizer_config.json").write_text(json.dumps(config))
    return directory


@pytest.mark.parametrize(
    ("breaks", "message"),
    [
        (lambda d: d, "has num_labels=3; a verifier needs num_labels=1"),
        (without_tokenizer_files, "maps every word of .* to its unknown token"),
        (without_pair_template, "no pair template"),
    ],
)
def test_a_model_that_cannot_verify_fails_to_load_and_to_train(tiny_encoder_dir, tmp_path, breaks, message):
    num_labels = 3 if "num_labels" in message else 1
    folder = breaks(saved_cross_encoder(tiny_encoder_dir, tmp_path / "model", num_labels))
    with pytest.raises(ValueError, match=message):
        load_verifier(folder)
    with pytest.raises(ValueError, match=message):
        train_verifier(small_pairs([1.0, 0.0]), folder, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_load_verifier_names_what_a_folder_lacks(tiny_encoder_dir, tiny_model, tmp_path):
    with pytest.raises(FileNotFoundError, match="verifier folder not found"):
        load_verifier(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no verifier: no config.json or config_sentence_transformers.json"):
        load_verifier(tmp_path / "empty")
    tiny_model.save_pretrained(str(tmp_path / "bi_encoder"))
    with pytest.raises(ValueError, match="model_type 'SentenceTransformer', not 'CrossEncoder'"):
        load_verifier(tmp_path / "bi_encoder")
    with pytest.raises(ValueError, match=r"architectures \['BertModel'\], expected a \*ForSequenceClassification"):
        load_verifier(tiny_encoder_dir)


def test_load_verifier_takes_a_plain_transformers_cross_encoder(tiny_encoder_dir, tmp_path):
    cross_encoder = CrossEncoder(str(tiny_encoder_dir), num_labels=1)
    cross_encoder.model.save_pretrained(tmp_path / "plain")
    cross_encoder.tokenizer.save_pretrained(tmp_path / "plain")
    queries, labels = ["black usb cable", "red phone"], ["usb cable", "red phone case"]
    assert np.array_equal(
        verifier_probabilities(load_verifier(tmp_path / "plain"), queries, labels),
        verifier_probabilities(cross_encoder, queries, labels),
    )


def test_verifier_probabilities_are_sigmoids_of_the_logit_whatever_the_activation(tiny_encoder_dir):
    logits_model = CrossEncoder(str(tiny_encoder_dir), num_labels=1, activation_fn=nn.Identity())
    check_verifier(logits_model)
    queries, labels = ["black usb cable", "red phone", "mini drive"], ["usb cable", "red phone case", "pro max"]
    logits = logits_model.predict(list(zip(queries, labels, strict=True))).astype(np.float64)
    probabilities = verifier_probabilities(logits_model, queries, labels)
    assert probabilities.dtype == np.float64
    assert np.allclose(probabilities, 1 / (1 + np.exp(-logits)), atol=1e-6)
    assert verifier_probabilities(logits_model, [], []).shape == (0,)
    with pytest.raises(ValueError, match="queries has 3 texts but labels has 2"):
        verifier_probabilities(logits_model, queries, labels[:2])
