"""Clustered hard batches: training rows whose queries (or labels) are neighbours in the encoder's space share a batch.

The alc_hf auxiliary objectives and TCM are built on the hardest in-batch negatives, and a batch of random product
offers rarely holds a hard one. XMC trainers (NGAME, SiameseXML) therefore cluster the training queries with the
current encoder, every few epochs, and build each batch from a few whole clusters, so the in-batch negatives are
near-duplicates. :class:`ClusteredBatchSampler` does this for any loss (``MultipleNegativesRankingLoss`` included),
keeping the guarantees of :class:`~alc_hf.training.batch_samplers.UniqueQueryLabelBatchSampler`: no query and no
label twice
in a batch, every row once per epoch, deterministic per seed and epoch. :class:`ClusterRefreshCallback` re-embeds
with the model being trained and hands the embeddings to the sampler; :func:`alc_hf.core.clustering.batch_hardness`
measures the result.

Usage: see :class:`ClusterRefreshCallback`'s example and docs/data.md. The callback finds the sampler in the
trainer's training dataloader, so nothing else needs wiring; outside the trainer, call
:meth:`ClusteredBatchSampler.set_embeddings` yourself (rows follow :meth:`ClusteredBatchSampler.embedding_texts`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa
import torch
import torch.distributed as dist
from datasets import Dataset
from sentence_transformers.util import get_rank, get_world_size
from sentence_transformers.util.distributed import distributed_evaluation
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from alc_hf.core.clustering import neighbour_clusters
from alc_hf.core.query_labels import RaggedIds, check_int
from alc_hf.models import embed_texts
from alc_hf.training.batch_samplers import UniqueQueryLabelBatchSampler, dense_ids, group_ranks, pack_unique_batches

__all__ = [
    "CLUSTER_BY",
    "ClusterRefreshCallback",
    "ClusteredBatchSampler",
    "find_clustered_sampler",
]

logger = logging.getLogger(__name__)
T = TypeVar("T")

CLUSTER_BY = ("query", "label")
# Written into each checkpoint folder by ClusterRefreshCallback.
CLUSTER_STATE_FILE = "cluster_sampler_state.npz"


def _cluster_order(items: np.ndarray, clusters: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A permutation of rows (``items``: each row's item id, ``clusters``: its item's cluster) that puts the rows
    of one cluster next to each other, the clusters in random order.

    A cluster is visited once per row of its largest item: the j-th rows of its items (random ranks) are served
    together at its j-th visit, and a cluster's ``m`` visits are spread evenly over the epoch (visit ``j`` at the
    key ``(j + offset) / m``, ``offset`` the cluster's random place in [0, 1)). This is the spreading of
    ``_spread_order`` applied to clusters: a query with 200 positives meets its cluster again and again instead of
    filling a run of batches that could each take only one of its rows.
    """
    rank, _ = group_ranks(dense_ids(items), rng)
    cluster = dense_ids(clusters)
    num_clusters = int(cluster.max()) + 1
    visits = np.zeros(num_clusters, dtype=np.int64)
    np.maximum.at(visits, cluster, rank + 1)
    place = rng.permutation(num_clusters)[cluster]
    key = (rank + (place + 0.5) / num_clusters) / visits[cluster]
    return np.lexsort((rng.random(len(items)), place, key))


