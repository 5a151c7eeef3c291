from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from accelerate.data_loader import BatchSamplerShard
from datasets import Dataset
from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments

from alc_hf import ALCLoss
from alc_hf.training.batch_samplers import OneRowPerQueryBatchSampler, UniqueQueryLabelBatchSampler, plan_unique_batches


def xmc_rows(num_rows: int = 400, num_queries: int = 60, num_labels: int = 50, seed: int = 0) -> Dataset:
    """Rows with many repeated queries (several positives each) and labels shared by several queries."""
    rng = np.random.default_rng(seed)
    pairs: set[tuple[int, int]] = set()
    while len(pairs) < num_rows:
        pairs.add((int(rng.integers(num_queries)), int(rng.integers(num_labels))))
    queries, labels = zip(*sorted(pairs), strict=True)
    return Dataset.from_dict(
        {
            "anchor": [f"query {q}" for q in queries],
            "positive": [f"label {label}" for label in labels],
            "label": [[label, -1, -1] for label in labels],
        }
    )


def sampler(dataset: Dataset, batch_size: int = 8, drop_last: bool = False, seed: int = 0, **options):
    return UniqueQueryLabelBatchSampler(dataset, batch_size=batch_size, drop_last=drop_last, seed=seed, **options)


def assert_unique(dataset: Dataset, batches: list[list[int]]) -> None:
    anchors, labels = dataset["anchor"], [row[0] for row in dataset["label"]]
    for batch in batches:
        assert len({anchors[i] for i in batch}) == len(batch), batch
        assert len({labels[i] for i in batch}) == len(batch), batch


def test_no_duplicate_query_or_label_and_every_row_once():
    dataset = xmc_rows()
    for batch_size in (4, 8, 16):
        batches = list(sampler(dataset, batch_size))
        assert_unique(dataset, batches)
        assert sorted(i for batch in batches for i in batch) == list(range(len(dataset)))
        assert all(len(batch) <= batch_size for batch in batches)


def test_without_label_column_the_positive_text_is_the_label():
    dataset = xmc_rows().remove_columns("label")
    batches = list(sampler(dataset, 8))
    positives, anchors = dataset["positive"], dataset["anchor"]
    for batch in batches:
        assert len({positives[i] for i in batch}) == len({anchors[i] for i in batch}) == len(batch)
    assert sorted(i for batch in batches for i in batch) == list(range(len(dataset)))


@pytest.mark.parametrize("drop_last", [False, True])
@pytest.mark.parametrize("batch_size", [1, 3, 8, 32, 64])
def test_len_is_the_number_of_batches(batch_size, drop_last):
    dataset = xmc_rows(num_rows=150, num_queries=40, num_labels=45)
    for epoch in range(3):
        batch_sampler = sampler(dataset, batch_size, drop_last)
        batch_sampler.set_epoch(epoch)
        batches = list(batch_sampler)
        assert len(batch_sampler) == len(batches)
        if drop_last:
            assert all(len(batch) == batch_size for batch in batches)
        else:
            assert sum(map(len, batches)) == len(dataset)


def test_degenerate_data_keeps_every_row():
    # One query with 30 positives and one label shared by 30 queries: more rows than fit in ceil(n / B) batches.
    anchors = ["heavy"] * 30 + [f"q{i}" for i in range(30)] + [f"r{i}" for i in range(20)]
    labels = list(range(30)) + [99] * 30 + list(range(100, 120))
    dataset = Dataset.from_dict({"anchor": anchors, "positive": [f"l{x}" for x in labels], "label": labels})
    batch_sampler = sampler(dataset, 8, max_scan=10)
    batches = list(batch_sampler)
    assert len(batches) == len(batch_sampler) >= 30
    assert_unique_plain = [len({anchors[i] for i in b}) == len({labels[i] for i in b}) == len(b) for b in batches]
    assert all(assert_unique_plain)
    assert sorted(i for batch in batches for i in batch) == list(range(len(dataset)))


