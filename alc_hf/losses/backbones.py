"""Resolution of the ``base_loss`` argument shared by ALCLoss and TCMLoss."""

from __future__ import annotations

from sentence_transformers.sentence_transformer.model import SentenceTransformer
from torch import nn

from alc_hf.losses.hardest_negative_triplet import HardestNegativeTripletLoss
from alc_hf.losses.multi_positive_softmax import MultiPositiveSoftmaxLoss

BUILT_IN_BACKBONES = {"softmax": MultiPositiveSoftmaxLoss, "triplet": HardestNegativeTripletLoss}


def build_base_loss(
    model: SentenceTransformer, base_loss: str | nn.Module | None, owner: str, gather_across_devices: bool
) -> nn.Module:
    """``None``/``"softmax"``, ``"triplet"`` or a loss object that can share embeddings and trains ``model``."""
    if base_loss is None:
        base_loss = "softmax"
    if isinstance(base_loss, str):
        if base_loss not in BUILT_IN_BACKBONES:
            raise ValueError(
                f"{owner}: unknown base_loss {base_loss!r}; "
                f"expected one of {sorted(BUILT_IN_BACKBONES)} or a loss object"
            )
        return BUILT_IN_BACKBONES[base_loss](model, gather_across_devices=gather_across_devices)
    check_base_loss(model, base_loss, owner)
    return base_loss


def check_base_loss(model: SentenceTransformer, base_loss: nn.Module, owner: str) -> None:
    """A loss can be wrapped only if it can take shared embeddings and trains the same encoder."""
    if not callable(getattr(base_loss, "compute_loss_from_embeddings", None)):
        raise TypeError(
            f"{owner} cannot share embeddings with base_loss {base_loss.__class__.__name__}: it has no "
            "compute_loss_from_embeddings(embeddings, labels) method. Use a loss that has one (e.g. "
            "MultipleNegativesRankingLoss) or one of the built-in names."
        )
    if getattr(base_loss, "model", model) is not model:
        raise ValueError(f"{owner} and its base_loss {base_loss.__class__.__name__} must be built on the same model")
