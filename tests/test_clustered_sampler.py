from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import Dataset
from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
from torch.utils.data import DataLoader

from alc_hf import ALCLoss
from alc_hf.core.clustering import batch_hardness, hardest_negative_cosines, neighbour_clusters
from alc_hf.training import ClusteredBatchSampler, ClusterRefreshCallback, UniqueQueryLabelBatchSampler
from alc_hf.training.clustered_batches import find_clustered_sampler
from tests.test_sampler import assert_unique, xmc_rows

REPO_ROOT = Path(__file__).resolve().parent.parent


def family_rows(num_families: int = 100, dim: int = 64, seed: int = 0) -> tuple[Dataset, dict[str, np.ndarray]]:
    """Families of 4 queries and 4 labels around one centre (queries 0 and 2 have two positives, so labels are
    shared); returns the rows and a normalised vector per text. Family mates are near-duplicates."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((num_families, dim))
    vectors: dict[str, np.ndarray] = {}
    anchors, positives, labels = [], [], []
    for family in range(num_families):
        for j in range(4):
            vectors[f"query {family}-{j}"] = centres[family] + 0.1 * rng.standard_normal(dim)
            vectors[f"label {family}-{j}"] = centres[family] + 0.1 * rng.standard_normal(dim)
        for j in range(4):
            mine = [j, (j + 1) % 4] if j % 2 == 0 else [j]
            for k in mine:
                anchors.append(f"query {family}-{j}")
                positives.append(f"label {family}-{k}")
                labels.append([4 * family + k, *(4 * family + m for m in mine), *[-1] * (2 - len(mine))])
    vectors = {text: vector / np.linalg.norm(vector) for text, vector in vectors.items()}
    return Dataset.from_dict({"anchor": anchors, "positive": positives, "label": labels}), vectors


def item_embeddings(sampler: ClusteredBatchSampler, vectors: dict[str, np.ndarray]) -> np.ndarray:
    return np.stack([vectors[text] for text in sampler.embedding_texts()])


def hardness(dataset: Dataset, vectors: dict[str, np.ndarray], batches: list[list[int]]) -> float:
    labels = np.asarray(dataset["label"])
    queries = np.stack([vectors[text] for text in dataset["anchor"]])
    positives = np.stack([vectors[text] for text in dataset["positive"]])
    return batch_hardness(batches, queries, positives, labels[:, 0], labels[:, 1:])


def clustered(dataset: Dataset, batch_size: int = 16, drop_last: bool = False, seed: int = 0, **options):
    return ClusteredBatchSampler(dataset, batch_size=batch_size, drop_last=drop_last, seed=seed, **options)


def random_embeddings(sampler: ClusteredBatchSampler, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((sampler.num_items, 8))


def rows_of(batches: list[list[int]]) -> list[int]:
    return sorted(row for batch in batches for row in batch)


@pytest.mark.parametrize("cluster_by", ["query", "label"])
@pytest.mark.parametrize("drop_last", [False, True])
@pytest.mark.parametrize("batch_size", [4, 16])
def test_unique_queries_and_labels_and_every_row_once(cluster_by, drop_last, batch_size):
    dataset = xmc_rows()  # repeated queries, shared labels
    sampler = clustered(dataset, batch_size, drop_last, cluster_by=cluster_by)
    sampler.set_embeddings(random_embeddings(sampler))
    for epoch in range(2):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert len(batches) == len(sampler)
        assert_unique(dataset, batches)
        served = rows_of(batches)
        if drop_last:
            assert all(len(batch) == batch_size for batch in batches)
            assert len(set(served)) == len(served) and len(served) >= len(dataset) - 2 * batch_size
        else:
            assert served == list(range(len(dataset)))
            assert sum(len(batch) < batch_size for batch in batches) <= 1


def test_deterministic_per_seed_and_epoch_and_changes_across_epochs():
    dataset, vectors = family_rows()
    first, second, other_seed = clustered(dataset, seed=3), clustered(dataset, seed=3), clustered(dataset, seed=4)
    for sampler in (first, second, other_seed):
        sampler.set_embeddings(item_embeddings(sampler, vectors))
    assert list(first) == list(second)
    assert list(first) != list(other_seed)
    epoch_zero = list(first)
    first.set_epoch(1)
    second.set_epoch(1)
    assert list(first) == list(second) != epoch_zero
    first.set_epoch(0)
    assert list(first) == epoch_zero


@pytest.mark.parametrize("cluster_by", ["query", "label"])
def test_clustered_batches_are_harder_than_random_ones(cluster_by):
    dataset, vectors = family_rows()
    sampler = clustered(dataset, cluster_by=cluster_by)
    sampler.set_embeddings(item_embeddings(sampler, vectors))
    random_batches = list(UniqueQueryLabelBatchSampler(dataset, batch_size=16, drop_last=False, seed=0))
    # Family mates have cosine ~0.99, strangers in 64 dimensions ~0.3 at best: ~0.9 against ~0.3 here.
    assert hardness(dataset, vectors, list(sampler)) > hardness(dataset, vectors, random_batches) + 0.4


def test_embedding_texts_follow_item_ids():
    dataset, _ = family_rows(num_families=3)
    by_query = clustered(dataset)
    assert by_query.embedding_texts() == list(dict.fromkeys(dataset["anchor"]))
    by_label = clustered(dataset, cluster_by="label")
    # Integer label ids ascending; each label's positive text.
    assert by_label.embedding_texts() == [f"label {family}-{k}" for family in range(3) for k in range(4)]
    without_label = clustered(dataset.remove_columns("label"), cluster_by="label")
    assert without_label.embedding_texts() == list(dict.fromkeys(dataset["positive"]))


@pytest.mark.parametrize("cluster_size", [1, 3, 4, 7])
def test_cluster_sizes_are_cluster_size_but_a_remainder_per_cell(cluster_size):
    vectors = np.random.default_rng(0).standard_normal((1000, 16)).astype(np.float32)
    original = vectors.copy()
    sizes = np.bincount(neighbour_clusters(vectors, cluster_size))
    np.testing.assert_array_equal(vectors, original)  # normalised in a copy
    assert sizes.max() == cluster_size
    assert (sizes < cluster_size).sum() <= 1  # 1,000 rows make one cell


def test_large_inputs_are_split_into_cells_first():
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((40, 16))
    vectors = centres[np.arange(5000) % 40] + 0.05 * rng.standard_normal((5000, 16))
    clusters = neighbour_clusters(vectors, 4)
    sizes = np.bincount(clusters)
    assert sizes.max() == 4 and (sizes < 4).sum() <= 10  # one remainder per cell at most, cells of ~1,000
    # Clusters hold rows of one of the 40 tight groups, but where a group's 125 rows leave a remainder.
    group = np.arange(5000) % 40
    groups_per_cluster = np.array([len(set(group[clusters == c].tolist())) for c in range(sizes.size)])
    assert (groups_per_cluster == 1).mean() > 0.95


def test_rows_k_means_cannot_split_are_cut_into_parts():
    vectors = np.ones((6000, 8))
    vectors[:50] = np.random.default_rng(0).standard_normal((50, 8))
    sizes = np.bincount(neighbour_clusters(vectors, 4))
    assert sizes.max() == 4 and sizes.sum() == 6000 and (sizes < 4).sum() <= 10


def test_without_embeddings_batches_are_the_random_ones_and_it_says_so_once(caplog):
    dataset = xmc_rows()
    sampler = clustered(dataset, 8, seed=5)
    parent = UniqueQueryLabelBatchSampler(dataset, batch_size=8, drop_last=False, seed=5)
    with caplog.at_level(logging.WARNING, logger="alc_hf.training.clustered_batches"):
        for epoch in range(3):
            sampler.set_epoch(epoch)
            parent.set_epoch(epoch)
            assert list(sampler) == list(parent)
    assert sum("no embeddings yet" in record.getMessage() for record in caplog.records) == 1


def test_one_row_per_query_keeps_working():
    dataset, vectors = family_rows()
    sampler = clustered(dataset, one_row_per_query=True)
    sampler.set_embeddings(item_embeddings(sampler, vectors))
    anchors = dataset["anchor"]
    batches = list(sampler)
    served = rows_of(batches)
    assert len(batches) == len(sampler)
    assert sorted(anchors[row] for row in served) == sorted(set(anchors))


@pytest.mark.parametrize("drop_last", [False, True])
def test_mid_epoch_refresh_replans_only_the_rows_not_yielded(drop_last):
    dataset, vectors = family_rows()  # 600 rows: with drop_last, 37 batches of 16 and 8 rows left out
    sampler = clustered(dataset, drop_last=drop_last)
    promised, planned = len(sampler), rows_of(sampler.plan())
    iterator = iter(sampler)
    # A dataloader fetches ahead: what the sampler yielded counts as served, trained on or not.
    yielded = [next(iterator) for _ in range(3)]
    old_rest = sampler.plan()[3:]
    sampler.set_embeddings(item_embeddings(sampler, vectors))
    rest = list(iterator)
    assert sampler.plan()[:3] == yielded
    assert rest == sampler.plan()[3:] != old_rest
    assert len(yielded) + len(rest) == promised
    assert rows_of(yielded + rest) == planned
    assert len(planned) == (592 if drop_last else len(dataset))
    assert_unique(dataset, yielded + rest)
    assert hardness(dataset, vectors, rest) > hardness(dataset, vectors, old_rest) + 0.4


def test_state_dict_resumes_the_same_clusters_and_plan():
    dataset, vectors = family_rows()
    sampler = clustered(dataset)
    sampler.set_epoch(1)
    sampler.set_embeddings(item_embeddings(sampler, vectors))
    iterator = iter(sampler)
    [next(iterator) for _ in range(3)]
    sampler.set_embeddings(random_embeddings(sampler, seed=5))  # a mid-epoch refresh: the plan is no longer fresh
    state = sampler.state_dict()

    fresh = clustered(dataset)
    assert fresh.plan(1) != sampler.plan(1)
    fresh.load_state_dict(state)
    fresh.set_epoch(1)
    assert fresh.plan(1) == sampler.plan(1)
    np.testing.assert_array_equal(fresh.item_clusters, sampler.item_clusters)
    assert fresh.plan(2) == sampler.plan(2)  # the next epochs follow from the restored clusters

    unclustered = clustered(dataset)
    restored = clustered(dataset)
    restored.load_state_dict(unclustered.state_dict())
    assert restored.item_clusters is None and restored.plan(0) == unclustered.plan(0)


def test_refresh_inside_a_dataloader_serves_every_row_once():
    dataset, vectors = family_rows(num_families=30)
    sampler = clustered(dataset, 8)
    seen: list[int] = []
    loader = DataLoader(range(len(dataset)), batch_sampler=sampler, collate_fn=list)
    for step, batch in enumerate(loader):
        seen.extend(batch)
        if step == 2:
            sampler.set_embeddings(item_embeddings(sampler, vectors))
    assert sorted(seen) == list(range(len(dataset)))
    assert step + 1 == len(sampler)


def test_refresh_between_epochs_plans_the_next_epoch_with_the_clusters():
    dataset, vectors = family_rows()
    sampler = clustered(dataset)
    first_epoch = list(sampler)
    sampler.set_embeddings(item_embeddings(sampler, vectors))
    assert sampler.plan() != first_epoch  # the epoch was fully served: the cached plan is dropped
    sampler.set_epoch(1)
    assert hardness(dataset, vectors, list(sampler)) > hardness(dataset, vectors, first_epoch) + 0.4


def slow_hardest(batches, queries, positives, labels, positive_ids):
    expected = [math.nan] * len(labels)
    for batch in batches:
        for i in batch:
            own = {int(labels[i]), *(int(x) for x in positive_ids[i] if x >= 0)}
            scores = [float(np.dot(queries[i], positives[j])) for j in batch if int(labels[j]) not in own]
            expected[i] = max(scores) if scores else math.nan
    return np.array(expected)


def test_hardest_negative_cosines_match_a_slow_loop():
    rng = np.random.default_rng(0)
    num_rows, dim = 90, 12
    queries = rng.standard_normal((num_rows, dim))
    positives = rng.standard_normal((num_rows, dim))
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    positives /= np.linalg.norm(positives, axis=1, keepdims=True)
    labels = rng.integers(0, 40, num_rows)  # repeated label ids: candidates that are positives
    positive_ids = np.where(rng.random((num_rows, 3)) < 0.5, rng.integers(0, 40, (num_rows, 3)), -1)
    order = rng.permutation(num_rows)
    batches = [order[:1].tolist(), order[1:20].tolist(), order[20:27].tolist(), order[27:85].tolist()]  # 5 unserved
    got = hardest_negative_cosines(batches, queries, positives, labels, positive_ids)
    expected = slow_hardest(batches, queries, positives, labels, positive_ids)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    np.testing.assert_allclose(got[~np.isnan(got)], expected[~np.isnan(expected)], atol=1e-5)
    assert np.isnan(got[order[0]]) and np.isnan(got[order[85:]]).all()
    served = np.isfinite(expected)
    assert math.isclose(
        batch_hardness(batches, queries, positives, labels, positive_ids), expected[served].mean(), abs_tol=1e-5
    )


def test_bad_options_and_embeddings_are_clear_errors():
    dataset = xmc_rows()
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match=r"cluster_size must be an integer >= 1"):
            clustered(dataset, cluster_size=bad)
    with pytest.raises(ValueError, match=r"cluster_by must be one of \('query', 'label'\), got 'queries'"):
        clustered(dataset, cluster_by="queries")
    sampler = clustered(dataset)
    with pytest.raises(ValueError, match=r"embeddings must be \[60, dim\] \(one row per distinct query.*\(61, 8\)"):
        sampler.set_embeddings(np.ones((61, 8)))
    with pytest.raises(ValueError, match=r"embeddings must be \[60, dim\].*got shape \(60,\)"):
        sampler.set_embeddings(np.ones(60))
    with pytest.raises(ValueError, match=r"embeddings is None"):
        sampler.set_embeddings(None)
    broken = random_embeddings(sampler)
    broken[7, 2] = np.nan
    with pytest.raises(ValueError, match=r"embeddings row 7 holds NaN or inf"):
        sampler.set_embeddings(broken)
    broken[7] = 0.0
    with pytest.raises(ValueError, match=r"embeddings row 7 is all zeros"):
        sampler.set_embeddings(broken)
    assert sampler.item_clusters is None
    with pytest.raises(ValueError, match=r"give every_n_epochs or every_n_steps, not both"):
        ClusterRefreshCallback(every_n_epochs=1, every_n_steps=10)
    with pytest.raises(ValueError, match=r"every_n_steps must be an integer >= 1, got 0"):
        ClusterRefreshCallback(every_n_steps=0)
    with pytest.raises(ValueError, match=r"no ClusteredBatchSampler in the training dataloader"):
        find_clustered_sampler(DataLoader(range(4), batch_size=2))


class RecordingSampler(ClusteredBatchSampler):
    """Records every batch it yields, per epoch, to check what the trainer was given."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.yielded: dict[int, list[list[int]]] = {}

    def __iter__(self):
        for batch in super().__iter__():
            self.yielded.setdefault(self.epoch, []).append(batch)
            yield batch