def test_deterministic_per_seed_and_epoch():
    dataset = xmc_rows()
    first, second = sampler(dataset, seed=3), sampler(dataset, seed=3)
    assert list(first) == list(second)
    first.set_epoch(1)
    epoch_one = list(first)
    assert epoch_one != list(second)
    second.set_epoch(1)
    assert epoch_one == list(second)
    assert list(sampler(dataset, seed=4)) != list(sampler(dataset, seed=3))
    first.set_epoch(0)
    assert list(first) == list(sampler(dataset, seed=3))


def test_one_row_per_query():
    dataset = xmc_rows()
    anchors = dataset["anchor"]
    num_queries = len(set(anchors))
    choices = []
    for epoch in range(3):
        batch_sampler = OneRowPerQueryBatchSampler(dataset, batch_size=8, drop_last=False, seed=0)
        batch_sampler.set_epoch(epoch)
        batches = list(batch_sampler)
        assert len(batches) == len(batch_sampler)
        assert_unique(dataset, batches)
        rows = sorted(i for batch in batches for i in batch)
        assert len(rows) == num_queries
        assert Counter(anchors[i] for i in rows) == Counter(set(anchors))
        choices.append(rows)
    assert choices[0] != choices[1] and choices[1] != choices[2]
    configured = UniqueQueryLabelBatchSampler.configure(one_row_per_query=True)
    rebuilt = configured(dataset, batch_size=8, drop_last=False, valid_label_columns=None, generator=None, seed=0)
    rebuilt.set_epoch(2)
    assert sorted(i for batch in rebuilt for i in batch) == choices[2]


@pytest.mark.parametrize("num_processes", [2, 3])
def test_processes_build_the_same_batches_and_shards_cover_each_once(num_processes):
    dataset = xmc_rows()
    processes = [sampler(dataset, 8, seed=7) for _ in range(num_processes)]
    # The trainer sets even_batches=False for training; accelerate wraps the batch sampler in BatchSamplerShard.
    shards = [
        BatchSamplerShard(process, num_processes=num_processes, process_index=index, even_batches=False)
        for index, process in enumerate(processes)
    ]
    for epoch in range(6):
        for process in processes:
            process.set_epoch(epoch)
        plans = [list(process) for process in processes]
        assert all(plan == plans[0] for plan in plans)
        assert sum(len(batch) < 8 for batch in plans[0]) <= 1  # only the last batch may be incomplete
        served = [list(shard) for shard in shards]
        assert sorted(tuple(batch) for part in served for batch in part) == sorted(map(tuple, plans[0]))
        assert [len(part) for part in served] == [len(shard) for shard in shards]


def test_plan_unique_batches_on_integer_ids():
    rng = np.random.default_rng(0)
    queries = rng.integers(0, 50, 500)
    labels = rng.integers(0, 400, 500)
    batches = plan_unique_batches(queries, labels, 16, False, np.random.default_rng(1))
    for batch in batches:
        assert len(set(queries[batch].tolist())) == len(set(labels[batch].tolist())) == len(batch)
    assert sorted(i for batch in batches for i in batch) == list(range(500))


@pytest.mark.parametrize("batch_sampler", [UniqueQueryLabelBatchSampler, OneRowPerQueryBatchSampler])
def test_trains_inside_the_trainer(tiny_model, tmp_path, batch_sampler):
    args = SentenceTransformerTrainingArguments(
        output_dir=str(tmp_path),
        max_steps=3,
        per_device_train_batch_size=4,
        report_to="none",
        save_strategy="no",
        use_cpu=True,
        batch_sampler=batch_sampler,
    )
    loss = ALCLoss(tiny_model, num_negatives=2)
    trainer = SentenceTransformerTrainer(model=tiny_model, args=args, train_dataset=xmc_rows(40, 12, 15), loss=loss)
    trainer.train()
    assert trainer.state.global_step == 3
    assert isinstance(trainer.get_train_dataloader().batch_sampler, UniqueQueryLabelBatchSampler)
