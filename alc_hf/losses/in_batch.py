"""The base class of the alc_hf losses: embed once, score once, let each objective add its parts."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sentence_transformers.base.losses.merged_forward import embed_columns
from sentence_transformers.sentence_transformer.model import SentenceTransformer
from torch import Tensor, nn

from alc_hf.losses.batch import ScoredBatch, label_ids_from_texts


class InBatchLoss(nn.Module):
    """A loss over in-batch (query, label) candidates that can share its scored batch with other objectives.

    Subclasses implement :meth:`loss_parts`. ``forward`` runs the encoder once per text column (one merged pass
    where the columns allow it) and ``compute_loss_from_embeddings`` scores the batch once; wrapper losses
    (:class:`~alc_hf.ALCLoss`, :class:`~alc_hf.TCMLoss`) hand the same :class:`ScoredBatch` to the loss they wrap,
    so however losses are composed the encoder runs once and the score matrix is computed once.

    The loss a wrapper builds on is kept in the attribute ``loss``: sentence-transformers follows it to list every
    composed loss (and its citation) in the model card.
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
        inner = getattr(self, "loss", None)
        inner_gathers = isinstance(inner, InBatchLoss) and inner.gathers_across_devices()
        return self.gather_across_devices or inner_gathers

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
        return parts if len(parts) > 1 else next(iter(parts.values()))

    def get_config_dict(self) -> dict[str, Any]:
        return {"gather_across_devices": self.gather_across_devices}


def describe_loss(loss: nn.Module) -> str:
    """``Name(key=value, ...)`` from a loss's ``get_config_dict``, nested losses included, for model cards."""
    config = loss.get_config_dict() if hasattr(loss, "get_config_dict") else {}
    arguments = ", ".join(f"{key}={value!r}" for key, value in config.items())
    return f"{loss.__class__.__name__}({arguments})"


def base_loss_parts(loss: nn.Module, batch: ScoredBatch) -> dict[str, Tensor]:
    """The parts of a wrapped loss on the shared batch: alc_hf losses reuse the scores, others the embeddings."""
    if isinstance(loss, InBatchLoss):
        return loss.loss_parts(batch)
    result = loss.compute_loss_from_embeddings(batch.embeddings, batch.labels)
    return dict(result) if isinstance(result, dict) else {"base": result}


def check_weight(name: str, value: float) -> None:
    if not value >= 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