class ClusteredBatchSampler(UniqueQueryLabelBatchSampler):
    """:class:`~alc_hf.training.batch_samplers.UniqueQueryLabelBatchSampler` whose batches are made of clusters of
    neighbours.

    Each epoch the rows are ordered cluster by cluster (clusters in a random order from the seed-and-epoch RNG) and
    packed into batches by :func:`~alc_hf.training.batch_samplers.pack_unique_batches`: still no query and no label
    twice in a
    batch, every selected row once per epoch (or ``drop_last``), deterministic for a seed, epoch and clustering.
    A cluster is served one row per item at a time (a query with several positives comes back at later visits of
    its cluster), so a batch of 64 with ``cluster_size=4`` holds 16 clusters or more; with several positives per
    query, ``one_row_per_query=True`` or a larger ``cluster_size`` gives more neighbours per batch (see
    docs/data.md). The clusters (:func:`neighbour_clusters`) group
    the distinct queries (``cluster_by="query"``) or the distinct positive labels (``"label"``) by embeddings given
    to :meth:`set_embeddings` (or the ``embeddings`` option); :class:`ClusterRefreshCallback` computes them with the
    model being trained. Until there are embeddings the batches are the parent's random ones (logged once).

    Args:
        dataset, *args: as the trainer passes them (see the parent: batch_size, drop_last, ..., seed).
        cluster_by: ``"query"`` or ``"label"`` (the first entry of the ``label`` column, else the positive text).
        cluster_size: items per cluster, >= 1.
        embeddings: initial embeddings, as for :meth:`set_embeddings` (pass them on every process).
        **options: the parent's options: ``one_row_per_query``, ``query_column``, ``positive_column``,
            ``label_column``, ``max_scan``.

    Turn it on with ``SentenceTransformerTrainingArguments(batch_sampler=ClusteredBatchSampler.configure(...))``.

    Distributed training: :meth:`set_embeddings` is collective (the main process clusters, every process plans).
    """

    def __init__(
        self,
        dataset: Dataset,
        *args: Any,
        cluster_by: str = "query",
        cluster_size: int = 4,
        embeddings: np.ndarray | None = None,
        **options: Any,
    ) -> None:
        if cluster_by not in CLUSTER_BY:
            raise ValueError(f"cluster_by must be one of {CLUSTER_BY}, got {cluster_by!r}")
        self.cluster_size = check_int(cluster_size, "cluster_size")
        super().__init__(dataset, *args, **options)
        self.dataset = dataset
        self.cluster_by = cluster_by
        self.item_ids = self.query_ids if cluster_by == "query" else self.label_ids
        self.num_items = int(self.item_ids.max()) + 1 if len(self.item_ids) else 0
        self.item_clusters: np.ndarray | None = None
        # (epoch, batches yielded): a refresh in the middle of an epoch re-plans only what is not yielded yet.
        self._served = (self.epoch, 0)
        self._said_random = False
        if embeddings is not None:
            self.set_embeddings(embeddings)

    def embedding_texts(self) -> list[str]:
        """The text of each item, in the order :meth:`set_embeddings` expects.

        Item ``k`` is the ``k``-th distinct query (``cluster_by="query"``; order of first appearance in the
        dataset) or the positive text of the ``k``-th distinct label (``"label"``; integer label ids ascending, or
        label texts in order of first appearance).
        """
        column = self.query_column if self.cluster_by == "query" else self.positive_column
        if column is None:
            raise ValueError(
                "cluster_by='label' embeds the positive texts, but the dataset has no positive text column; "
                "pass the label embeddings to set_embeddings() instead"
            )
        _, first_rows = np.unique(self.item_ids, return_index=True)
        texts = self.dataset.select_columns([column]).with_format("arrow")[:].column(column)
        return texts.take(pa.array(first_rows)).to_pylist()

    def set_embeddings(self, embeddings: np.ndarray | None) -> None:
        """Cluster the items by ``embeddings`` and plan with these clusters from now on.

        ``embeddings`` is ``[num_items, dim]``, row ``k`` embedding ``embedding_texts()[k]`` (rows are normalised:
        clusters follow cosine similarity). Batches of the current epoch that were already yielded stay as they
        were and the rows of the others are re-planned into as many batches (the count ``len()`` promised, on data
        where every batch but the last is full); otherwise the next plan uses the clusters.

        Under ``torch.distributed`` (initialised, more than one process) every process must call this at the same
        point. accelerate's ``BatchSamplerShard`` hands each process every n-th batch, so the plan must be the same
        everywhere, and embeddings computed on different devices differ in the last bits, which can change the
        clusters: so the main process's embeddings are clustered and the cluster ids broadcast (the other processes
        may pass None), and the re-planning starts after the furthest batch any process has yielded.

        Raises:
            ValueError: embeddings of the wrong shape, with NaN or inf, or with an all-zero row (on the main
                process; the others raise a RuntimeError caused by it).
        """
        position = self._served[1] if self._served[0] == self.epoch else 0
        if get_world_size() > 1:
            gathered: list[int | None] = [None] * get_world_size()
            dist.all_gather_object(gathered, position)
            position = max(gathered)
            self.item_clusters = _from_main_process(lambda: self._clusters_of(embeddings))
        else:
            self.item_clusters = self._clusters_of(embeddings)
        cache = self._plan_cache
        if cache is None or cache[0] != self.epoch or not 0 < position < len(cache[1]):
            self._plan_cache = None
            return
        served, rest = cache[1][:position], cache[1][position:]
        rows = np.fromiter((row for batch in rest for row in batch), dtype=np.int64)
        self._plan_cache = (self.epoch, served + self._plan_rows(rows, self._rng(self.epoch, position)))

    def _clusters_of(self, embeddings: np.ndarray | None) -> np.ndarray:
        expected = f"[{self.num_items}, dim] (one row per distinct {self.cluster_by}, in embedding_texts() order)"
        if embeddings is None:
            raise ValueError(f"embeddings is None, expected {expected}")
        shape = np.shape(embeddings)
        if len(shape) != 2 or shape[0] != self.num_items:
            raise ValueError(f"embeddings must be {expected}, got shape {shape}")
        return neighbour_clusters(embeddings, self.cluster_size, seed=self.seed or 0)

    def _plan_rows(self, rows: np.ndarray | None, rng: np.random.Generator) -> list[list[int]]:
        if self.item_clusters is None:
            return super()._plan_rows(rows, rng)
        rows = np.arange(len(self.item_ids), dtype=np.int64) if rows is None else rows
        if len(rows) == 0:
            return []
        items = self.item_ids[rows]
        order = rows[_cluster_order(items, self.item_clusters[items], rng)]
        return pack_unique_batches(
            self.query_ids, self.label_ids, order, self.batch_size, self.drop_last, self.max_scan
        )

    def state_dict(self) -> dict[str, np.ndarray]:
        """What a checkpoint needs to resume with the same batches: the clusters in use and the current epoch's plan
        (re-embedding with the resumed model would cluster, and so batch, the rest of the epoch differently)."""
        batches = self.plan(self.epoch)
        return {
            "epoch": np.int64(self.epoch),
            "has_clusters": np.bool_(self.item_clusters is not None),
            "item_clusters": np.zeros(0, np.int64) if self.item_clusters is None else self.item_clusters,
            "plan_lengths": np.array([len(batch) for batch in batches], dtype=np.int64),
            "plan_rows": np.array([row for batch in batches for row in batch], dtype=np.int64),
        }

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Restore :meth:`state_dict`'s clusters and plan (the batches of ``state["epoch"]``)."""
        self.item_clusters = np.asarray(state["item_clusters"]) if bool(state["has_clusters"]) else None
        plan = RaggedIds.from_lengths(state["plan_lengths"], state["plan_rows"])
        self._plan_cache = (int(state["epoch"]), [row.tolist() for row in plan])

    def __iter__(self) -> Iterator[list[int]]:
        # Said when batches are served, not when planned: the trainer asks len() before the first refresh.
        if self.item_clusters is None and not self._said_random:
            logger.warning(
                "ClusteredBatchSampler has no embeddings yet, so its batches are random ones (still no query or "
                "label twice); ClusterRefreshCallback or set_embeddings() gives them"
            )
            self._said_random = True
        epoch, position = self.epoch, 0
        self._served = (epoch, 0)
        # The plan is looked up for every batch: set_embeddings may replace the part not yielded yet.
        while position < len(self.plan(epoch)):
            batch = self.plan(epoch)[position]
            position += 1
            self._served = (epoch, position)
            yield list(batch)


