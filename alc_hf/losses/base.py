"""The shared base of the alc_hf losses: the scored batch every objective shares, the base class that embeds once and
scores once, and the base of the losses that wrap another.

The ``label`` column
--------------------
A batch has one query column and C label columns: the positive, then any hard-negative columns. The optional
``label`` column is a rectangular list of ints per row, padded with ``-1``::

    [id(positive), id(negative_1), ..., id(negative_{C-1}), other_positive_id, ..., -1, -1]

- the first C entries are the label ids of the row's own label texts, in column order (``-1`` for a hard
  negative whose id is unknown: it then only matches itself);
- the rest are further positive label ids of the row's query (all of them, for multi-label data), padded with
  ``-1`` to a common width. The row's own positive is always a positive and need not be repeated.

A candidate is a positive of query i when its id is among i's positive ids; it is then never used as a negative
(its own positive, its other positives, the same label appearing twice in the batch). A plain ``[B]`` column of
positive ids is accepted when there are no hard-negative columns.

Without a ``label`` column, candidates are identified by their tokenised text: identical label texts are the same
label, and rows with identical query texts share their positives.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from sentence_transformers.base.losses.gradcache import uses_gradient_cache
from sentence_transformers.base.losses.merged_forward import embed_columns
from sentence_transformers.sentence_transformer.model import SentenceTransformer
from sentence_transformers.util import all_gather, all_gather_with_grad, get_rank, get_world_size
from torch import Tensor, nn

from alc_hf.losses.functional import positive_mask_from_ids, token_sequence_keys

# --------------------------------------------------------------------------------------------------------------
# processes


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and get_world_size() > 1


def sum_across_processes(tensor: Tensor) -> Tensor:
    """The element-wise sum over processes of a tensor that needs no gradient (counts, for global means)."""
    if not is_distributed():
        return tensor
    tensor = tensor.detach().clone()
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def average_gradients_across_processes(module: nn.Module) -> None:
    """Make ``module``'s parameter gradients the average over processes, as DDP does for the encoder.

    The trainer wraps only the encoder in DistributedDataParallel; parameters owned by a loss (the ALC pair
    head) would otherwise receive each process's own gradient and drift apart. Every process runs the same
    backward graph, so the hooks fire in the same order everywhere. Idempotent.
    """
    if getattr(module, "_alc_hf_gradients_averaged", False):
        return

    def average(gradient: Tensor) -> Tensor:
        gradient = gradient.clone()
        dist.all_reduce(gradient, op=dist.ReduceOp.SUM)
        return gradient / get_world_size()

    for parameter in module.parameters():
        if parameter.requires_grad:
            parameter.register_hook(average)
    module._alc_hf_gradients_averaged = True


# --------------------------------------------------------------------------------------------------------------
# the scored batch


def label_ids_from_texts(sentence_features: list[dict[str, Tensor]], gather_across_devices: bool) -> Tensor | None:
    """Build the ``label`` column format from the tokenised texts (identical texts = the same label).

    Returns None when the features carry no ``input_ids`` (then only a row's own positive is its positive).
    """
    if any("input_ids" not in features for features in sentence_features):
        return None
    keys = [token_sequence_keys(f["input_ids"], f.get("attention_mask")) for f in sentence_features]
    query_keys, candidate_keys = keys[0], torch.stack(keys[1:], dim=1)
    own_positive_keys = candidate_keys[:, 0]
    if gather_across_devices and is_distributed():
        all_query_keys, all_positive_keys = all_gather(query_keys), all_gather(own_positive_keys)
    else:
        all_query_keys, all_positive_keys = query_keys, own_positive_keys
    # The positives of every row (on any process) whose query text equals this row's query text.
    same_query = query_keys.unsqueeze(1) == all_query_keys.unsqueeze(0)
    shared_positives = torch.where(same_query, all_positive_keys.unsqueeze(0), -1)
    # Keys are non-negative, so a descending sort puts the real ones first; keep only as many columns as needed.
    shared_positives = shared_positives.sort(dim=1, descending=True).values
    width = int(same_query.sum(dim=1).max())
    return torch.cat([candidate_keys, shared_positives[:, :width]], dim=1)


@dataclass
class ScoredBatch:
    """Embeddings, cosine scores and positive mask of one batch, computed once and shared by every objective.

    Attributes:
        embeddings: the raw per-column embeddings (query column first), as the encoder returned them.
        labels: the ``label`` tensor the trainer passed (or built from texts), or None.
        queries: ``[B, d]`` L2-normalised local query embeddings, float32.
        candidates: ``[M, d]`` L2-normalised label candidates, float32: each label column in order, each gathered
            over processes when ``gathered``.
        scores: ``[B, M]`` float32 cosine similarities of local queries to all candidates, computed outside
            autocast whatever the training precision.
        positive_mask: ``[B, M]`` True where the candidate is a positive of the query.
        positive_index: ``[B]`` the column of each query's own positive.
        gathered: whether candidates come from every process (then counts must be reduced across processes).
    """

    embeddings: list[Tensor]
    labels: Tensor | None
    queries: Tensor
    candidates: Tensor
    scores: Tensor
    positive_mask: Tensor
    positive_index: Tensor
    gathered: bool

    @classmethod
    def build(cls, embeddings: list[Tensor], labels: Tensor | None, gather_across_devices: bool) -> ScoredBatch:
        if len(embeddings) < 2:
            raise ValueError(f"expected a query column and at least one label column, got {len(embeddings)} column(s)")
        num_label_columns = len(embeddings) - 1
        batch_size = embeddings[0].size(0)
        candidate_ids, positive_ids = _split_label_ids(labels, batch_size, num_label_columns, embeddings[0].device)

        gathered = gather_across_devices and is_distributed()
        # Under mixed precision the encoder's output is half precision; the losses compare cosines with margins a
        # few thousandths apart (bf16 keeps about three digits), so everything scored here is float32.
        columns = [F.normalize(column.float(), dim=-1) for column in embeddings[1:]]
        offset = 0
        if gathered:
            columns = [all_gather_with_grad(column) for column in columns]
            candidate_ids = torch.stack([all_gather(candidate_ids[:, c]) for c in range(num_label_columns)], dim=1)
            offset = get_rank() * batch_size
        queries = F.normalize(embeddings[0].float(), dim=-1)
        candidates = torch.cat(columns, dim=0)
        with torch.autocast(queries.device.type, enabled=False):
            scores = queries @ candidates.T
        positive_index = torch.arange(offset, offset + batch_size, device=queries.device)
        # Column-major flattening matches the order of `candidates`: all positives, then each negative column.
        positive_mask = positive_mask_from_ids(candidate_ids.T.reshape(-1), positive_ids)
        # A row's own positive is a positive even when its id is unknown (-1).
        positive_mask[torch.arange(batch_size, device=queries.device), positive_index] = True
        return cls(
            embeddings=embeddings,
            labels=labels,
            queries=queries,
            candidates=candidates,
            scores=scores,
            positive_mask=positive_mask,
            positive_index=positive_index,
            gathered=gathered,
        )


def _split_label_ids(
    labels: Tensor | None, batch_size: int, num_label_columns: int, device: torch.device
) -> tuple[Tensor, Tensor]:
    """``(candidate_ids [B, C], positive_ids [B, W])`` from the ``label`` column; unknown ids are -1."""
    if labels is None:
        unknown = torch.full((batch_size, num_label_columns), -1, dtype=torch.long, device=device)
        return unknown, unknown[:, :1]
    if labels.dim() == 1:
        labels = labels.unsqueeze(1)
    if labels.dim() != 2 or labels.size(0) != batch_size:
        raise ValueError(
            f"the 'label' column must hold one list of ints per row ({batch_size} rows), "
            f"got shape {tuple(labels.shape)}"
        )
    if labels.is_floating_point():
        raise ValueError(f"the 'label' column must hold integer label ids, got dtype {labels.dtype}")
    if labels.size(1) < num_label_columns:
        raise ValueError(
            f"the 'label' column has {labels.size(1)} entries per row but the batch has {num_label_columns} label "
            f"column(s) (positive + {num_label_columns - 1} hard negative(s)); expected at least {num_label_columns}: "
            "the ids of the row's label texts in column order, then the query's other positive ids padded with -1"
        )
    labels = labels.long().to(device)
    candidate_ids = labels[:, :num_label_columns]
    positive_ids = torch.cat([labels[:, :1], labels[:, num_label_columns:]], dim=1)
    return candidate_ids, positive_ids


# --------------------------------------------------------------------------------------------------------------
# the losses


class LossParts(dict):
    """A loss's named parts (``{"base": ..., "tcm": ...}``): a dict, so the trainer logs each part and optimises
    their sum, that also scales and adds like a number, so sentence-transformers' loss modifiers that weigh and sum
    the losses they wrap (``MatryoshkaLoss``: ``loss += weight * inner(...)``) keep working and keep the parts named.

    ``parts * w`` and ``parts / w`` scale every part by a number or a 0-dim tensor; ``a + b`` adds two ``LossParts``
    part by part (a part only one has is kept); ``0 + parts`` is ``parts`` (the start of a sum). Adding a bare
    number or tensor is a ``TypeError``: there is no telling which part it belongs to.
    """

    def __mul__(self, weight: float | Tensor) -> LossParts:
        if isinstance(weight, dict) or (isinstance(weight, Tensor) and weight.dim() != 0):
            return NotImplemented
        return LossParts({name: value * weight for name, value in self.items()})

    __rmul__ = __mul__

    def __truediv__(self, divisor: float | Tensor) -> LossParts:
        return self * (1 / divisor)

    def __add__(self, other: LossParts | float) -> LossParts:
        if isinstance(other, (int, float)) and other == 0:
            return LossParts(self)
        if not isinstance(other, dict):
            raise TypeError(
                f"cannot add {type(other).__name__} {other!r} to named loss parts {sorted(self)}: there is no telling "
                "which part it belongs to (a loss modifier that adds a term of its own to the loss it wraps, such as "
                "AdaptiveLayerLoss, cannot wrap alc_hf's losses)"
            )
        summed = LossParts(self)
        for name, value in other.items():
            summed[name] = summed[name] + value if name in summed else value
        return summed

    __radd__ = __add__


class InBatchLoss(nn.Module):
    """A loss over in-batch (query, label) candidates that can share its scored batch with other objectives.

    Subclasses implement :meth:`loss_parts`. ``forward`` runs the encoder once per text column (one merged pass
    where the columns allow it) and ``compute_loss_from_embeddings`` scores the batch once; wrapper losses
    (:class:`WrappingLoss`) hand the same :class:`ScoredBatch` to the loss they wrap, so however losses are composed
    the encoder runs once and the score matrix is computed once.
    """

    def __init__(self, model: SentenceTransformer, gather_across_devices: bool = False) -> None:
        super().__init__()
        # The attribute must be called `model`: the trainer swaps in the DDP-wrapped encoder through it.
        self.model = model
        self.gather_across_devices = gather_across_devices
        # Candidates every query was scored against in the last step (all processes' when gathered): a diagnostic.
        self.last_num_candidates: int | None = None

    def loss_parts(self, batch: ScoredBatch) -> dict[str, Tensor]:
        raise NotImplementedError

    def gathers_across_devices(self) -> bool:
        """True when this loss or any alc_hf loss it wraps asks for gathering: the shared batch is gathered then."""
        return any(getattr(loss, "gather_across_devices", False) for loss in loss_chain(self))

    def forward(
        self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor | None
    ) -> Tensor | dict[str, Tensor]:
        sentence_features = list(sentence_features)
        if labels is None:
            labels = label_ids_from_texts(sentence_features, self.gathers_across_devices())
        embeddings = embed_columns(self.model, sentence_features)
        return self.compute_loss_from_embeddings(embeddings, labels)

    def compute_loss_from_embeddings(
        self, embeddings: list[Tensor], labels: Tensor | None
    ) -> Tensor | dict[str, Tensor]:
        """The loss from precomputed column embeddings; a dict of named parts when there is more than one part."""
        batch = ScoredBatch.build(embeddings, labels, self.gathers_across_devices())
        self.last_num_candidates = batch.candidates.size(0)
        parts = self.loss_parts(batch)
        return LossParts(parts) if len(parts) > 1 else next(iter(parts.values()))

    def get_config_dict(self) -> dict[str, Any]:
        return {"gather_across_devices": self.gather_across_devices}


class WrappingLoss(InBatchLoss):
    """An objective added to a base loss that shares its embeddings (:class:`~alc_hf.ALCLoss`,
    :class:`~alc_hf.TCMLoss`): the base loss's parts come first, then this loss's own.

    ``base_loss`` is a loss object built on the same model: another alc_hf loss (which reuses the scored batch) or
    any sentence-transformers loss with ``compute_loss_from_embeddings`` (which reuses the embeddings), such as
    ``MultipleNegativesRankingLoss(model)``. The
    wrapped loss is kept in the attribute ``loss``: sentence-transformers follows it to list every composed loss
    (and its citation) in the model card.
    """

    def __init__(self, model: SentenceTransformer, base_loss: nn.Module, gather_across_devices: bool = False) -> None:
        super().__init__(model, gather_across_devices)
        owner = type(self).__name__
        if not isinstance(base_loss, nn.Module):
            raise TypeError(
                f"{owner}: base_loss must be a loss object such as HardestNegativeTripletLoss(model) or "
                f"MultipleNegativesRankingLoss(model), got {base_loss!r}; names such as 'softmax' and 'triplet' are "
                "resolved by alc_hf.training.build_loss"
            )
        if uses_gradient_cache(base_loss):
            raise TypeError(
                f"{owner} cannot wrap {type(base_loss).__name__}: {owner} needs the embeddings of the whole batch at "
                "once, with their gradients, to score every query against every candidate; a gradient-caching "
                "(GradCache) loss computes them in mini-batches and never holds them together. For a batch beyond "
                "memory, wrap the whole loss instead: CachedLoss(TCMLoss(model, ALCLoss(model)), mini_batch_size=64) "
                "(the recipe's --mini_batch_size); for MNRL as the base, MultipleNegativesRankingLoss(model) (the "
                "recipe's 'mnrl')"
            )
        if not callable(getattr(base_loss, "compute_loss_from_embeddings", None)):
            raise TypeError(
                f"{owner} cannot share embeddings with base_loss {type(base_loss).__name__}: it has no "
                "compute_loss_from_embeddings(embeddings, labels) method. Use a loss that has one (e.g. "
                "MultipleNegativesRankingLoss) or one of alc_hf's."
            )
        if getattr(base_loss, "model", model) is not model:
            raise ValueError(f"{owner} and its base_loss {type(base_loss).__name__} must be built on the same model")
        self.loss = base_loss

    @property
    def base_loss(self) -> nn.Module:
        return self.loss

    def base_loss_parts(self, batch: ScoredBatch) -> dict[str, Tensor]:
        """The wrapped loss's parts on the shared batch: alc_hf losses reuse the scores, others the embeddings."""
        if isinstance(self.loss, InBatchLoss):
            return self.loss.loss_parts(batch)
        result = self.loss.compute_loss_from_embeddings(batch.embeddings, batch.labels)
        return dict(result) if isinstance(result, dict) else {"base": result}

    def get_config_dict(self) -> dict[str, Any]:
        return {"base_loss": describe_loss(self.loss), **super().get_config_dict()}


def loss_chain(loss: nn.Module | None) -> Iterator[nn.Module]:
    """``loss`` and every loss it wraps, outermost first (each wrapper keeps the one it wraps in ``.loss``)."""
    while loss is not None:
        yield loss
        loss = getattr(loss, "loss", None)


def describe_loss(loss: nn.Module) -> str:
    """``Name(key=value, ...)`` from a loss's ``get_config_dict``, nested losses included, for model cards."""
    config = loss.get_config_dict() if hasattr(loss, "get_config_dict") else {}
    arguments = ", ".join(f"{key}={value!r}" for key, value in config.items())
    return f"{loss.__class__.__name__}({arguments})"


def check_weight(name: str, value: float) -> None:
    if not value >= 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
