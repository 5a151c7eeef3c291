from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from sentence_transformers.sentence_transformer.model import SentenceTransformer
from torch import Tensor, nn

from alc_hf.losses.base import (
    ScoredBatch,
    WrappingLoss,
    average_gradients_across_processes,
    check_weight,
    is_distributed,
)
from alc_hf.losses.functional import hardest_negative_indices, masked_fill_value
from alc_hf.losses.multi_positive_softmax import MultiPositiveSoftmaxLoss
from alc_hf.losses.pair_head import PAIR_HEAD_FOLDER, PairHead


def pair_head_pointwise_loss(positive_logits: Tensor, negative_logits: Tensor, negative_valid: Tensor) -> Tensor:
    """L_ql: binary cross-entropy of the pair head, target 1 for (q, l+) and 0 for (q, hardest negative).

    Args:
        positive_logits: ``[B]`` head logits of each query with its own positive.
        negative_logits: ``[B]`` head logits of each query with its hardest negative.
        negative_valid: ``[B]`` bool, False where the query had no negative (its negative term is dropped).

    Each query contributes the mean of its two terms; queries are averaged.
    """
    positive_term = F.binary_cross_entropy_with_logits(
        positive_logits, torch.ones_like(positive_logits), reduction="none"
    )
    negative_term = F.binary_cross_entropy_with_logits(
        negative_logits, torch.zeros_like(negative_logits), reduction="none"
    )
    # `where`, not a product: a non-finite logit in a dropped term must not turn the loss into NaN.
    negative_term = torch.where(negative_valid, negative_term, torch.zeros_like(negative_term))
    return ((positive_term + negative_term) / 2).mean()


def pair_head_listwise_loss(positive_logits: Tensor, negative_logits: Tensor, negative_valid: Tensor) -> Tensor:
    """L_qb: softmax cross-entropy of the pair head over {positive} ∪ the k hardest in-batch negatives.

    Args:
        positive_logits: ``[B]`` head logits of each query with its own positive.
        negative_logits: ``[B, k]`` head logits of each query with its k hardest negatives.
        negative_valid: ``[B, k]`` bool, False for padding where a query had fewer than k negatives.

    The positive is class 0. A query with no negative contributes 0.
    """
    negative_logits = negative_logits.masked_fill(~negative_valid, masked_fill_value(negative_logits))
    logits = torch.cat([positive_logits.unsqueeze(1), negative_logits], dim=1)
    return -F.log_softmax(logits, dim=1)[:, 0].mean()