def _from_main_process(compute: Callable[[], T]) -> T:
    """``compute()`` on the main process, broadcast to every process; an error there is raised everywhere."""
    payload: list[Any] = [None]
    if get_rank() == 0:
        try:
            payload[0] = compute()
        except Exception as error:
            # The other processes wait in the broadcast: they get the error instead of hanging.
            dist.broadcast_object_list([error], src=0)
            raise
    dist.broadcast_object_list(payload, src=0)
    if isinstance(payload[0], Exception):
        raise RuntimeError("the main process failed to cluster the embeddings") from payload[0]
    return payload[0]


def find_clustered_sampler(dataloader: Any) -> ClusteredBatchSampler:
    """The :class:`ClusteredBatchSampler` inside a (possibly accelerate-wrapped) dataloader: ``batch_sampler``
    attributes are followed through ``BatchSamplerShard`` and ``SkipBatchSampler``."""
    current = dataloader
    for _ in range(8):
        if isinstance(current, ClusteredBatchSampler):
            return current
        current = getattr(current, "batch_sampler", None)
        if current is None:
            break
    raise ValueError(
        f"no ClusteredBatchSampler in the training dataloader ({type(dataloader).__name__}); set "
        "batch_sampler=ClusteredBatchSampler.configure(...) in the training arguments, or pass sampler= to "
        "ClusterRefreshCallback"
    )


