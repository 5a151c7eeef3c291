from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from sentence_transformers.sentence_transformer.model import SentenceTransformer
from torch import Tensor

from alc_hf.losses.base import InBatchLoss, ScoredBatch
from alc_hf.losses.functional import hardest_negative_indices


def hardest_negative_triplet_loss(
    scores: Tensor,
    positive_mask: Tensor,
    positive_index: Tensor,
    margin: float = 0.3,
    num_negatives: int = 10,
) -> Tensor:
    """Triplet loss with online hardest negatives (NGAME/SiameseXML-style).

    ``l(i) = mean_{n in top-k negatives of i} max(0, S[i,n] - S[i,p_i] + margin)`` with p_i the query's own positive
    and the negatives mined without gradient. Averaged over queries; a query with no negative contributes 0.
    """
    negatives = hardest_negative_indices(scores, positive_mask, num_negatives)
    valid = ~positive_mask.gather(1, negatives)
    positive_scores = scores.gather(1, positive_index.unsqueeze(1))
    hinge = F.relu(scores.gather(1, negatives) - positive_scores + margin) * valid
    per_query = hinge.sum(dim=1) / valid.sum(dim=1).clamp(min=1)
    return per_query.mean()


class HardestNegativeTripletLoss(InBatchLoss):
    def __init__(
        self,
        model: SentenceTransformer,
        margin: float = 0.3,
        num_negatives: int = 10,
        gather_across_devices: bool = False,
    ) -> None:
        """Triplet loss with online hardest in-batch negatives (NGAME / SiameseXML-style)::

            loss = mean_i mean_{n in top-k negatives of i} max(0, S[i,n] - S[i,p_i] + margin)

        with S the cosine similarity, p_i the query's own positive and the top-k negatives mined without gradient
        among all in-batch candidates that are not positives of the query (hard negative columns included).

        Args:
            model: the SentenceTransformer to train.
            margin: the cosine margin between the positive and each mined negative, in (0, 2].
            num_negatives: k, the number of hardest negatives per query (>= 1).
            gather_across_devices: gather label candidates (with gradient) from every process.

        Inputs:
            +-------------------------------------------------+------------------------------------------------------+
            | Texts                                           | Labels                                               |
            +=================================================+======================================================+
            | (anchor, positive) pairs                        | none, or label ids (see :mod:`~alc_hf.losses.base`)  |
            +-------------------------------------------------+------------------------------------------------------+
            | (anchor, positive, negative_1, ..., negative_n) | none, or label ids                                   |
            +-------------------------------------------------+------------------------------------------------------+

        References:
            Dahiya et al., "NGAME: Negative Mining-aware Mini-batching for Extreme Classification", WSDM 2023,
            arXiv 2207.04452.

        Example:
            ::

                from alc_hf.losses import HardestNegativeTripletLoss

                loss = HardestNegativeTripletLoss(model, margin=0.3, num_negatives=10)
        """
        super().__init__(model, gather_across_devices)
        if not 0 < margin <= 2:
            raise ValueError(f"margin must be in (0, 2] for cosine similarities, got {margin}")
        if num_negatives < 1:
            raise ValueError(f"num_negatives (k) must be >= 1, got {num_negatives}")
        self.margin = margin
        self.num_negatives = num_negatives

    def loss_parts(self, batch: ScoredBatch) -> dict[str, Tensor]:
        loss = hardest_negative_triplet_loss(
            batch.scores, batch.positive_mask, batch.positive_index, self.margin, self.num_negatives
        )
        return {"base": loss}

    def get_config_dict(self) -> dict[str, Any]:
        return {"margin": self.margin, "num_negatives": self.num_negatives, **super().get_config_dict()}

    @property
    def citation(self) -> str:
        return """
@inproceedings{dahiya2023ngame,
    title={NGAME: Negative Mining-aware Mini-batching for Extreme Classification},
    author={Dahiya, Kunal and Gupta, Nilesh and Saini, Deepak and others},
    booktitle={Proceedings of the 16th ACM International Conference on Web Search and Data Mining},
    year={2023},
    url={https://arxiv.org/abs/2207.04452},
}
"""