class ALCLoss(WrappingLoss):
    def __init__(
        self,
        model: SentenceTransformer,
        base_loss: nn.Module | None = None,
        ql_weight: float = 1.0,
        qb_weight: float = 1.0,
        num_negatives: int = 2,
        pair_head_hidden_dim: int | None = None,
        head_warmup_steps: int = 0,
        gather_across_devices: bool = False,
    ) -> None:
        """Auxiliary Learning for Coverage: a base retrieval loss plus two pair-head objectives built on the
        hardest in-batch negatives::

            loss = L_base + β1 · L_ql + β2 · L_qb

        With h the L2-normalised embeddings, Γ(a, b) = [a, b, |a - b|, a ⊙ b] and g the trainable pair head
        (``Linear(4d, d) -> GELU -> Linear(d, 1)``, owned by this loss), and n_i^1..n_i^k the k highest-scoring
        in-batch candidates that are not positives of query i (chosen without gradient):

        - ``L_ql = mean_i ½ [BCE(g(Γ(h_q, h_l+)), 1) + BCE(g(Γ(h_q, h_{n_i^1})), 0)]`` (pointwise);
        - ``L_qb = mean_i -log softmax(g(Γ(h_q, h_l+)), g(Γ(h_q, h_{n_i^1})), ..., g(Γ(h_q, h_{n_i^k})))_0``
          (listwise over the hardest candidates the whole batch offers).

        Only B·k pairs go through the head: memory is O(B·k·d), never O(B²·d). The encoder runs once per step and
        the base loss reuses the same embeddings. Returns the parts ``{"base", "ql", "qb"}`` (weighted; ``ql``: the
        query–label BCE, ``qb``: the query–batch listwise term); sentence-transformers' trainer sums them into the
        loss it optimises and logs each (``SentenceTransformerTrainer.compute_loss``). A part whose weight is 0 is
        not computed.

        Args:
            model: the SentenceTransformer to train.
            base_loss: the loss ALC is added to, built on ``model``: an alc_hf loss (None:
                :class:`~alc_hf.losses.MultiPositiveSoftmaxLoss`; :class:`~alc_hf.losses.HardestNegativeTripletLoss`)
                or any loss with ``compute_loss_from_embeddings``, e.g. ``MultipleNegativesRankingLoss(model)``.
            ql_weight: β1, the weight of L_ql (>= 0).
            qb_weight: β2, the weight of L_qb (>= 0).
            num_negatives: k, the hardest in-batch negatives per query for L_qb (>= 1; L_ql uses the hardest).
            pair_head_hidden_dim: hidden width of the pair head (default: the embedding dimension); 0 makes the
                head a single ``Linear(4d, 1)``, as in sentence-transformers' SoftmaxLoss.
            head_warmup_steps: for the first this many training steps the head learns on detached embeddings, so
                an untrained head does not push the encoder around; L_ql and L_qb reach the encoder after that.
                Counted in training forward passes (micro-batches under gradient accumulation) and saved with the
                loss state, so a resumed run continues the count.
            gather_across_devices: gather label candidates (with gradient) and their ids from every process, so
                each query meets the negatives of the whole global batch.

        Inputs:
            +-------------------------------------------------+---------------------------------------------------+
            | Texts                                           | Labels                                            |
            +=================================================+===================================================+
            | (anchor, positive) pairs                        | none, or ``label`` ids (:mod:`alc_hf.losses.base`)  |
            +-------------------------------------------------+---------------------------------------------------+
            | (anchor, positive, negative_1, ..., negative_n) | none, or ``label`` ids                            |
            +-------------------------------------------------+---------------------------------------------------+

            Without a ``label`` column, identical label texts count as the same label and rows with identical
            query texts share their positives. A batch of one row has no negative: the base and L_qb terms are 0
            and L_ql keeps only its positive term (never NaN).

        References:
            Almagro, Ortego, Jiménez, "Fine-grained auxiliary learning for real-world product recommendation",
            arXiv 2510.04551 (2025).

        Example:
            ::

                from datasets import Dataset
                from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer
                from alc_hf import ALCLoss, TCMLoss

                model = SentenceTransformer("sentence-transformers/all-MiniLM-L6-v2")
                pairs = Dataset.from_dict({
                    "anchor": ["sony wh1000xm5 noise cancelling black", "apple iphone 15 128gb blue"],
                    "positive": ["Sony WH-1000XM5 Wireless Headphones, Black", "Apple iPhone 15 (128 GB) - Blue"],
                })
                loss = TCMLoss(model, base_loss=ALCLoss(model))
                SentenceTransformerTrainer(model=model, train_dataset=pairs, loss=loss).train()
        """
        if base_loss is None:
            base_loss = MultiPositiveSoftmaxLoss(model, gather_across_devices=gather_across_devices)
        super().__init__(model, base_loss, gather_across_devices)
        check_alc_options(ql_weight, qb_weight, num_negatives, head_warmup_steps)
        self.ql_weight = ql_weight
        self.qb_weight = qb_weight
        self.num_negatives = num_negatives
        self.pair_head = PairHead(model.get_embedding_dimension(), pair_head_hidden_dim)
        self.head_warmup_steps = head_warmup_steps
        # A buffer, so checkpoints of the loss state (the recipe's LossCheckpointCallback) carry the count.
        self.register_buffer("training_steps_seen", torch.zeros((), dtype=torch.long))

    def loss_parts(self, batch: ScoredBatch) -> dict[str, Tensor]:
        parts = self.base_loss_parts(batch)
        if self.ql_weight == 0 and self.qb_weight == 0:
            return parts
        dimension = batch.queries.size(-1)
        if dimension != self.pair_head.embedding_dim:
            raise ValueError(
                f"ALCLoss's pair head scores {self.pair_head.embedding_dim}-dimensional embeddings (the model's), but "
                f"this batch's are {dimension}-dimensional: a loss modifier that truncates embeddings, such as "
                "MatryoshkaLoss, cannot wrap ALCLoss or a loss around it (the head has no weights for a shorter "
                "embedding). Wrap TCMLoss or a base loss instead, e.g. MatryoshkaLoss(model, TCMLoss(model), "
                "matryoshka_dims=[...]), and train ALCLoss without MatryoshkaLoss"
            )
        if is_distributed():
            average_gradients_across_processes(self.pair_head)
        negatives = hardest_negative_indices(batch.scores, batch.positive_mask, self.num_negatives)
        negative_valid = ~batch.positive_mask.gather(1, negatives)
        candidates = batch.candidates
        queries = batch.queries
        if self.training:
            if self.training_steps_seen < self.head_warmup_steps:
                queries, candidates = queries.detach(), candidates.detach()
            self.training_steps_seen += 1
        # The head takes its parameters' dtype; under autocast its matmuls run in half precision anyway, and its
        # losses are taken in float32.
        head_dtype = self.pair_head.layers[0].weight.dtype
        queries = queries.to(head_dtype)
        negative_embeddings = candidates[negatives].to(head_dtype)
        positive_logits = self.pair_head(queries, candidates[batch.positive_index].to(head_dtype)).float()
        negative_logits = self.pair_head(queries.unsqueeze(1).expand_as(negative_embeddings), negative_embeddings)
        negative_logits = negative_logits.float()
        if self.ql_weight > 0:
            ql = pair_head_pointwise_loss(positive_logits, negative_logits[:, 0], negative_valid[:, 0])
            parts["ql"] = self.ql_weight * ql
        if self.qb_weight > 0:
            parts["qb"] = self.qb_weight * pair_head_listwise_loss(positive_logits, negative_logits, negative_valid)
        return parts

    def save_pair_head(self, model_directory: str | Path) -> Path:
        """Save the pair head into ``<model_directory>/pair_head`` (beside a saved model); returns that folder."""
        directory = Path(model_directory) / PAIR_HEAD_FOLDER
        self.pair_head.save_pretrained(directory)
        return directory

    def get_config_dict(self) -> dict[str, Any]:
        return {
            **super().get_config_dict(),
            "ql_weight": self.ql_weight,
            "qb_weight": self.qb_weight,
            "num_negatives": self.num_negatives,
            "pair_head": self.pair_head.describe(),
            "head_warmup_steps": self.head_warmup_steps,
        }

    @property
    def citation(self) -> str:
        return """
@misc{almagro2025alc,
    title={Fine-grained auxiliary learning for real-world product recommendation},
    author={Almagro, Mario and Ortego, Diego and Jim{\\'e}nez, David},
    year={2025},
    eprint={2510.04551},
    archivePrefix={arXiv},
    url={https://arxiv.org/abs/2510.04551},
}
"""


def check_alc_options(ql_weight: float, qb_weight: float, num_negatives: int, head_warmup_steps: int) -> None:
    """The ValueError :class:`ALCLoss` raises for bad options, callable before a model exists (the recipe checks its
    options before any work)."""
    check_weight("ql_weight", ql_weight)
    check_weight("qb_weight", qb_weight)
    if num_negatives < 1:
        raise ValueError(f"num_negatives (k) must be >= 1, got {num_negatives}")
    if head_warmup_steps < 0:
        raise ValueError(f"head_warmup_steps must be >= 0, got {head_warmup_steps}")
