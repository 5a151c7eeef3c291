from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from sentence_transformers.sentence_transformer.model import SentenceTransformer
from torch import Tensor

from alc_hf.losses.base import InBatchLoss, ScoredBatch
from alc_hf.losses.functional import masked_fill_value


def multi_positive_softmax_loss(scores: Tensor, positive_mask: Tensor, scale: float = 20.0) -> Tensor:
    """Multi-positive in-batch softmax (DEXML-style decoupled softmax).

    For query i and each in-batch positive p of i, the positive competes only with the negatives of i:
    ``l(i, p) = -log(exp(s·S[i,p]) / (exp(s·S[i,p]) + sum_{n in N(i)} exp(s·S[i,n])))``, where N(i) are the
    candidates that are not positives of i. The loss averages l over the positives of each query, then over queries.
    A query with no negative (or no positive) contributes 0 and still counts in the mean over queries.
    """
    logits = scores * scale
    negative_logits = logits.masked_fill(positive_mask, masked_fill_value(logits))
    negative_lse = torch.logsumexp(negative_logits, dim=1, keepdim=True)
    # -log(e^x / (e^x + e^z)) = softplus(z - x), stable for every x and z.
    per_pair = F.softplus(negative_lse - logits)
    weights = positive_mask.to(per_pair.dtype)
    per_query = (per_pair * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)
    return per_query.mean()


class MultiPositiveSoftmaxLoss(InBatchLoss):
    def __init__(self, model: SentenceTransformer, scale: float = 20.0, gather_across_devices: bool = False) -> None:
        """Multi-positive in-batch softmax (DEXML-style): each positive of a query against the query's negatives.

        For query i with in-batch positives P(i) and negatives N(i) (every other candidate of the batch, hard
        negative columns included)::

            loss = mean_i mean_{p in P(i)} -log( exp(s·S[i,p]) / (exp(s·S[i,p]) + sum_{n in N(i)} exp(s·S[i,n])) )

        with S the cosine similarity and s = ``scale``. Unlike MultipleNegativesRankingLoss, the query's other
        positives are removed from the denominator instead of being pushed away. The built-in default backbone of
        :class:`~alc_hf.ALCLoss`.

        Args:
            model: the SentenceTransformer to train.
            scale: inverse temperature applied to the cosine similarities (must be > 0).
            gather_across_devices: gather label candidates (with gradient) from every process.

        Inputs:
            +-------------------------------------------------+----------------------------------------------+
            | Texts                                           | Labels                                       |
            +=================================================+==============================================+
            | (anchor, positive) pairs                        | none, or label ids (see :mod:`~alc_hf.losses.base`)  |
            +-------------------------------------------------+----------------------------------------------+
            | (anchor, positive, negative_1, ..., negative_n) | none, or label ids                           |
            +-------------------------------------------------+----------------------------------------------+

        References:
            Gupta et al., "Dual-encoders for Extreme Multi-label Classification", ICLR 2024, arXiv 2310.10636.

        Example:
            ::

                from alc_hf.losses import MultiPositiveSoftmaxLoss

                loss = MultiPositiveSoftmaxLoss(model, scale=20.0)
        """
        super().__init__(model, gather_across_devices)
        if not scale > 0:
            raise ValueError(f"scale must be > 0, got {scale}")
        self.scale = scale

    def loss_parts(self, batch: ScoredBatch) -> dict[str, Tensor]:
        return {"base": multi_positive_softmax_loss(batch.scores, batch.positive_mask, self.scale)}

    def get_config_dict(self) -> dict[str, Any]:
        return {"scale": self.scale, **super().get_config_dict()}

    @property
    def citation(self) -> str:
        return """
@inproceedings{gupta2024dexml,
    title={Dual-encoders for Extreme Multi-label Classification},
    author={Gupta, Nilesh and Khatri, Devvrit and Rawat, Ankit Singh and others},
    booktitle={The Twelfth International Conference on Learning Representations},
    year={2024},
    url={https://arxiv.org/abs/2310.10636},
}
"""
