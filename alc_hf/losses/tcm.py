from __future__ import annotations

from typing import Any

import torch
from sentence_transformers.sentence_transformer.model import SentenceTransformer
from sentence_transformers.util import get_world_size
from torch import Tensor, nn

from alc_hf.losses.base import ScoredBatch, WrappingLoss, check_weight, sum_across_processes
from alc_hf.losses.multi_positive_softmax import MultiPositiveSoftmaxLoss


def tcm_violation_sums(
    scores: Tensor, positive_mask: Tensor, pos_margin: float = 0.9, neg_margin: float = 0.5
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Sums and counts of the TCM margin violations: ``(pos_sum, pos_count, neg_sum, neg_count)``.

    Positive pairs below ``pos_margin`` contribute ``pos_margin - s``; negative pairs above ``neg_margin``
    contribute ``s - neg_margin``. Counts carry no gradient. Sums and counts are kept apart so that several
    processes can divide their local sums by the counts of the whole (gathered) batch.
    """
    positive_violation = (pos_margin - scores).clamp(min=0) * positive_mask
    negative_violation = (scores - neg_margin).clamp(min=0) * ~positive_mask
    positive_count = ((scores < pos_margin) & positive_mask).sum()
    negative_count = ((scores > neg_margin) & ~positive_mask).sum()
    return positive_violation.sum(), positive_count, negative_violation.sum(), negative_count


def tcm_from_violation_sums(
    pos_sum: Tensor, pos_count: Tensor, neg_sum: Tensor, neg_count: Tensor, pos_weight: float, neg_weight: float
) -> Tensor:
    """Combine :func:`tcm_violation_sums` into the TCM value: weighted means over the violating pairs (0 if none)."""
    return pos_weight * pos_sum / pos_count.clamp(min=1) + neg_weight * neg_sum / neg_count.clamp(min=1)


class TCMLoss(WrappingLoss):
    def __init__(
        self,
        model: SentenceTransformer,
        base_loss: nn.Module | None = None,
        pos_margin: float = 0.9,
        neg_margin: float = 0.5,
        pos_weight: float = 1.0,
        neg_weight: float = 1.0,
        gather_across_devices: bool = False,
    ) -> None:
        """Threshold-Consistent Margin regulariser added to a base loss::

            loss = L_base + λ+ · mean_{s in S+, s < m+} (m+ - s) + λ- · mean_{s in S-, s > m-} (s - m-)

        over the cosine similarities of the batch's positive pairs S+ and negative pairs S- (every query against
        every in-batch candidate, hard negative columns included; positives per the ``label`` ids or identical
        texts). Each mean runs over the violating pairs only; a term with no violating pair is 0. It pulls every
        positive above m+ and pushes every negative below m-, so one global threshold separates them for all
        products alike. With ``gather_across_devices`` the means run over the whole global batch.

        Args:
            model: the SentenceTransformer to train.
            base_loss: the loss TCM is added to, built on ``model``: an alc_hf loss (None:
                :class:`~alc_hf.losses.MultiPositiveSoftmaxLoss`; an :class:`~alc_hf.ALCLoss`, ...), which shares the
                scored batch, or any loss with ``compute_loss_from_embeddings``.
            pos_margin: m+, in [-1, 1].
            neg_margin: m-, in [-1, 1] and below m+.
            pos_weight: λ+ (>= 0).
            neg_weight: λ- (>= 0).
            gather_across_devices: gather label candidates (with gradient) from every process.

        Inputs:
            +-------------------------------------------------+-----------------------------------------------------+
            | Texts                                           | Labels                                              |
            +=================================================+=====================================================+
            | (anchor, positive) pairs                        | none, or ``label`` ids (:mod:`alc_hf.losses.base`)  |
            +-------------------------------------------------+-----------------------------------------------------+
            | (anchor, positive, negative_1, ..., negative_n) | none, or ``label`` ids                              |
            +-------------------------------------------------+-----------------------------------------------------+

        References:
            Zhang et al., "Threshold-Consistent Margin Loss for Open-World Deep Metric Learning", ICLR 2024,
            arXiv 2307.04047.

        Example:
            ::

                from alc_hf import ALCLoss, TCMLoss

                loss = TCMLoss(model, base_loss=ALCLoss(model), pos_margin=0.9, neg_margin=0.5)
        """
        if base_loss is None:
            base_loss = MultiPositiveSoftmaxLoss(model, gather_across_devices=gather_across_devices)
        super().__init__(model, base_loss, gather_across_devices)
        check_tcm_margins(pos_margin, neg_margin)
        check_weight("pos_weight", pos_weight)
        check_weight("neg_weight", neg_weight)
        self.pos_margin = pos_margin
        self.neg_margin = neg_margin
        self.pos_weight = pos_weight
        self.neg_weight = neg_weight

    def loss_parts(self, batch: ScoredBatch) -> dict[str, Tensor]:
        parts = self.base_loss_parts(batch)
        pos_sum, pos_count, neg_sum, neg_count = tcm_violation_sums(
            batch.scores, batch.positive_mask, self.pos_margin, self.neg_margin
        )
        scale = 1
        if batch.gathered:
            # Divide by the violations of the whole global batch; the trainer averages the processes' losses,
            # so each process scales by the world size to make that average the global mean.
            pos_count, neg_count = sum_across_processes(torch.stack([pos_count, neg_count]))
            scale = get_world_size()
        tcm = tcm_from_violation_sums(pos_sum, pos_count, neg_sum, neg_count, self.pos_weight, self.neg_weight)
        parts["tcm"] = scale * tcm
        return parts

    def get_config_dict(self) -> dict[str, Any]:
        return {
            **super().get_config_dict(),
            "pos_margin": self.pos_margin,
            "neg_margin": self.neg_margin,
            "pos_weight": self.pos_weight,
            "neg_weight": self.neg_weight,
        }

    @property
    def citation(self) -> str:
        return """
@inproceedings{zhang2024tcm,
    title={Threshold-Consistent Margin Loss for Open-World Deep Metric Learning},
    author={Zhang, Qin and Xu, Linghan and Tang, Qingming and Fang, Jun and Wu, Ying Nian and others},
    booktitle={The Twelfth International Conference on Learning Representations},
    year={2024},
    url={https://arxiv.org/abs/2307.04047},
}
"""


def check_tcm_margins(pos_margin: float, neg_margin: float) -> None:
    """The ValueError :class:`TCMLoss` raises for bad margins, callable before a model exists."""
    for name, margin in (("pos_margin", pos_margin), ("neg_margin", neg_margin)):
        if not -1.0 <= margin <= 1.0:
            raise ValueError(f"{name} must be a cosine similarity in [-1, 1], got {margin}")
    if not neg_margin < pos_margin:
        raise ValueError(f"neg_margin ({neg_margin}) must be below pos_margin ({pos_margin})")
