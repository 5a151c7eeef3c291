"""Training rows, evaluation views and the XMC-shaped generator."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest
import torch

from alc_hf.core.query_labels import QueryLabelData, RaggedIds
from alc_hf.data.rows import training_rows
from alc_hf.data.views import evaluation_view
from benchmarks.xmc_like import XMCShape, write_xmc_like
from tests.conftest import SHARED_DATA


def small_data(with_negatives: bool = True) -> QueryLabelData:
    return QueryLabelData(
        queries=["q0", "q1", "q2"],
        labels=["l0", "l1", "l2", "l3", "l4", "l5"],
        positives=RaggedIds.from_lists([[0, 2], [1], [3, 4, 5]]),
        negatives=RaggedIds.from_lists([[1], [], [0, 2]]) if with_negatives else None,
        filter_pairs=np.array([[1, 5]]),
        source="small",
    )


def test_rows_explode_every_positive_with_the_label_ids():
    rows = training_rows(small_data())
    assert rows.column_names == ["anchor", "positive", "label"]
    assert rows["anchor"] == ["q0", "q0", "q1", "q2", "q2", "q2"]
    assert rows["positive"] == ["l0", "l2", "l1", "l3", "l4", "l5"]
    # Loop reference: own id, then every positive of the query padded to the widest query.
    expected = []
    for positives in [[0, 2], [1], [3, 4, 5]]:
        for own in positives:
            expected.append([own, *positives, *[-1] * (3 - len(positives))])
    assert rows["label"] == expected


def test_hard_negative_columns_use_labelled_negatives_then_random_non_positives():
    data = small_data()
    rows = training_rows(data, num_hard_negatives=2, seed=3)
    assert rows.column_names == ["anchor", "positive", "negative_1", "negative_2", "label"]
    for row in rows:
        query = data.queries.index(row["anchor"])
        negative_ids = row["label"][1:3]
        assert [data.labels[i] for i in negative_ids] == [row["negative_1"], row["negative_2"]]
        assert not set(negative_ids) & set(data.positives[query].tolist())
        if len(data.negatives[query]):
            assert set(negative_ids) <= set(data.negatives[query].tolist())


def test_label_column_is_truncated_to_max_positive_ids():
    rows = training_rows(small_data(), max_positive_ids=2)
    assert all(len(label) == 3 for label in rows["label"])
    assert rows["label"][3] == [3, 3, 4]


def test_rows_reject_bad_options_and_empty_data():
    with pytest.raises(ValueError, match="num_hard_negatives must be >= 0"):
        training_rows(small_data(), num_hard_negatives=-1)
    empty = QueryLabelData(["q"], ["l"], RaggedIds.from_lists([[]]), source="empty.json")
    with pytest.raises(ValueError, match="empty.json: no \\(query, positive\\) pair"):
        training_rows(empty)


def test_padded_rows_matches_a_loop():
    lists = [[4, 1], [], [7, 8, 9, 3], [2]]
    table = RaggedIds.from_lists(lists).padded(3)
    for row, ids in zip(table.tolist(), lists, strict=True):
        assert row == (ids[:3] + [-1] * 3)[:3]
    assert RaggedIds.from_lists(lists).padded().shape == (4, 4)


def test_rows_train_with_alc_loss(tiny_model):
    from alc_hf import ALCLoss

    rows = training_rows(small_data(), num_hard_negatives=1)
    batch = rows[:4]
    columns = [tiny_model.preprocess(batch[name]) for name in ("anchor", "positive", "negative_1")]
    parts = ALCLoss(tiny_model)(columns, torch.tensor(batch["label"]))
    sum(parts.values()).backward()
    assert all(torch.isfinite(value) for value in parts.values())


def test_evaluation_views():
    data = small_data()
    corpus_view = evaluation_view(data)
    assert corpus_view.candidates is None and corpus_view.corpus == data.labels
    assert corpus_view.filter_pairs.tolist() == [[1, 5]]
    block_view = evaluation_view(data, candidates="labelled")
    assert [block_view.candidates[q].tolist() for q in range(3)] == [[0, 2, 1], [1], [3, 4, 5, 0, 2]]
    with pytest.raises(ValueError, match="needs labelled negatives"):
        evaluation_view(small_data(with_negatives=False), candidates="labelled")
    with pytest.raises(ValueError, match="candidates must be 'corpus' or 'labelled'"):
        evaluation_view(data, candidates="block")


def test_generator_writes_both_forms_with_the_requested_shape(tmp_path):
    shape = XMCShape(num_train=300, num_test=120, num_labels=200, mean_labels_per_query=2.29)
    write_xmc_like(tmp_path, shape, seed=1)
    with gzip.open(tmp_path / "trn.json.gz", "rt") as file:
        records = [json.loads(line) for line in file]
    assert len(records) == 300
    counts = [len(record["target_ind"]) for record in records]
    assert 1.9 < np.mean(counts) < 2.7 and min(counts) >= 1
    assert all(len(set(r["target_ind"])) == len(r["target_ind"]) for r in records)
    assert all(0 <= i < 200 for r in records for i in r["target_ind"])
    header, *lines = (tmp_path / "tst_X_Y.txt").read_text().splitlines()
    assert header == "120 200" and len(lines) == 120
    assert len((tmp_path / "Y.txt").read_text().splitlines()) == 200
    # The two forms carry the same data.
    with gzip.open(tmp_path / "tst.json.gz", "rt") as file:
        json_targets = [json.loads(line)["target_ind"] for line in file]
    raw_targets = [[int(token.split(":")[0]) for token in line.split()] for line in lines]
    assert json_targets == raw_targets
    with pytest.raises(ValueError, match="unknown forms"):
        write_xmc_like(tmp_path, shape, forms=("csv",))


def _rows_from(source: str, tmp_path):
    from alc_hf.data import builtin_catalog, read_product_tables, read_xmc

    shape = XMCShape(num_train=40, num_test=10, num_labels=30, mean_labels_per_query=2.29)
    if source == "builtin_catalog":
        return training_rows(builtin_catalog(seed=0, split="val", num_products=200), num_hard_negatives=1)
    if source == "wdc_tables":
        return training_rows(read_product_tables(SHARED_DATA / "wdc_block_small", "train"), num_hard_negatives=1)
    write_xmc_like(tmp_path, shape, forms=(source,), seed=2)
    return training_rows(read_xmc(tmp_path, "trn"))


@pytest.mark.parametrize(
    "source", ["json", "raw", pytest.param("wdc_tables", marks=pytest.mark.shared_data), "builtin_catalog"]
)
def test_alc_trains_end_to_end_on_rows_from_each_reader(source, tiny_model, tmp_path):
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments

    from alc_hf import ALCLoss, TCMLoss
    from alc_hf.training import UniqueQueryLabelBatchSampler

    rows = _rows_from(source, tmp_path / "data").select(range(32))
    args = SentenceTransformerTrainingArguments(
        output_dir=str(tmp_path / "out"),
        max_steps=2,
        per_device_train_batch_size=8,
        report_to="none",
        save_strategy="no",
        use_cpu=True,
        batch_sampler=UniqueQueryLabelBatchSampler,
        logging_steps=1,
    )
    loss = TCMLoss(tiny_model, base_loss=ALCLoss(tiny_model, num_negatives=4))
    trainer = SentenceTransformerTrainer(model=tiny_model, args=args, train_dataset=rows, loss=loss)
    trainer.train()
    logged = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert len(logged) == 2 and all(np.isfinite(entry[part]) for entry in logged for part in ("base", "ql", "tcm"))
