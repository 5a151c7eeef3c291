"""The loss the train program composes from its options: ``TCMLoss(ALCLoss(backbone))`` with the parts switched on
(:func:`build_loss`, where the backbones' names are resolved and nowhere else), and where the parts sit in a chain of
wrapping losses. The trainer sums the parts a loss returns (sentence-transformers logs each one): see
:meth:`alc_hf.losses.TCMLoss.forward` for the dictionary of parts."""

from __future__ import annotations

from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
from torch import nn

from alc_hf.losses import (
    ALCLoss,
    CachedLoss,
    HardestNegativeTripletLoss,
    MultiPositiveSoftmaxLoss,
    PairHead,
    TCMLoss,
)
from alc_hf.losses.base import loss_chain

__all__ = [
    "BACKBONES",
    "build_loss",
    "check_hardness_options",
    "find_alc_loss",
    "find_pair_head",
    "pair_head_learning_rates",
]

# The backbones the recipe names; the loss classes themselves take loss objects.
BACKBONES = {
    "softmax": MultiPositiveSoftmaxLoss,
    "triplet": HardestNegativeTripletLoss,
    "mnrl": MultipleNegativesRankingLoss,
}


def build_loss(
    model: SentenceTransformer,
    base_loss: str | nn.Module = "softmax",
    alc: bool = True,
    ql_weight: float = 1.0,
    qb_weight: float = 1.0,
    num_negatives: int = 2,
    pair_head_hidden_dim: int | None = None,
    head_warmup_steps: int = 0,
    tcm: bool = True,
    pos_margin: float = 0.9,
    neg_margin: float = 0.5,
    mini_batch_size: int | None = None,
    hardness_mode: str | None = None,
    hardness_strength: float = 0.0,
    gather_across_devices: bool = False,
) -> nn.Module:
    """``TCMLoss(ALCLoss(base_loss))`` with the parts switched on, or the backbone alone when both are off; with
    ``mini_batch_size``, inside :class:`~alc_hf.CachedLoss` (the same loss and gradients, bounded memory).

    ``base_loss`` is a backbone's name (:data:`BACKBONES`, resolved here and nowhere else) or a loss object that
    can share embeddings (such as ``MultipleNegativesRankingLoss(model)``). ``hardness_mode`` and
    ``hardness_strength`` go to ``"mnrl"`` (sentence-transformers' weighting of the hardest negatives)."""
    check_hardness_options(base_loss, hardness_mode)
    if isinstance(base_loss, str):
        if base_loss not in BACKBONES:
            raise ValueError(f"unknown base_loss {base_loss!r}; expected one of {sorted(BACKBONES)} or a loss object")
        hardness = {"hardness_mode": hardness_mode, "hardness_strength": hardness_strength} if hardness_mode else {}
        base_loss = BACKBONES[base_loss](model, gather_across_devices=gather_across_devices, **hardness)
    loss = base_loss
    if alc:
        loss = ALCLoss(
            model,
            base_loss=loss,
            ql_weight=ql_weight,
            qb_weight=qb_weight,
            num_negatives=num_negatives,
            pair_head_hidden_dim=pair_head_hidden_dim,
            head_warmup_steps=head_warmup_steps,
            gather_across_devices=gather_across_devices,
        )
    if tcm:
        loss = TCMLoss(
            model,
            base_loss=loss,
            pos_margin=pos_margin,
            neg_margin=neg_margin,
            gather_across_devices=gather_across_devices,
        )
    if mini_batch_size is not None:
        loss = CachedLoss(loss, mini_batch_size=mini_batch_size)
    return loss


def check_hardness_options(base_loss: str | nn.Module, hardness_mode: str | None) -> None:
    """The ValueError for a hardness weighting asked of a backbone that has none (callable before a model exists)."""
    if hardness_mode is not None and base_loss != "mnrl":
        raise ValueError(
            f"hardness_mode {hardness_mode!r} weights MultipleNegativesRankingLoss's hardest negatives: it needs "
            f"base_loss 'mnrl', got {base_loss!r}"
        )


def find_alc_loss(loss: nn.Module) -> ALCLoss | None:
    """The ALCLoss in a chain of wrapping losses, if any."""
    return next((part for part in loss_chain(loss) if isinstance(part, ALCLoss)), None)


def find_pair_head(loss: nn.Module) -> PairHead | None:
    """The pair head trained by the ALCLoss in ``loss``, if any."""
    alc_loss = find_alc_loss(loss)
    return None if alc_loss is None else alc_loss.pair_head


def pair_head_learning_rates(loss: nn.Module, learning_rate: float) -> dict[str, float]:
    """``learning_rate_mapping`` entries that give the pair head its own learning rate (none without a head: the
    trainer refuses a pattern that matches no parameter)."""
    return {r"pair_head\.": learning_rate} if find_alc_loss(loss) is not None else {}