class ClusterRefreshCallback(TrainerCallback):
    """Re-embeds the training items with the model being trained and gives the embeddings to the
    :class:`ClusteredBatchSampler`, so the clusters follow the encoder as it learns.

    By default it refreshes at the start of every epoch from the second on (the first epoch uses random batches
    unless ``refresh_at_start``); a refresh after a step (``every_n_steps``) re-plans the rest of the epoch, keeping
    the batches the dataloader has already fetched.

    Embeddings come from ``model.encode_query`` (``cluster_by="query"``) or ``model.encode_document`` (``"label"``)
    when the model has them, else ``model.encode``: eval mode, no gradient, L2-normalised float32; the model's
    train mode is restored after. Under several processes the encoding is sharded over them
    (``sentence_transformers.util.distributed.distributed_evaluation``) and the main process's embeddings decide
    the clusters (see :meth:`ClusteredBatchSampler.set_embeddings`).

    Args:
        every_n_epochs: refresh at the start of epochs ``N, 2N, ...`` (0-based); default 1 unless ``every_n_steps``.
        every_n_steps: refresh after global steps ``N, 2N, ...`` (not after the last step).
        refresh_at_start: also embed before the first epoch.
        batch_size: encoding batch size.
        sampler: the sampler to refresh; by default the one in the trainer's training dataloader.

    Checkpoints hold the sampler's clusters and the current epoch's plan (``cluster_sampler_state.npz``), and a run
    resumed from one trains on the same batches as the run that wrote it: the refresh due at the resumed epoch's
    start is skipped, since it would embed with the resumed model, not the one that planned the epoch.

    Attributes:
        refreshes: how many refreshes have run.

    Example::

        trainer = SentenceTransformerTrainer(
            model=model,
            args=SentenceTransformerTrainingArguments(
                output_dir="out", batch_sampler=ClusteredBatchSampler.configure(cluster_size=4)
            ),
            train_dataset=rows,
            loss=MultipleNegativesRankingLoss(model),
            callbacks=[ClusterRefreshCallback(refresh_at_start=True, every_n_epochs=2)],
        )
    """

    def __init__(
        self,
        every_n_epochs: int | None = None,
        every_n_steps: int | None = None,
        refresh_at_start: bool = False,
        batch_size: int = 256,
        sampler: ClusteredBatchSampler | None = None,
    ) -> None:
        if every_n_epochs is not None and every_n_steps is not None:
            raise ValueError(
                f"give every_n_epochs or every_n_steps, not both (got {every_n_epochs!r} and {every_n_steps!r})"
            )
        for name, value in (("every_n_epochs", every_n_epochs), ("every_n_steps", every_n_steps)):
            if value is not None:
                check_int(value, name)
        check_int(batch_size, "batch_size")
        self.every_n_epochs = 1 if every_n_epochs is None and every_n_steps is None else every_n_epochs
        self.every_n_steps = every_n_steps
        self.refresh_at_start = refresh_at_start
        self.batch_size = batch_size
        self.sampler = sampler
        self.refreshes = 0
        self._resumed_epoch: int | None = None

    def on_epoch_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        # The trainer sets the sampler's epoch after this event, so this refresh plans the whole new epoch.
        epoch = math.floor(state.epoch + 1e-6)
        if epoch == self._resumed_epoch:
            self._resumed_epoch = None  # the checkpoint's plan for this epoch is already in the sampler
            return
        if epoch == 0:
            due = self.refresh_at_start
        else:
            due = self.every_n_epochs is not None and epoch % self.every_n_epochs == 0
        if due:
            self.refresh(kwargs["model"], kwargs.get("train_dataloader"))

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self._resumed_epoch = None
        if state.global_step == 0:
            return
        checkpoint = args.resume_from_checkpoint or Path(args.output_dir) / f"checkpoint-{state.global_step}"
        path = Path(checkpoint) / CLUSTER_STATE_FILE
        if not path.is_file():
            logger.warning(
                "resuming at step %d without %s: the clusters are re-embedded with the resumed model, so the rest of "
                "the epoch is batched differently from the interrupted run",
                state.global_step,
                path,
            )
            return
        with np.load(path) as saved:
            state_dict = {name: saved[name] for name in saved.files}
        self._sampler(kwargs.get("train_dataloader")).load_state_dict(state_dict)
        self._resumed_epoch = int(state_dict["epoch"])

    def on_save(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        if state.is_world_process_zero:
            checkpoint = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            np.savez(checkpoint / CLUSTER_STATE_FILE, **self._sampler(kwargs.get("train_dataloader")).state_dict())

    def _sampler(self, train_dataloader: Any) -> ClusteredBatchSampler:
        return self.sampler if self.sampler is not None else find_clustered_sampler(train_dataloader)

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        if self.every_n_steps and state.global_step % self.every_n_steps == 0 and state.global_step < state.max_steps:
            self.refresh(kwargs["model"], kwargs.get("train_dataloader"))

    def refresh(self, model: Any, train_dataloader: Any = None) -> None:
        """Embed the sampler's items with ``model`` and hand the embeddings to the sampler (collective under
        several processes: call it on every process)."""
        sampler = self._sampler(train_dataloader)
        encode = getattr(model, "encode_query" if sampler.cluster_by == "query" else "encode_document", model.encode)
        was_training = model.training
        embeddings = None
        try:
            model.eval()
            with torch.no_grad(), distributed_evaluation(model) as is_main_process:
                if is_main_process:
                    embeddings = embed_texts(encode, sampler.embedding_texts(), self.batch_size)
        finally:
            model.train(was_training)
        sampler.set_embeddings(embeddings)
        self.refreshes += 1
