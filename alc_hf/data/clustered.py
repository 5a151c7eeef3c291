"""Clustered hard batches: training rows whose queries (or labels) are neighbours in the encoder's space share a batch.

The alc_hf auxiliary objectives and TCM are built on the hardest in-batch negatives, and a batch of random product
offers rarely holds a hard one. XMC trainers (NGAME, SiameseXML) therefore cluster the training queries with the
current encoder, every few epochs, and build each batch from a few whole clusters, so the in-batch negatives are
near-duplicates. :class:`ClusteredBatchSampler` does this for any loss (``MultipleNegativesRankingLoss`` included),
keeping the guarantees of :class:`~alc_hf.data.sampler.UniqueQueryLabelBatchSampler`: no query and no label twice
in a batch, every row once per epoch, deterministic per seed and epoch. :class:`ClusterRefreshCallback` re-embeds
with the model being trained and hands the embeddings to the sampler; :func:`batch_hardness` measures the result.

Usage: see :class:`ClusterRefreshCallback`'s example and docs/data.md. The callback finds the sampler in the
trainer's training dataloader, so nothing else needs wiring; outside the trainer, call
:meth:`ClusteredBatchSampler.set_embeddings` yourself (rows follow :meth:`ClusteredBatchSampler.embedding_texts`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import faiss
import numpy as np
import pyarrow as pa
import torch
import torch.distributed as dist
from datasets import Dataset
from sentence_transformers.util import get_rank, get_world_size
from sentence_transformers.util.distributed import distributed_evaluation
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from alc_hf.data.query_labels import RaggedIds, check_int, checked_row_norms
from alc_hf.data.sampler import UniqueQueryLabelBatchSampler, _dense_ids, _group_ranks, pack_unique_batches
from alc_hf.models import embed_texts

__all__ = [
    "CLUSTER_BY",
    "ClusterRefreshCallback",
    "ClusteredBatchSampler",
    "batch_hardness",
    "find_clustered_sampler",
    "hardest_negative_cosines",
    "neighbour_clusters",
]

logger = logging.getLogger(__name__)
T = TypeVar("T")

CLUSTER_BY = ("query", "label")
# Coarse cells hold about this many items. The neighbour search inside a cell costs O(cell² · dim) time and a larger
# cell loses fewer neighbours across its border; on all-MiniLM-L6-v2 embeddings of 34,628 product titles the mean
# cosine to the best cluster mate stayed within 0.825-0.829 for cells of 256 to 2,048.
_CELL_SIZE = 1024
_MAX_CELL = 2 * _CELL_SIZE
# Centroids per faiss k-means call. faiss trains on up to 256 points per centroid, so one call costs O(k² · dim):
# above this, cells are split again rather than made by a larger k.
_MAX_CENTROIDS = 256
_KMEANS_ITERATIONS = 10
# Nearest neighbours each row looks up in its cell (faiss.knn); a seed whose neighbours are all taken by earlier
# groups searches its whole cell.
_NEIGHBOURS = 32
# Rows whose norm is this close to 1 are used as they are (float32 normalisation leaves errors of about 1e-7).
_UNIT_NORM_TOLERANCE = 1e-5
# Embedding values gathered at once by hardest_negative_cosines (bounds its memory).
_HARDNESS_BLOCK = 1 << 22
# Written into each checkpoint folder by ClusterRefreshCallback.
CLUSTER_STATE_FILE = "cluster_sampler_state.npz"


def neighbour_clusters(embeddings: np.ndarray, cluster_size: int, seed: int = 0) -> np.ndarray:
    """Cluster id (``0 .. k-1``) of each row of ``embeddings``: groups of ``cluster_size`` rows that are close in
    cosine similarity.

    Two stages, so the cost is about ``n · dim · (256 + 1,024)`` instead of the ``n² · dim / cluster_size`` of one
    k-means with ``n / cluster_size`` centroids:

    1. coarse cells of about 1,024 rows: faiss spherical k-means, at most 256 centroids per call, applied again to
       any cell above 2,048 rows (a cell above 2,048 rows that keeps more than half of the rows it was split from,
       e.g. of near-identical rows, is cut into equal parts instead, so the depth stays O(log n));
    2. greedy grouping inside each cell: rows in order of decreasing similarity to their nearest neighbour; each
       row not yet grouped takes the ``cluster_size - 1`` most similar rows of its cell not yet grouped.

    Every cluster has exactly ``cluster_size`` rows except the last one of each cell (its remainder). Deterministic
    for the same input, seed and faiss thread count; computed on one process, since bit-level differences in the
    embeddings can change it.

    Args:
        embeddings: ``[n, dim]`` real values, finite, no all-zero row (rows are L2-normalised here).
        cluster_size: rows per cluster, >= 1.
        seed: seed of the k-means initialisation.

    Raises:
        ValueError: ``cluster_size`` below 1, embeddings that are not 2-D, hold NaN or inf, or have a zero row.
    """
    cluster_size = check_int(cluster_size, "cluster_size")
    vectors = _normalised_rows(embeddings)
    cluster_of = np.empty(len(vectors), dtype=np.int64)
    next_cluster = 0
    for members in _coarse_cells(vectors, int(seed) % (1 << 31)):
        next_cluster = _group_cell(vectors, members, cluster_size, next_cluster, cluster_of)
    return cluster_of


def _normalised_rows(embeddings: np.ndarray) -> np.ndarray:
    """The rows as float32, C-contiguous and L2-normalised, never modifying ``embeddings`` (an input that already
    is so is used as it is: the callback's 294,805 x 384 embeddings are 450 MB); errors name the first bad row."""
    array = np.asarray(embeddings)
    if array.ndim != 2 or array.shape[1] == 0:
        raise ValueError(f"embeddings must be a 2-D [n, dim] array with dim >= 1, got shape {array.shape}")
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise ValueError(f"embeddings must hold real numbers, got dtype {array.dtype}")
    norms = checked_row_norms(array, "embeddings")
    vectors = np.ascontiguousarray(array, dtype=np.float32)
    if np.abs(norms - 1).max(initial=0) <= _UNIT_NORM_TOLERANCE:
        return vectors
    if np.may_share_memory(vectors, array):
        return vectors / norms[:, None]
    vectors /= norms[:, None]
    return vectors


def _coarse_cells(vectors: np.ndarray, seed: int) -> list[np.ndarray]:
    """Row indices of cells of at most ``_MAX_CELL`` rows, each made of rows close to one k-means centroid."""
    cells: list[np.ndarray] = []
    pending = [np.arange(len(vectors), dtype=np.int64)]
    while pending:
        members = pending.pop()
        if len(members) <= _MAX_CELL:
            cells.append(members)
            continue
        k = min(_MAX_CENTROIDS, math.ceil(len(members) / _CELL_SIZE))
        part = vectors if len(members) == len(vectors) else vectors[members]
        kmeans = faiss.Kmeans(vectors.shape[1], k, niter=_KMEANS_ITERATIONS, seed=seed, spherical=True)
        kmeans.train(part)
        _, nearest = kmeans.index.search(part, 1)
        nearest = nearest[:, 0]
        order = np.argsort(nearest, kind="stable")
        for part in np.split(members[order], np.flatnonzero(np.diff(nearest[order])) + 1):
            # k-means found no structure in it (e.g. near-identical rows): equal parts, so every round halves.
            stuck = 2 * len(part) > len(members) and len(part) > _MAX_CELL
            pending.extend(np.array_split(part, math.ceil(len(part) / _CELL_SIZE)) if stuck else [part])
    return cells


def _group_cell(
    vectors: np.ndarray, members: np.ndarray, cluster_size: int, first_cluster: int, cluster_of: np.ndarray
) -> int:
    """Greedy groups of ``cluster_size`` nearest rows within one cell, numbered from ``first_cluster`` into
    ``cluster_of``; returns the next free cluster number."""
    size = len(members)
    if size <= cluster_size:
        cluster_of[members] = first_cluster
        return first_cluster + 1
    cell = vectors[members]
    # Each row finds itself too (first, or tied with its duplicates); it is skipped below as no longer free.
    scores, nearest = faiss.knn(cell, cell, min(_NEIGHBOURS, size - 1) + 1, metric=faiss.METRIC_INNER_PRODUCT)
    neighbours = nearest.tolist()
    free = [True] * size
    local = np.empty(size, dtype=np.int64)
    left = size
    cluster = first_cluster
    # Densest rows first: they have the closest neighbours to give, and take them before others do.
    for seed in np.argsort(-scores[:, 1], kind="stable").tolist():
        if not free[seed]:
            continue
        free[seed] = False
        want = min(cluster_size, left) - 1
        group = [seed]
        for j in neighbours[seed]:
            if len(group) > want:
                break
            if free[j]:
                free[j] = False
                group.append(j)
        if len(group) <= want:  # the seed's nearest rows are taken: search its whole cell
            similarity = cell @ cell[seed]
            similarity[~np.array(free)] = -np.inf
            missing = want + 1 - len(group)
            extra = np.argpartition(similarity, size - missing)[size - missing :].tolist()
            for j in extra:
                free[j] = False
            group += extra
        local[group] = cluster
        left -= len(group)
        cluster += 1
    cluster_of[members] = local
    return cluster


def _cluster_order(items: np.ndarray, clusters: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A permutation of rows (``items``: each row's item id, ``clusters``: its item's cluster) that puts the rows
    of one cluster next to each other, the clusters in random order.

    A cluster is visited once per row of its largest item: the j-th rows of its items (random ranks) are served
    together at its j-th visit, and a cluster's ``m`` visits are spread evenly over the epoch (visit ``j`` at the
    key ``(j + offset) / m``, ``offset`` the cluster's random place in [0, 1)). This is the spreading of
    ``_spread_order`` applied to clusters: a query with 200 positives meets its cluster again and again instead of
    filling a run of batches that could each take only one of its rows.
    """
    rank, _ = _group_ranks(_dense_ids(items), rng)
    cluster = _dense_ids(clusters)
    num_clusters = int(cluster.max()) + 1
    visits = np.zeros(num_clusters, dtype=np.int64)
    np.maximum.at(visits, cluster, rank + 1)
    place = rng.permutation(num_clusters)[cluster]
    key = (rank + (place + 0.5) / num_clusters) / visits[cluster]
    return np.lexsort((rng.random(len(items)), place, key))


class ClusteredBatchSampler(UniqueQueryLabelBatchSampler):
    """:class:`~alc_hf.data.sampler.UniqueQueryLabelBatchSampler` whose batches are made of clusters of neighbours.

    Each epoch the rows are ordered cluster by cluster (clusters in a random order from the seed-and-epoch RNG) and
    packed into batches by :func:`~alc_hf.data.sampler.pack_unique_batches`: still no query and no label twice in a
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


def hardest_negative_cosines(
    batches: Sequence[Sequence[int]],
    query_embeddings: np.ndarray,
    positive_embeddings: np.ndarray,
    label_ids: np.ndarray,
    positive_ids: np.ndarray | None = None,
) -> np.ndarray:
    """Per row, the cosine between its query and its hardest in-batch negative: the most similar positive label of
    another row of its batch that is not a positive of its query. NaN for rows no batch serves and rows whose batch
    offers no negative.

    Args:
        batches: the plan: lists of row indices.
        query_embeddings: ``[num_rows, dim]`` L2-normalised embedding of each row's query.
        positive_embeddings: ``[num_rows, dim]`` L2-normalised embedding of each row's positive label.
        label_ids: ``[num_rows]`` each row's positive label id (the first entry of the ``label`` column).
        positive_ids: ``[num_rows, width]`` all positive label ids of each row's query, -1 padded (the tail of the
            ``label`` column); a candidate whose label id is among them is a positive, not a negative. None: a
            row's only positive is its own label.

    Raises:
        ValueError: arrays whose shapes disagree, or a batch with a row index out of range.
    """
    queries = np.asarray(query_embeddings, dtype=np.float32)
    positives = np.asarray(positive_embeddings, dtype=np.float32)
    labels = np.asarray(label_ids, dtype=np.int64)
    num_rows = len(labels)
    if queries.ndim != 2 or queries.shape != positives.shape or queries.shape[0] != num_rows or labels.ndim != 1:
        raise ValueError(
            f"query_embeddings and positive_embeddings must both be [num_rows, dim] and label_ids [num_rows]; got "
            f"{queries.shape}, {positives.shape} and {labels.shape}"
        )
    if positive_ids is not None:
        positive_ids = np.asarray(positive_ids, dtype=np.int64)
        if positive_ids.ndim != 2 or positive_ids.shape[0] != num_rows:
            raise ValueError(f"positive_ids must be [{num_rows}, width], got shape {positive_ids.shape}")
    hardest = np.full(num_rows, np.nan, dtype=np.float32)
    plan = RaggedIds.from_lists(batches)
    if plan.ids.size == 0:
        return hardest
    if plan.ids.min() < 0 or plan.ids.max() >= num_rows:
        raise ValueError(f"batches hold row indices outside [0, {num_rows})")
    padded = plan.padded()
    step = max(1, _HARDNESS_BLOCK // (padded.shape[1] * queries.shape[1]))
    for start in range(0, len(batches), step):
        rows = padded[start : start + step]
        valid = rows >= 0
        safe = np.where(valid, rows, 0)
        # similarity[b, i, j]: query of row i against the positive label of row j, both in batch b.
        similarity = queries[safe] @ positives[safe].transpose(0, 2, 1)
        candidate = labels[safe]
        positive = candidate[:, None, :] == candidate[:, :, None]
        if positive_ids is not None:
            for column in positive_ids[safe].transpose(2, 0, 1):
                positive |= (column[:, :, None] == candidate[:, None, :]) & (column[:, :, None] >= 0)
        similarity[positive | ~valid[:, None, :]] = -np.inf
        best = similarity.max(axis=2)
        best[best == -np.inf] = np.nan
        hardest[rows[valid]] = best[valid]
    return hardest


def batch_hardness(
    batches: Sequence[Sequence[int]],
    query_embeddings: np.ndarray,
    positive_embeddings: np.ndarray,
    label_ids: np.ndarray,
    positive_ids: np.ndarray | None = None,
) -> float:
    """Mean over the served rows of :func:`hardest_negative_cosines` (rows without a negative left out; NaN when
    no row has one): how hard a plan's in-batch negatives are. Random batches of product offers score low,
    batches of near-duplicates high."""
    hardest = hardest_negative_cosines(batches, query_embeddings, positive_embeddings, label_ids, positive_ids)
    found = hardest[np.isfinite(hardest)]
    return float(found.mean(dtype=np.float64)) if found.size else math.nan