@pytest.fixture
def one_thread():
    """The tiny model gains nothing from a second thread, and on a busy machine two threads wait on each other."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def train(model, tmp_path, loss, callback, dataset, **arguments):
    args = SentenceTransformerTrainingArguments(
        output_dir=str(tmp_path),
        per_device_train_batch_size=8,
        report_to="none",
        save_strategy="no",
        use_cpu=True,
        batch_sampler=RecordingSampler.configure(cluster_size=4),
        **arguments,
    )
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=dataset, loss=loss, callbacks=[callback])
    trainer.train()
    return trainer, find_clustered_sampler(trainer.callback_handler.train_dataloader)


@pytest.mark.parametrize("loss_name", ["mnrl", "alc"])
def test_callback_refreshes_every_epoch_inside_the_trainer(tiny_model, tmp_path, loss_name, one_thread):
    dataset, _ = family_rows(num_families=4)  # 24 rows: 3 batches of 8 per epoch
    loss = MultipleNegativesRankingLoss(tiny_model) if loss_name == "mnrl" else ALCLoss(tiny_model, num_negatives=2)
    callback = ClusterRefreshCallback(refresh_at_start=True, batch_size=16)
    trainer, sampler = train(tiny_model, tmp_path, loss, callback, dataset, num_train_epochs=2)
    assert trainer.state.global_step == 6
    assert callback.refreshes == 2  # before epoch 0 and at the start of epoch 1
    assert sampler.item_clusters is not None and tiny_model.training
    for epoch in (0, 1):
        assert rows_of(sampler.yielded[epoch]) == list(range(len(dataset)))
        assert_unique(dataset, sampler.yielded[epoch])


def test_callback_refreshes_every_n_steps_and_keeps_each_row_once(tiny_model, tmp_path, one_thread):
    dataset, _ = family_rows(num_families=8)  # 48 rows: 6 batches of 8
    callback = ClusterRefreshCallback(every_n_steps=2, batch_size=16)
    trainer, sampler = train(
        tiny_model, tmp_path, MultipleNegativesRankingLoss(tiny_model), callback, dataset, max_steps=6
    )
    assert callback.refreshes == 2  # after steps 2 and 4, in the middle of the epoch
    assert len(sampler.yielded[0]) == len(sampler) == 6
    assert rows_of(sampler.yielded[0]) == list(range(len(dataset)))
    assert_unique(dataset, sampler.yielded[0])


def test_processes_agree_on_the_clusters_and_a_mid_epoch_refresh(tiny_encoder_dir, tmp_path):
    output = tmp_path / "result.json"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        "29523",
        str(REPO_ROOT / "tests" / "distributed_sampler_check.py"),
        str(tiny_encoder_dir),
        str(output),
    ]
    completed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-4000:]
    result = json.loads(output.read_text())
    assert result["same_plan"] and result["same_plan_after_refresh"] and result["same_plan_after_callback"]
    assert result["rows_served_once"] and result["batches"] == result["promised"]
    assert result["errors"] == ["ValueError", "RuntimeError"]
